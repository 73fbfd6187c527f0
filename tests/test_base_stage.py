"""Stages: a recipe that starts from another run (`method.base_workdir`) keeps the base run's
frozen parameters inside its own state, so its checkpoints stand alone; a base run of another
recipe or other data is one error naming both configs.

The recipe here is a test double in the shape VAEBM will have: a frozen `gan2d` generator (the
base) tilted by a trained energy E, sampled by one generator pass.
"""

import dataclasses
import json
import shutil
import types

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest
from flax import struct

from experiments import cli
from experiments import sample as sample_cli
from experiments.configs.common import base_config
from experiments.configs.gan2d.toy2d import get_config as gan_config
from experiments.evaluate import evaluate
from experiments.train import train
from jaxgen import methods
from jaxgen.methods import gan2d
from jaxgen.methods.common import (
    BaseRunFields,
    BaseStage,
    Capabilities,
    ConfigError,
    Optim,
    make_tx,
)
from jaxgen.nn import ScalarMLP
from jaxgen.optim import ModelState, init_model_state
from jaxgen.parallel import make_mesh


@dataclasses.dataclass(frozen=True)
class Model:
    hidden: tuple[int, ...] = (8,)


@dataclasses.dataclass(frozen=True)
class Method(BaseRunFields):  # base_workdir, base_step
    latent: int = 4  # must equal the base generator's


@dataclasses.dataclass(frozen=True)
class Optims:
    energy: Optim = Optim(lr=1e-3, ema_rate=0.0)


@dataclasses.dataclass(frozen=True)
class Config:
    model: Model = Model()
    method: Method = Method()
    optim: Optims = Optims()
    sample: gan2d.Sample = gan2d.Sample()


@struct.dataclass
class State:
    step: jax.Array
    key: jax.Array
    energy: ModelState
    base_params: dict  # the base generator's EMA parameters, frozen
    base_stats: dict  # and its BatchNorm statistics


def _check(config, base_config):
    if config.method.latent != base_config.model.latent:
        return f"method.latent={config.method.latent} but the base's model.latent=" + str(
            base_config.model.latent
        )
    return None


def _base_cfg(latent: int):
    return dataclasses.replace(gan2d.Config(), model=gan2d.Model(latent=latent, gen_hidden=(8,)))


def _default_base(config):
    """The base a tilt run starts from, for shapes only (abstract init without a base run)."""
    return "gan2d", _base_cfg(config.method.latent)


def init(config, example_batch, *, key, base):
    params = ScalarMLP(config.model.hidden).init(key, jnp.zeros((1, 2)))["params"]
    energy = init_model_state(params, make_tx(config.optim.energy), ema_rate=0.0)
    frozen = base.gen.eval_params(True), base.gen.variables["batch_stats"]
    return State(jnp.zeros((), jnp.int32), key, energy, *frozen)


def _generate(state, z, config):
    x, _ = gan2d.generate(
        state.base_params,
        state.base_stats,
        z,
        config=_base_cfg(config.method.latent),
        out_dim=2,
        train=False,
    )
    return x


def train_step(state, batch, *, config):
    z = jax.random.normal(jax.random.fold_in(state.key, state.step), (batch["x"].shape[0], 4))
    fake = jax.lax.stop_gradient(_generate(state, z, config))
    energy = lambda p, x: ScalarMLP(config.model.hidden).apply({"params": p}, x)
    loss_fn = lambda p: jnp.mean(energy(p, batch["x"])) - jnp.mean(energy(p, fake))
    loss, grads = jax.value_and_grad(loss_fn)(state.energy.params)
    ms, _ = state.energy.apply_gradients(grads, step=state.step)
    return state.replace(step=state.step + 1, energy=ms), {"loss": loss}


def sample(state, num, *, config, key, shape=None, use_ema=True):
    z = jax.random.normal(key, (num, config.method.latent))
    return _generate(state, z, config), {"nfe": jnp.ones((num,))}


TILT = types.SimpleNamespace(
    Config=Config,
    init=init,
    train_step=train_step,
    sample=sample,
    CAPABILITIES=Capabilities(
        networks=("energy",),
        sampler_stats=("nfe",),
        nfe="generator passes",
        base_stage=BaseStage(recipes=("gan2d",), check=_check, default_config=_default_base),
    ),
)


@pytest.fixture
def tilt_recipe(monkeypatch):
    monkeypatch.setitem(methods.RECIPES, "tilt2d", TILT)


def _gan_run(tmp_path, ckpt_every=2, **data):
    c = gan_config()
    c.data.update(dict(batch_size=16, **data))
    c.train.update(dict(num_steps=2, ckpt_every=ckpt_every, sample_every=0, steps_per_call=1))
    c.model.update(dict(latent=4, gen_hidden=(8,), disc_hidden=(8,)))
    wd = tmp_path / "base"
    train(c, str(wd), progress=False)
    return wd


def _tilt_config(base_wd, num_steps=2):
    c = base_config("tilt2d", dataset="8gaussians", batch_size=16, num_steps=num_steps)
    c.method.base_workdir = str(base_wd)
    c.train.update(dict(ckpt_every=1, sample_every=0, log_every=1))
    c.eval.update(dict(num_samples=64, batch_size=64, metrics=("mmd",)))
    return c


@pytest.mark.slow
def test_stage_stores_the_frozen_base_and_stands_alone(tmp_path, tilt_recipe):
    base_wd = _gan_run(tmp_path)
    base_state, _ = cli.experiment(gan_config_for(base_wd)).restore_latest(str(base_wd))
    wd = tmp_path / "tilt"
    state = train(_tilt_config(base_wd), str(wd), progress=False)
    for a, b in zip(
        jax.tree.leaves(state.base_params), jax.tree.leaves(base_state.gen.ema_params), strict=True
    ):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    assert (wd / "base_config.json").exists()
    shutil.rmtree(base_wd)  # the base run is gone: the new run resumes, samples, evaluates
    state = train(_tilt_config(base_wd, num_steps=3), str(wd), progress=False)
    assert int(state.step) == 3
    x, stats, step = sample_cli.sample(_tilt_config(base_wd, 3), str(wd), 8)
    assert x.shape == (8, 2) and step == 3 and stats["nfe_mean"] == 1.0
    assert np.isfinite(evaluate(_tilt_config(base_wd, 3), str(wd))["mmd_rbf"])


def gan_config_for(base_wd):
    """The base run's own config, as its workdir records it."""
    return ml_collections.ConfigDict(json.loads((base_wd / "config.json").read_text()))


def test_a_mismatched_base_is_one_error_naming_both_configs(tmp_path, tilt_recipe):
    with pytest.raises(ConfigError, match="no .*config.json"):
        cli.experiment(_tilt_config(tmp_path / "nowhere")).restore_base()
    base_wd = _gan_run(tmp_path)
    c = _tilt_config(base_wd)
    c.method.latent = 3
    with pytest.raises(ConfigError) as e:
        cli.experiment(c).restore_base()
    msg = str(e.value)
    assert "method.latent=3 but the base's model.latent=4" in msg and "config.json" in msg
    c = _tilt_config(base_wd)
    c.data.name = "25gaussians"
    with pytest.raises(ConfigError, match="data.name='25gaussians'.*data.name='8gaussians'"):
        cli.experiment(c).restore_base()
    other = tmp_path / "vapo_run"
    other.mkdir()
    (other / "config.json").write_text('{"recipe": "vapo", "data": {"name": "8gaussians"}}')
    with pytest.raises(ConfigError, match="is a 'vapo' run; tilt2d starts from a 'gan2d' run"):
        cli.experiment(_tilt_config(other)).restore_base()


def test_an_empty_base_workdir_is_one_error_when_training(tilt_recipe, tmp_path):
    """A recipe with a base stage and no `method.base_workdir` would train on nothing
    (`base=None`): restoring its base says which field to set, and `train` says so before any
    work (no workdir, lock, config record or data)."""
    c = _tilt_config("")
    with pytest.raises(ConfigError, match=r"base_workdir is empty: tilt2d starts from .*'gan2d'"):
        cli.experiment(c).restore_base()
    wd = tmp_path / "tilt"
    with pytest.raises(ConfigError) as e:
        train(c, str(wd), progress=False)
    assert str(e.value) == (
        "config.method.base_workdir is empty: tilt2d starts from a trained 'gan2d' run; set "
        "--config.method.base_workdir=DIR"
    )
    assert not wd.exists()


def _with_stage(monkeypatch, **changes):
    """Register tilt2d with its base stage changed by `changes`."""
    stage = dataclasses.replace(TILT.CAPABILITIES.base_stage, **changes)
    caps = dataclasses.replace(TILT.CAPABILITIES, base_stage=stage)
    recipe = types.SimpleNamespace(**{**vars(TILT), "CAPABILITIES": caps})
    monkeypatch.setitem(methods.RECIPES, "tilt2d", recipe)


def test_base_stage_names_several_recipes_and_keeps_the_old_spelling():
    stage = BaseStage(recipes=("nvae", "glow"))
    assert stage.recipes == ("nvae", "glow") and stage.allowed() == "'nvae' or 'glow'"
    with pytest.warns(DeprecationWarning, match=r'write BaseStage\(recipes=\("gan2d",\)\)'):
        old = BaseStage(recipe="gan2d", check=_check)
    assert old.recipes == ("gan2d",) and old == BaseStage(recipes=("gan2d",), check=_check)
    with pytest.warns(DeprecationWarning), pytest.raises(ValueError, match="not both"):
        BaseStage(recipes=("glow",), recipe="nvae")
    with pytest.raises(ValueError, match="one or more recipes"):
        BaseStage()
    bad = BaseStage(recipes=("nvae", "glow"), default_config=lambda config: ("vapo", None))
    with pytest.raises(ValueError, match="names 'vapo'; the stage starts from 'nvae' or 'glow'"):
        bad.default_base(None)


def test_a_stage_starts_from_any_of_its_base_recipes(tmp_path, monkeypatch):
    _with_stage(monkeypatch, recipes=("nvae", "gan2d"))
    base, state = cli.experiment(_tilt_config(_gan_run(tmp_path))).restore_base()
    assert base.c.recipe == "gan2d" and int(state.step) == 2
    other = tmp_path / "vapo_run"
    other.mkdir()
    (other / "config.json").write_text('{"recipe": "vapo", "data": {"name": "8gaussians"}}')
    with pytest.raises(ConfigError, match="'vapo' run; tilt2d starts from a 'nvae' or 'gan2d'"):
        cli.experiment(_tilt_config(other)).restore_base()


def _shapes(tree):
    return jax.tree.map(lambda a: (a.shape, a.dtype), tree)


def test_abstract_init_without_a_base_run_uses_the_default_base_config(
    tmp_path, tilt_recipe, monkeypatch
):
    """Shapes only (abstract init, the AOT compile, traced tests): an empty
    `method.base_workdir` builds `base=` from `BaseStage.default_config`, materialising nothing;
    the shapes are those of a run on a real base."""
    exp = cli.experiment(_tilt_config(""))
    before = len(jax.live_arrays())
    abstract = exp.abstract_state()
    assert len(jax.live_arrays()) == before
    leaves = jax.tree.leaves(abstract)
    assert leaves and all(isinstance(x, jax.ShapeDtypeStruct) for x in leaves)
    exp.state_sharding(make_mesh(8), abstract)  # what tools/tpu_compile.py builds on
    real = cli.experiment(_tilt_config(_gan_run(tmp_path))).abstract_state()
    assert _shapes(abstract) == _shapes(real)
    _with_stage(monkeypatch, default_config=None)
    with pytest.raises(ConfigError, match=r"^config.method.base_workdir is empty and .*no default"):
        cli.experiment(_tilt_config("")).abstract_state()


def test_base_step_picks_the_base_checkpoint_and_is_recorded(tmp_path, tilt_recipe):
    """`method.base_step`: -1 the newest checkpoint, N step N of the base's `checkpoints/` or
    else its `best/`; the run records the step it started from in `DIR/base_run.json`."""
    base_wd = _gan_run(tmp_path, ckpt_every=1)  # checkpoints 1 and 2
    base_exp = cli.experiment(gan_config_for(base_wd))
    step1, _ = base_exp.restore_latest(str(base_wd), 1)
    _, newest = cli.experiment(_tilt_config(base_wd)).restore_base()
    assert int(newest.step) == 2
    c = _tilt_config(base_wd)
    c.method.base_step = 1
    wd = tmp_path / "tilt"
    state = train(c, str(wd), progress=False)
    for a, b in zip(
        jax.tree.leaves(state.base_params), jax.tree.leaves(step1.gen.ema_params), strict=True
    ):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    record = json.loads((wd / "base_run.json").read_text())
    digest = record.pop("sha256")  # of checkpoint 1's files (tests/test_run_checks.py)
    assert len(digest) == 64 and record == {
        "recipe": "gan2d",
        "workdir": str(base_wd),
        "base_step": 1,
        "step": 1,
        "checkpoint": str(base_wd / "checkpoints" / "1"),
    }
    store = base_exp.checkpoints(base_wd / "best", str(base_wd), max_to_keep=1)
    store.save(1, step1, {"recipe": "gan2d"})  # model selection kept step 1 ...
    store.close()
    shutil.rmtree(base_wd / "checkpoints" / "1")  # ... and the run no longer has it
    assert int(cli.experiment(c).restore_base()[1].step) == 1
    c.method.base_step = 7
    with pytest.raises(ConfigError) as e:
        cli.experiment(c).restore_base()
    msg = str(e.value)
    assert msg.startswith("config.method.base_step=7: the base run has no checkpoint at step 7")
    assert "checkpoints: 2;" in msg and "best: 1)" in msg
    c.method.base_step = -2
    with pytest.raises(ConfigError, match=r"^config.method.base_step=-2: -1 \(the newest"):
        train(c, str(tmp_path / "other"), progress=False)

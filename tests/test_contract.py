"""The recipe contract (`jaxgen.methods.common`) and every registered recipe's declarations.

- `Capabilities` refuses unknown extras and a `solver_ok` that is not a sampler stat;
- each recipe's `CAPABILITIES` tells the truth: its `networks` are its `optim` sections and
  trained `State` fields, its `headline` metrics come out of `train_step`, its sampler stats
  out of `sample`, its extras exist, its data fit's declared shapes are the fit's shapes;
- `config_from_dict` / `config_to_dict` round-trip, coerce (list -> tuple, int -> float) and
  refuse unknown fields, sections given scalars, wrong types (bool for int included) and
  impossible values with one `ConfigError` naming the full path; `replace_fields` copies;
- Configs are hashable (they are static arguments of `jit`);
- a recipe with a base stage (`BaseStage`; the test double tilt2d of `test_base_stage.py` while
  no registered recipe has one) has the `method.base_workdir` / `base_step` fields, a default
  base config its `check` accepts, and an `init(base=...)` that runs on a base built from it,
  concretely and under `jax.eval_shape` with the base's abstract state.

Each recipe is built small (hidden width 8, FDRL K = 2) on an 8-point 2-D batch.
"""

import dataclasses
import inspect
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from test_base_stage import TILT  # the toy stage recipe (a frozen gan2d generator + an energy)

from jaxgen.methods import (
    RECIPES,
    ddgan,
    fdrl,
    gan2d,
    get_recipe,
    glf,
    shortrun_ebm,
    vae,
    vaebm,
    vapo,
)
from jaxgen.methods.common import (
    EXTRAS,
    BaseStage,
    Capabilities,
    ConfigError,
    config_from_dict,
    config_to_dict,
    replace_fields,
)
from jaxgen.optim import ModelState

SMALL = {
    "ddgan": {
        "model.network": "mlp",
        "model.hidden": (8,),
        "model.latent_dim": 2,
        "method.lazy_reg": 1,
    },
    "vapo": {"model.hidden": (8,)},
    "fdrl": {"model.hidden": (8,), "method.flow_steps": 2},
    "gan2d": {"model.gen_hidden": (8,), "model.disc_hidden": (8,), "model.latent": 2},
    "glf": {"model.latent": 4, "model.ae_width": 4, "model.flow_hidden": 8, "model.flow_blocks": 2},
    # persistent chains: a batch-split state field to check
    "shortrun_ebm": {"model.hidden": (8,), "method.langevin_steps": 2, "method.persistent": True},
    "vae": {"model.hidden": (8,), "sample.iwae_samples": 8, "sample.iwae_chunk": 4},
    # a replay buffer: replicated state beside the frozen base
    "vaebm": {
        "model.hidden": (8,),
        "model.base.hidden": (8,),
        "method.langevin_steps": 2,
        "method.persistent": True,
        "method.buffer_size": 32,
        "sample.langevin_steps": 2,
        "sample.iwae_samples": 8,
        "sample.iwae_chunk": 4,
    },
}
EXAMPLE_SHAPES = {"glf": (8, 8, 1)}  # one example; the others take 2-D points


def _example_batch(name):
    shape = EXAMPLE_SHAPES.get(name, (2,))
    rng = np.random.default_rng(0)
    if len(shape) == 3:  # images in [-1, 1]
        return {"x": rng.uniform(-1, 1, size=(8, *shape)).astype(np.float32)}
    return {"x": rng.normal(size=(8, *shape)).astype(np.float32)}


NAMES = sorted(RECIPES)


def test_registry():
    assert RECIPES == {
        "ddgan": ddgan,
        "fdrl": fdrl,
        "gan2d": gan2d,
        "glf": glf,
        "shortrun_ebm": shortrun_ebm,
        "vae": vae,
        "vaebm": vaebm,
        "vapo": vapo,
    }
    assert sorted(SMALL) == NAMES  # a new recipe needs a small config here
    assert get_recipe("vapo") is vapo
    with pytest.raises(ValueError, match="unknown method 'nope'"):
        get_recipe("nope")


# ---------------------------------------------------------------- Capabilities


def test_capabilities_refuses_unknown_extras():
    with pytest.raises(ValueError, match="unknown extras \\['nope'\\]"):
        Capabilities(networks=("a",), extras=("nope",))
    Capabilities(networks=("a",), extras=EXTRAS, energy_label="E")  # all known ones are fine
    with pytest.raises(ValueError, match="energy_label"):
        Capabilities(networks=("a",), extras=("energy",))  # an energy must say what it is


def test_capabilities_solver_ok_must_be_a_sampler_stat():
    with pytest.raises(ValueError, match="solver_ok='x' is not among sampler_stats"):
        Capabilities(networks=("a",), solver_ok="x")
    caps = Capabilities(networks=("a",), sampler_stats=("nfe", "x"), solver_ok="x")
    assert caps.has("energy") is False and caps.solver_ok == "x"


def test_capabilities_has():
    assert vapo.CAPABILITIES.has("energy") and not vapo.CAPABILITIES.has("translate")
    assert fdrl.CAPABILITIES.has("translate")


# ---------------------------------------------------------------- declarations (no training)


@pytest.mark.parametrize("name", NAMES)
def test_declarations_are_consistent(name):
    mod = RECIPES[name]
    caps = mod.CAPABILITIES
    assert isinstance(caps, Capabilities)
    optim_fields = tuple(f.name for f in dataclasses.fields(mod.Config().optim))
    assert caps.networks == optim_fields
    state_fields = {f.name for f in dataclasses.fields(mod.State)}
    assert set(caps.networks) <= state_fields
    assert set(caps.batch_state) <= state_fields
    for extra in caps.extras:
        assert extra in EXTRAS
        assert callable(getattr(mod, extra, None)), f"{name} declares {extra!r} but lacks it"
    if caps.solver_ok:
        assert caps.solver_ok in caps.sampler_stats
    assert bool(caps.nfe) == ("nfe" in caps.sampler_stats)  # an NFE stat says what it counts
    # one sampler signature: state, num, then keywords; the example shape is the state's
    params = inspect.signature(mod.sample).parameters
    assert list(params)[:2] == ["state", "num"]
    assert {"config", "key", "shape", "use_ema"} <= set(params)
    assert params["shape"].default is None
    assert all(params[k].kind is inspect.Parameter.KEYWORD_ONLY for k in ("config", "key"))
    for fn in ("init", "train_step", "sample"):
        assert callable(getattr(mod, fn))


def test_vapo_declares_its_solver_flag():
    caps = vapo.CAPABILITIES
    assert caps.solver_ok == "success" and "success" in caps.sampler_stats
    assert set(caps.extras) == {"energy", "interpolate"}


def test_fdrl_data_fit_shapes_are_the_fits_shapes():
    fit = fdrl.CAPABILITIES.data_fit
    cfg = replace_fields(fdrl.Config(), {"method.prior": "ddp"})
    assert fit.needed(cfg) and not fit.needed(fdrl.Config())
    x = np.random.default_rng(0).normal(size=(64, 3, 2)).astype(np.float32)  # examples [3, 2]
    arrays = fit.fit(cfg, x)
    shapes = fit.shapes(cfg, (3, 2))
    got = jax.tree.map(lambda a: (a.shape, jnp.asarray(a).dtype), arrays)
    assert got == jax.tree.map(lambda s: (s.shape, s.dtype), shapes)
    assert [s.shape for s in shapes] == [(6,), (6, 6)]


# ---------------------------------------------------------------- base stages

# the recipes that declare a base stage, and the test double until a registered one does
STAGED = {n: RECIPES[n] for n in NAMES if RECIPES[n].CAPABILITIES.base_stage is not None}
STAGED.setdefault("tilt2d", TILT)


def _default_base_state(mod, cfg, batch):
    """`(base recipe module, its Config, its init state)` of the stage's default base config."""
    stage = mod.CAPABILITIES.base_stage
    name, base_cfg, base = stage.init_default_base(cfg, batch, key=jax.random.PRNGKey(3))
    return get_recipe(name), base_cfg, base


@pytest.mark.parametrize("name", sorted(STAGED))
def test_a_base_stage_inits_on_its_default_base(name):
    mod = STAGED[name]
    stage = mod.CAPABILITIES.base_stage
    assert isinstance(stage, BaseStage) and stage.recipes and stage.default_config is not None
    cfg = mod.Config()
    assert cfg.method.base_workdir == "" and cfg.method.base_step == -1
    batch = _example_batch(name)
    base_mod, base_cfg, base = _default_base_state(mod, cfg, batch)
    assert base_mod.__name__.rsplit(".", 1)[-1] in stage.recipes
    assert stage.check(cfg, base_cfg) is None  # the default base passes the stage's own check
    state = mod.init(cfg, batch, key=jax.random.PRNGKey(0), base=base)
    abstract_base = jax.eval_shape(lambda: base)
    abstract = jax.eval_shape(
        lambda b: mod.init(cfg, batch, key=jax.random.PRNGKey(0), base=b), abstract_base
    )
    shapes = lambda t: jax.tree.map(lambda a: (a.shape, a.dtype), t)
    assert shapes(abstract) == shapes(state)
    new, metrics = jax.jit(mod.train_step, static_argnames="config")(state, batch, config=cfg)
    assert int(new.step) == 1
    assert all(bool(jnp.isfinite(metrics[k])) for k in mod.CAPABILITIES.headline)


# ---------------------------------------------------------------- one step and one draw


@pytest.fixture(scope="module", params=NAMES)
def built(request):
    """A small recipe after `init`, one jitted `train_step` and one jitted `sample`."""
    name = request.param
    mod = RECIPES[name]
    cfg = replace_fields(mod.Config(), SMALL[name])
    batch = _example_batch(name)
    kw = {}
    if mod.CAPABILITIES.base_stage is not None:  # on its default base, freshly initialised
        kw["base"] = _default_base_state(mod, cfg, batch)[2]
    state = mod.init(cfg, batch, key=jax.random.PRNGKey(0), **kw)
    step = jax.jit(mod.train_step, static_argnames="config")
    new_state, metrics = step(state, batch, config=cfg)
    draw = jax.jit(partial(mod.sample, config=cfg), static_argnums=1)
    x, stats = draw(new_state, 4, key=jax.random.PRNGKey(1))
    return {
        "name": name,
        "mod": mod,
        "cfg": cfg,
        "batch": batch,
        "state": state,
        "new": new_state,
        "metrics": metrics,
        "x": x,
        "stats": stats,
    }


def test_train_step_returns_the_headline_metrics(built):
    caps, metrics = built["mod"].CAPABILITIES, built["metrics"]
    missing = set(caps.headline) - set(metrics)
    assert not missing, f"{built['name']}: headline {missing} not in {sorted(metrics)}"
    for k in caps.headline:
        assert jnp.shape(metrics[k]) == () and bool(jnp.isfinite(metrics[k])), k


def test_train_step_updates_every_declared_network(built):
    caps, old, new = built["mod"].CAPABILITIES, built["state"], built["new"]
    assert int(new.step) == int(old.step) + 1
    for net in caps.networks:
        before, after = getattr(old, net), getattr(new, net)
        assert isinstance(after, ModelState)
        moved = jax.tree.map(lambda a, b: bool(jnp.any(a != b)), before.params, after.params)
        assert any(jax.tree.leaves(moved)), f"{built['name']}: {net} did not move"
        has_ema = getattr(built["cfg"].optim, net).ema_rate > 0
        assert (after.ema_params is not None) == has_ema


def test_batch_state_is_split_along_the_batch(built):
    """A `batch_state` leaf's leading axis is split over the devices: the device count must
    divide it; it need not equal the batch's rows nor be a multiple of them (a replay buffer of
    10k past examples is fine, `tests/test_trainer.py` trains one of 10 x B rows)."""
    n = jax.device_count()
    for field in built["mod"].CAPABILITIES.batch_state:
        for leaf in jax.tree.leaves(getattr(built["new"], field)):
            assert leaf.shape[0] >= 1 and leaf.shape[0] % n == 0, (field, leaf.shape, n)


def test_sample_returns_every_declared_stat(built):
    caps, x, stats = built["mod"].CAPABILITIES, built["x"], built["stats"]
    assert x.shape == (4, *built["batch"]["x"].shape[1:]) and bool(jnp.all(jnp.isfinite(x)))
    missing = set(caps.sampler_stats) - set(stats)
    assert not missing, f"{built['name']}: sampler stats {missing} not in {sorted(stats)}"
    assert bool(jnp.all(stats["nfe"] >= 1))
    if caps.solver_ok:  # a boolean flag, and this easy solve finished
        flag = jnp.asarray(stats[caps.solver_ok])
        assert flag.dtype == jnp.bool_ and bool(jnp.all(flag))


@pytest.mark.parametrize("built", ["fdrl", "glf", "shortrun_ebm", "vapo"], indirect=True)
def test_declared_extras_run(built):
    """Each declared extra runs on the trained state with its documented signature."""
    mod, cfg, state = built["mod"], built["cfg"], built["new"]
    x = jnp.asarray(built["batch"]["x"])
    extras = mod.CAPABILITIES.extras
    assert extras
    if "energy" in extras:  # energy(state, x) -> [B]
        e = mod.energy(state, x, config=cfg)
        assert e.shape == (8,) and bool(jnp.all(jnp.isfinite(e)))
    if "interpolate" in extras:  # interpolate(state, num, shape=) -> ([num, *shape], stats)
        shape = x.shape[1:]
        path, stats = mod.interpolate(state, 3, config=cfg, key=jax.random.PRNGKey(2), shape=shape)
        assert path.shape == (3, *shape) and bool(jnp.all(jnp.isfinite(path)))
        assert set(mod.CAPABILITIES.sampler_stats) <= set(stats)
    if "log_density" in extras:  # log_density(state, x) -> [B]
        lp = mod.log_density(state, x, config=cfg)
        assert lp.shape == (8,) and bool(jnp.all(jnp.isfinite(lp)))
    if "reconstruct" in extras:  # reconstruct(state, x) -> [B, ...]
        y = mod.reconstruct(state, x, config=cfg)
        assert y.shape == x.shape and bool(jnp.all(jnp.isfinite(y)))
    if "translate" in extras:  # translate(state, x0) -> (x [N, ...], stats)
        y, stats = mod.translate(state, x, config=cfg, key=jax.random.PRNGKey(2))
        assert y.shape == x.shape and bool(jnp.all(jnp.isfinite(y)))
        assert not np.allclose(y, x)  # the particles moved
        assert set(mod.CAPABILITIES.sampler_stats) <= set(stats)


# ---------------------------------------------------------------- Config dicts


@pytest.mark.parametrize("name", NAMES)
def test_config_dict_round_trip(name):
    cls = RECIPES[name].Config
    tree = config_to_dict(cls())
    assert isinstance(tree["optim"], dict) and set(tree) == {"model", "method", "optim", "sample"}
    assert config_from_dict(cls, tree) == cls()
    assert config_to_dict(config_from_dict(cls, tree)) == tree
    small = replace_fields(cls(), SMALL[name])
    assert config_from_dict(cls, config_to_dict(small)) == small
    assert config_from_dict(cls, {}) == cls()  # missing fields keep their defaults


@pytest.mark.parametrize("name", NAMES)
def test_configs_are_hashable(name):
    cls = RECIPES[name].Config
    assert hash(cls()) == hash(cls())
    built = config_from_dict(cls, config_to_dict(cls()))
    assert built == cls() and hash(built) == hash(cls())
    small = replace_fields(cls(), SMALL[name])
    assert small != cls() and {cls(): 1, small: 2}[small] == 2


def test_unknown_key():
    with pytest.raises(ConfigError, match="^unknown config field config.model.nope "):
        config_from_dict(vapo.Config, {"model": {"nope": 1}})
    with pytest.raises(ConfigError, match="^unknown config field config.train "):
        config_from_dict(vapo.Config, {"train": {}})


def test_section_given_a_scalar():
    with pytest.raises(ConfigError, match="^config.model is a section"):
        config_from_dict(vapo.Config, {"model": 3})
    with pytest.raises(ConfigError, match="^config.optim.potential is a section"):
        config_from_dict(vapo.Config, {"optim": {"potential": 1e-3}})


def test_wrong_type():
    with pytest.raises(ConfigError) as e:
        config_from_dict(vapo.Config, {"optim": {"potential": {"lr": "x"}}})
    assert str(e.value) == "config.optim.potential.lr='x': expected float"
    with pytest.raises(ConfigError, match="^config.sample.solver=3: expected str$"):
        config_from_dict(vapo.Config, {"sample": {"solver": 3}})
    with pytest.raises(ConfigError, match="^config.sample.num_steps=2.5: expected int$"):
        config_from_dict(vapo.Config, {"sample": {"num_steps": 2.5}})
    with pytest.raises(ConfigError, match="^config.model.hidden=8: expected a tuple$"):
        config_from_dict(vapo.Config, {"model": {"hidden": 8}})


def test_list_becomes_tuple_and_int_becomes_float():
    cfg = config_from_dict(vapo.Config, {"model": {"hidden": [4, 4]}, "sample": {"t_end": 2}})
    assert cfg.model.hidden == (4, 4) and type(cfg.model.hidden) is tuple
    assert cfg.sample.t_end == 2.0 and type(cfg.sample.t_end) is float
    hash(cfg)  # still usable as a static argument
    ms = config_from_dict(
        fdrl.Config, {"optim": {"ratio": {"decay": "milestones", "milestones": [5, 8]}}}
    )
    assert ms.optim.ratio.milestones == (5, 8)


def test_bool_is_not_a_number_and_a_number_is_not_a_bool():
    with pytest.raises(ConfigError, match="^config.sample.num_steps=True: expected int$"):
        config_from_dict(vapo.Config, {"sample": {"num_steps": True}})
    with pytest.raises(ConfigError, match="^config.sample.t_end=True: expected float$"):
        config_from_dict(vapo.Config, {"sample": {"t_end": True}})
    with pytest.raises(ConfigError, match="^config.method.jacobian=1: expected bool$"):
        config_from_dict(vapo.Config, {"method": {"jacobian": 1}})
    assert config_from_dict(vapo.Config, {"method": {"jacobian": False}}).method.jacobian is False


def test_impossible_values_name_the_full_path():
    with pytest.raises(ConfigError) as e:
        config_from_dict(vapo.Config, {"sample": {"t_end": 0.0}})
    assert str(e.value).startswith("config.sample.t_end=0.0")
    with pytest.raises(ConfigError) as e:
        config_from_dict(gan2d.Config, {"optim": {"gen": {"lr": 0}}})
    assert str(e.value).startswith("config.optim.gen.lr=")
    assert "must be > 0" in str(e.value)
    with pytest.raises(ConfigError, match="^config.optim.disc.weight_decay=0.1: adam has no"):
        config_from_dict(gan2d.Config, {"optim": {"disc": {"weight_decay": 0.1}}})
    with pytest.raises(ConfigError, match="^config.method.divergence=") as e:
        config_from_dict(fdrl.Config, {"method": {"loss": "lsif", "divergence": "kl"}})
    assert e.value.__cause__ is None and e.value.__suppress_context__  # no chained FieldError


def test_mistyped_milestones_are_a_config_error():
    tree = {"optim": {"potential": {"decay": "milestones", "milestones": ["5"]}}}
    with pytest.raises(ConfigError, match="^config.optim.potential.milestones"):
        config_from_dict(vapo.Config, tree)


def test_mistyped_tuple_elements_are_a_config_error():
    with pytest.raises(ConfigError, match="^config.model.hidden"):
        config_from_dict(vapo.Config, {"model": {"hidden": ["8"]}})


# ---------------------------------------------------------------- replace_fields


def test_replace_fields_copies_and_checks():
    base = vapo.Config()
    new = replace_fields(base, {"sample.t_end": 2.0, "optim.potential.lr": 5e-4})
    assert (new.sample.t_end, new.optim.potential.lr) == (2.0, 5e-4)
    assert (base.sample.t_end, base.optim.potential.lr) == (1.0, 1e-3)  # original untouched
    assert new.model == base.model and new != base
    with pytest.raises(dataclasses.FrozenInstanceError):
        base.sample.t_end = 3.0
    with pytest.raises(dataclasses.FrozenInstanceError):
        base.sample = new.sample


def test_replace_fields_errors():
    base = vapo.Config()
    with pytest.raises(ConfigError, match="^unknown config section config.nope.x$"):
        replace_fields(base, {"nope.x": 1})
    with pytest.raises(ConfigError, match="^unknown config section config.sample.t_end.x$"):
        replace_fields(base, {"sample.t_end.x": 1})
    with pytest.raises(ConfigError, match="^unknown config field config.sample.nope "):
        replace_fields(base, {"sample.nope": 1})
    with pytest.raises(ConfigError, match="^config.sample.t_end=-1.0"):
        replace_fields(base, {"sample.t_end": -1.0})
    assert base == vapo.Config()

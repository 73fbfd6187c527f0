"""End-to-end: every experiment config trains 2 steps, checkpoints, resumes, samples, evaluates;
a run killed mid-training resumes to bit-identical parameters."""

import glob
import json
import os
import signal
import subprocess
import sys
import time
from functools import partial
from pathlib import Path

import jax
import numpy as np
import pytest

from jaxgen.methods import get_recipe, vapo
from jaxgen.train.checkpoint import Checkpoints

REPO = Path(__file__).resolve().parents[1]
CONFIGS = sorted(
    p for p in glob.glob(str(REPO / "experiments/configs/*/*.py")) if not p.endswith("__init__.py")
)
# the tfds sets' image sides: these configs run on tfds mock data of that shape
TFDS_SIDES = {"cifar10": 32, "celeba64": 64, "lsun_church64": 64}
TFDS_SIDES.update({"celeba_hq256": 256, "lsun_church256": 256, "lsun_church128": 128})
TFDS_CONFIGS = [p for p in CONFIGS if Path(p).stem in TFDS_SIDES]
# Every CLI (train, resume, sample, evaluate) runs on one config per recipe, the one with the
# most evaluation paths it can run here; the other configs run the same code in-process (train,
# resume, draw), which costs a fraction of four subprocesses
CLI_CONFIGS = [
    str(REPO / "experiments/configs" / name)
    for name in (
        "vapo/fashion_mnist.py",
        "ddgan/25gaussians.py",
        "fdrl/toy2d.py",
        "gan2d/toy2d.py",
        "glf/digits.py",
        "shortrun_ebm/swissroll.py",
        "vae/25gaussians.py",
        "vaebm/25gaussians.py",
    )
]
# DDGAN's 256² configs: even their smoke variant (a six-level U-Net and the large D at 256²,
# R1's double backward) takes minutes to compile and step on 2 cores, beyond the suite's budget.
# They share every code path with ddgan/cifar10.py but the image size and the layouts, whose
# full-size states `tests/test_abstract_init.py` builds; their training step is exercised by
# `python -m experiments.train --config ... --config.runlocal=True` by hand (docs/results.md).
TOO_LARGE_TO_SMOKE = [
    str(REPO / "experiments/configs/ddgan" / name)
    for name in ("celeba_hq256.py", "lsun_church256.py")
]
# One image config per recipe (on tfds mock data, so it runs on a bare machine) and the cheap 2-D
# ones train, resume and sample in-process; every other config's smoke variant (the same code on
# other data, sizes or layouts) is traced: its data is read, and its train step and sampler are
# run under `jax.eval_shape`, which checks every shape and dtype without compiling (a DDGAN
# smoke step takes about 30 s to compile on 2 cores, its trace 4 s)
RUN_IN_PROCESS = [
    str(REPO / "experiments/configs" / name)
    for name in (
        "vapo/toy2d.py",
        "ddgan/cifar10.py",
        "fdrl/cifar10.py",
        "glf/cifar10.py",
        "shortrun_ebm/cifar10.py",
    )
]
TRACED_CONFIGS = [p for p in CONFIGS if p not in CLI_CONFIGS + TOO_LARGE_TO_SMOKE + RUN_IN_PROCESS]
ENV = {
    **os.environ,
    "XLA_FLAGS": "--xla_force_host_platform_device_count=8",
    "JAX_PLATFORMS": "cpu",
    "TF_CPP_MIN_LOG_LEVEL": "3",
}


def _recipe_of(config) -> str:
    """The recipe a config file trains (its folder name is the recipe's)."""
    return Path(config).parent.name


def run(module, config, workdir, *args, check=True, **kw):
    """`python -m experiments.<module> --config=... --workdir=... args`; `config` a path or
    `[path, flags...]` (flags every call on that run needs, e.g. a base stage's base run)."""
    path, *flags = [config] if isinstance(config, (str, Path)) else config
    cmd = [
        sys.executable,
        "-m",
        f"experiments.{module}",
        f"--config={path}",
        f"--workdir={workdir}",
        *flags,
        *args,
    ]
    out = subprocess.run(cmd, cwd=REPO, env=ENV, capture_output=True, text=True, timeout=600, **kw)
    if check and out.returncode != 0:
        raise AssertionError(f"{' '.join(cmd)} failed:\n{out.stderr[-3000:]}")
    return out


def _skip_without_data(config) -> None:
    """Skip, with the loader's own one-line reason, when the config's data set is not here
    (Fashion-MNIST without the Debian package `dataset-fashion-mnist`)."""
    if not Path(config).stem.startswith("fashion"):  # fashion_mnist.py, fashion_translation.py
        return
    from jaxgen.data.images import DatasetMissingError, fashion_mnist_dir

    try:
        fashion_mnist_dir()
    except DatasetMissingError as e:
        pytest.skip(str(e))


@pytest.mark.slow
@pytest.mark.parametrize("config", CLI_CONFIGS, ids=lambda p: "/".join(Path(p).parts[-2:]))
def test_config_smoke(config, tmp_path):
    _skip_without_data(config)
    wd = tmp_path / "run"
    stage = get_recipe(_recipe_of(config)).CAPABILITIES.base_stage
    if stage is not None:  # first the base: the same file name under the base recipe's folder
        base_config = Path(config).parents[1] / stage.recipes[0] / Path(config).name
        run("train", base_config, tmp_path / "base", "--config.runlocal=True")
    given = (
        config if stage is None else [config, f"--config.method.base_workdir={tmp_path / 'base'}"]
    )
    run("train", given, wd, "--config.runlocal=True")
    assert sorted(int(p.name) for p in (wd / "checkpoints").iterdir() if p.name.isdigit()) == [1, 2]
    rows = [json.loads(x) for x in (wd / "metrics.jsonl").read_text().splitlines()]
    headline = get_recipe(_recipe_of(config)).CAPABILITIES.headline
    assert [r["step"] for r in rows] == [1, 2]
    assert all(np.isfinite(r[k]) for r in rows for k in headline)
    assert list((wd / "samples").glob("*.png"))
    out = run("train", given, wd, "--config.runlocal=True", "--config.train.num_steps=3")
    assert "resuming from" in out.stdout and "checkpoints/2, step 2 of 3" in out.stdout
    run("sample", given, wd, "--config.runlocal=True", "--num=10", f"--out={wd / 's.npy'}")
    x = np.load(wd / "s.npy")
    assert x.shape[0] == 10 and x.dtype == np.float32 and np.isfinite(x).all()
    run("evaluate", given, wd, "--config.runlocal=True")
    metrics = json.loads((wd / "eval" / "metrics.json").read_text())
    assert metrics["protocol"]["checkpoint_step"] == 3
    if "energy_histogram" in metrics:  # image runs: every downstream procedure ran
        assert 0.0 <= metrics["energy_histogram"]["auroc_train_vs_test"] <= 1.0
        assert all(
            0.0 <= v["auroc"] <= 1.0 for k, v in metrics["ood"].items() if k != "in_distribution"
        )
        for name in ("energy_histogram", "nearest_neighbours", "interpolation"):
            assert Path(metrics[name]["figure"]).stat().st_size > 0


def test_every_recipe_has_a_cli_smoke_test():
    assert {_recipe_of(p) for p in CLI_CONFIGS} == {_recipe_of(p) for p in CONFIGS}


@pytest.mark.slow
@pytest.mark.parametrize("config", RUN_IN_PROCESS, ids=lambda p: "/".join(Path(p).parts[-2:]))
def test_config_smoke_in_process(config, tmp_path):
    """These configs' smoke variants train, resume and sample in-process (CIFAR-10 on tfds mock
    data of the right shape: it is not on this machine)."""
    from experiments import cli
    from experiments.train import train

    c, data = _smoke_config(config)
    with data:
        state = train(c, str(tmp_path), progress=False)
        assert int(state.step) == 2
        c.train.num_steps = 3
        state = train(c, str(tmp_path), progress=False)
        assert int(state.step) == 3
        exp = cli.experiment(c)
        x, stats = exp.draw(state, 4, seed=0)
    assert x.shape == (4, *exp.shape) and np.isfinite(x).all() and stats["nfe_mean"] > 0
    if config in TFDS_CONFIGS:
        side = TFDS_SIDES[Path(config).stem]
        assert exp.shape == (side, side, 3)


def _smoke_config(config):
    """The smoke variant of the config file `config` and the context its data needs (tfds mock
    data of the set's shape for CIFAR-10 / CelebA / LSUN); skips without Fashion-MNIST."""
    import contextlib
    import importlib.util

    from experiments.configs.common import smoke

    _skip_without_data(config)
    spec = importlib.util.spec_from_file_location("cfg", config)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    data = contextlib.nullcontext()
    if config in TFDS_CONFIGS:
        import tensorflow_datasets as tfds

        data = tfds.testing.mock_data(num_examples=32)
    return smoke(module.get_config()), data


@pytest.mark.parametrize("config", TRACED_CONFIGS, ids=lambda p: "/".join(Path(p).parts[-2:]))
def test_config_smoke_traces(config):
    """Every other config's smoke variant reads its data, builds its state's shapes and traces
    its train step and sampler (`jax.eval_shape`): the step keeps the state's structure, shapes
    and dtypes and reports the recipe's headline metrics; samples have the data's shape."""
    from experiments import cli

    c, data = _smoke_config(config)
    with data:
        exp = cli.experiment(c)
        batch = exp.stream().batch(0)
    assert batch["x"].shape == (c.data.batch_size, *exp.shape)
    state = exp.abstract_state()
    step = partial(exp.recipe.train_step, config=exp.rc)
    new_state, metrics = jax.eval_shape(step, state, batch)
    shapes = lambda t: jax.tree.map(lambda a: (a.shape, a.dtype), t)  # noqa: E731
    assert shapes(new_state) == shapes(state)
    assert set(exp.caps.headline) <= set(metrics)
    key = jax.random.PRNGKey(0)
    if exp.translating:
        source = jax.ShapeDtypeStruct((4, *exp.shape), np.float32)
        x, _ = jax.eval_shape(
            lambda s, x0: exp.recipe.translate(s, x0, config=exp.rc, key=key), state, source
        )
    else:
        sample = partial(exp.recipe.sample, config=exp.rc, key=key, shape=exp.shape)
        x, _ = jax.eval_shape(lambda s: sample(s, 4), state)
    assert x.shape == (4, *exp.shape) and x.dtype == np.float32


def _final_params(workdir):
    cfg = vapo.Config()
    like = vapo.init(cfg, {"x": np.zeros((1, 2), np.float32)}, key=jax.random.PRNGKey(0))
    state, meta = Checkpoints(Path(workdir) / "checkpoints").restore(like)
    return state, meta


def _interrupt(config, wd, args, sig):
    """Start `train`, send `sig` once checkpoint 200 exists; `(returncode, stderr)`."""
    cmd = [sys.executable, "-m", "experiments.train", f"--config={config}", f"--workdir={wd}"]
    proc = subprocess.Popen(
        [*cmd, *args], cwd=REPO, env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    deadline = time.time() + 300
    while not (wd / "checkpoints" / "200").exists() and proc.poll() is None:
        assert time.time() < deadline, "no checkpoint appeared"
        time.sleep(0.05)
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=120)
    return proc.returncode, err.decode()


@pytest.mark.slow
def test_kill_term_and_resume_are_bit_identical(tmp_path):
    """SIGKILL: the run resumes from its last periodic checkpoint. SIGTERM (preemption): the
    step in flight finishes and is checkpointed, one line says so, the exit status is 143, and
    the resumed run ends bit-identical to an uninterrupted one, as the killed one does."""
    config = REPO / "experiments/configs/vapo/toy2d.py"
    args = [
        "--config.train.num_steps=600",
        "--config.train.ckpt_every=100",
        "--config.train.sample_every=0",
    ]
    run("train", config, tmp_path / "full", *args)
    full, full_meta = _final_params(tmp_path / "full")

    code, _ = _interrupt(config, tmp_path / "killed", args, signal.SIGKILL)
    assert code == -signal.SIGKILL
    assert 600 not in Checkpoints(tmp_path / "killed" / "checkpoints").all_steps()

    code, err = _interrupt(config, tmp_path / "termed", args, signal.SIGTERM)
    saved = Checkpoints(tmp_path / "termed" / "checkpoints").latest_step()
    lines = [ln for ln in err.splitlines() if ln.startswith("SIGTERM")]
    assert code == 143 and len(lines) == 1, err[-2000:]
    assert f"stopped at step {saved}; checkpoint" in lines[0] and "to resume" in lines[0]
    assert 200 <= saved < 600

    for wd in ("killed", "termed"):
        run("train", config, tmp_path / wd, *args)
        resumed, resumed_meta = _final_params(tmp_path / wd)
        assert int(full.step) == int(resumed.step) == 600
        assert full_meta["cursor"] == resumed_meta["cursor"]
        for a, b in zip(jax.tree.leaves(full), jax.tree.leaves(resumed), strict=True):
            np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def test_consecutive_draws_reuse_one_compiled_sampler():
    """`Experiment.draw` builds its jitted sampler once per run: later draws of the same size
    (figures, evaluation rounds, model selection) run the solve without re-tracing."""
    from experiments import cli
    from experiments.configs.vapo.toy2d import get_config

    exp = cli.experiment(get_config())
    state = exp.init(exp.example_batch())
    for seed in range(3):
        x, stats = exp.draw(state, 1000, seed=seed)
        assert x.shape == (1000, 2) and stats["nfe_mean"] > 0
    (fn,) = [f for k, f in exp._jitted.items() if k[0] in ("sample", "sharded_sample")]
    assert fn._cache_size() == 1
    np.testing.assert_array_equal(
        exp.draw(state, 1000, seed=0)[0], exp.draw(state, 1000, seed=0)[0]
    )

"""Sample, evaluate and a base stage check the run before they draw from it or build on it
(issue #30; docs/operating.md, "Checks before sampling"): the config must describe the model that
was trained (its recorded identity; sampler settings stay free), a `--from` file must hold the
run's images, the output must fit, a data fit must be finite, and a base run must be finished and
idle. Each refusal is one line and writes nothing.

One DDGAN run on 25 Gaussians (4 steps) and one gan2d base (2 steps) are trained per module;
everything else is checked on them, or on configs and files alone.
"""

import importlib
import json
import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from test_base_stage import TILT, _tilt_config
from test_translation_data import _digits_translation

from experiments import cli
from experiments.configs.common import base_config, smoke
from experiments.configs.gan2d.toy2d import get_config as gan_config
from experiments.evaluate import evaluate
from experiments.resume import check_sampling, run_identity
from experiments.sample import check_room, read_images, sample, translate_file
from experiments.train import train
from jaxgen import methods
from jaxgen.methods.common import ConfigError
from jaxgen.train.checkpoint import CheckpointError
from jaxgen.train.fixed_fields import save_fields
from jaxgen.train.lock import WorkdirLock, WorkdirLockedError, lock_holder

REPO = Path(__file__).resolve().parents[1]
DDGAN = "experiments/configs/ddgan/25gaussians.py"


def _ddgan():
    """The DDGAN 25-Gaussians smoke config (as `--config.runlocal=True`), 4 steps."""
    c = smoke(importlib.import_module("experiments.configs.ddgan.25gaussians").get_config())
    c.train.update(dict(num_steps=4, ckpt_every=4, sample_every=0, log_every=4))
    return c


@pytest.fixture(scope="module")
def ddgan_run(tmp_path_factory):
    wd = tmp_path_factory.mktemp("ddgan") / "run"
    train(_ddgan(), str(wd), progress=False)
    return wd


# --------------------------------------------------------------------------- the run's identity


def test_sample_refuses_another_model_unless_allowed(ddgan_run, tmp_path):
    c = _ddgan()
    c.method.diffusion_steps = 1
    out = tmp_path / "t1.npy"
    with pytest.raises(ConfigError) as e:
        sample(c, str(ddgan_run), 10, out=str(out))
    assert str(e.value) == (
        f"sample refused: the run in {ddgan_run} was trained with method.diffusion_steps=4, this "
        "config has 1; pass --config.eval.allow_changes=method.diffusion_steps to sample it anyway"
    )
    assert not out.exists()
    c.eval.allow_changes = "method.diffusion_steps"
    x, stats, step = sample(c, str(ddgan_run), 10)
    assert x.shape == (10, 2) and stats["nfe_mean"] == 1.0 and step == 4


def test_evaluate_refuses_before_anything_is_written(ddgan_run):
    c = _ddgan()
    c.method.diffusion_steps, c.model.hidden = 2, (8, 8)  # another shape too: refused unread
    with pytest.raises(ConfigError) as e:
        evaluate(c, str(ddgan_run), step=4)
    assert str(e.value) == (
        f"evaluate refused: the run in {ddgan_run} was trained with method.diffusion_steps=4 "
        "and model.hidden=[16, 16, 16], this config has 2 and [8, 8]; pass "
        "--config.eval.allow_changes=method.diffusion_steps,model.hidden to evaluate it anyway"
    )
    assert not (ddgan_run / "eval").exists()
    c = cli.experiment(base_config("glf", dataset="25gaussians", batch_size=16, num_steps=4)).c
    with pytest.raises(ConfigError, match="is a 'ddgan' run and this config is for 'glf'"):
        evaluate(c, str(ddgan_run))


def test_a_second_evaluate_of_one_folder_is_refused_while_the_first_runs(ddgan_run, tmp_path):
    """Review case E10: two evaluations of one run at once redid every round; the second is now
    refused, naming the first, and writes nothing; the first's folder is usable afterwards."""
    out = ddgan_run / "eval" / "step_4"
    out.mkdir(parents=True)
    c = _ddgan()
    c.eval.num_samples = 500
    with WorkdirLock(out, name=".lock", say=lambda *_: None):  # stands in for the first one
        with pytest.raises(WorkdirLockedError, match=rf"^{out} is in use by pid {os.getpid()} "):
            evaluate(c, str(ddgan_run), step=4)
        assert sorted(p.name for p in out.iterdir()) == [".lock"]
    result = evaluate(c, str(ddgan_run), step=4)  # released: the next one runs
    assert result["protocol"]["checkpoint_step"] == 4 and (out / "metrics.json").exists()


def _env():
    env = dict(os.environ, JAX_PLATFORMS="cpu", TF_CPP_MIN_LOG_LEVEL="3")
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    return env


def _error_lines(err: str) -> list[str]:
    noise = ("WARNING:absl", "INFO:absl", "W0", "I0", "E0")
    return [ln for ln in err.splitlines() if ln.strip() and not ln.startswith(noise)]


def test_the_cli_refuses_in_one_line(ddgan_run, tmp_path):
    """`python -m experiments.sample` on the T=4 run with T=1 (case R04): exit 2, one line,
    nothing written."""
    out = tmp_path / "t1.npy"
    cmd = [sys.executable, "-m", "experiments.sample", f"--config={DDGAN}"]
    cmd += [f"--workdir={ddgan_run}", "--config.runlocal=True", "--num=10", f"--out={out}"]
    done = subprocess.run(
        [*cmd, "--config.method.diffusion_steps=1"],
        cwd=REPO,
        env=_env(),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 2 and _error_lines(done.stderr) == [
        f"error: sample refused: the run in {ddgan_run} was trained with "
        "method.diffusion_steps=4, this config has 1; pass "
        "--config.eval.allow_changes=method.diffusion_steps to sample it anyway"
    ]
    assert not out.exists()


def test_a_non_finite_sampler_setting_is_refused():
    """Case S03 / N13: GLF's `sample.temperature=inf` passed `> 0` and drew all-NaN samples."""
    c = base_config("glf", dataset="digits", batch_size=16, num_steps=2)
    c.sample.temperature = float("inf")
    with pytest.raises(ConfigError) as e:
        cli.experiment(c)
    assert str(e.value) == "config.sample.temperature=inf: must be finite"


def _recorded(c, **changes):
    """The identity `c` records, with dotted fields changed (another training config)."""
    return {**run_identity(c), **changes}


def test_sampler_settings_stay_free_per_recipe():
    """The `sample` section is not in the identity; where a recipe keeps a sampler setting in
    `method` or `model` (short-run EBM's ODE tolerances, unrolling) it stays free too; the
    dynamics that define the model (short-run EBM's K and step) do not."""
    c = cli.experiment(
        base_config("shortrun_ebm", dataset="8gaussians", batch_size=16, num_steps=2)
    ).c
    trained = _recorded(c, **{"method.rtol": 1e-3, "method.atol": 1e-3, "method.unroll": False})
    check_sampling(c, trained, "DIR")
    with pytest.raises(ConfigError, match=r"trained with method.langevin_steps=10, this config"):
        check_sampling(c, _recorded(c, **{"method.langevin_steps": 10}), "DIR")
    c = cli.experiment(base_config("vapo", dataset="8gaussians", batch_size=16, num_steps=2)).c
    check_sampling(c, _recorded(c, **{"model.batch_splits": 2}), "DIR")  # the same numbers
    c.sample.t_end = 3.0  # a sampler section field: not in the identity at all
    check_sampling(c, _recorded(c), "DIR")
    c = cli.experiment(base_config("vaebm", dataset="25gaussians", batch_size=16, num_steps=2)).c
    moved = {"method.base_workdir": "/elsewhere", "method.base_step": 3, "method.unroll": True}
    check_sampling(c, _recorded(c, **moved), "DIR")  # the stage holds its frozen base itself
    with pytest.raises(ConfigError, match=r"trained with method.step_size=0.5,"):
        check_sampling(c, _recorded(c, **{"method.step_size": 0.5}), "DIR")
    c.eval.allow_changes = "method"  # a section prefix
    check_sampling(c, _recorded(c, **{"method.step_size": 0.5}), "DIR", what="evaluate")


# --------------------------------------------------------------------------- sample --from


_SHAPE = (8, 8, 1)
_WANT = "expected a .npy file of float32 [N, 8, 8, 1] in [-1, 1] (numpy.save)"


def _bad_files(tmp_path) -> dict:
    """One file per fault (cases F02-F08) and the one line `read_images` gives it."""
    pixels = np.linspace(0, 255, 3 * 64, dtype=np.float32).reshape(3, *_SHAPE)
    ok = pixels / 127.5 - 1
    nan = ok.copy()
    nan[0, 3, 3, 0] = np.nan
    files = {
        "nan.npy": (nan, "has 1 non-finite value(s) (NaN or Inf)"),
        "255.npy": (
            pixels,
            "images must be scaled to [-1, 1]; got values in [0, 255] (looks like 0..255 pixels; "
            "scale to [-1, 1])",
        ),
        "u8.npy": (
            pixels.astype(np.uint8),
            "holds uint8 values (0..255 pixels? x / 127.5 - 1 scales them)",
        ),
        "empty.npy": (np.zeros((0, *_SHAPE), np.float32), "holds no images (shape (0, 8, 8, 1))"),
        "obj.npy": (np.array([ok, "x"], dtype=object), "holds Python objects (an object array)"),
        "words.npy": (np.array(["a", "b"]), "holds <U1 values, not numbers"),
        "text.npy": ("1,2,3\n", "is not a .npy file (no numpy header)"),
        "zero.npy": ("", "is empty (0 bytes)"),
        "arch.npz": ({"x": ok}, "is an .npz archive (of x)"),
    }
    out = {}
    for name, (content, line) in files.items():
        path = tmp_path / name
        if isinstance(content, str):
            path.write_text(content)
        elif isinstance(content, dict):
            np.savez(path, **content)
        else:
            np.save(path, content, allow_pickle=True)
        out[path] = f"--from={path}: {line}; {_WANT}"
    return out


def test_from_files_are_checked_like_a_training_batch(tmp_path):
    for path, line in _bad_files(tmp_path).items():
        with pytest.raises(ConfigError) as e:
            read_images(str(path), _SHAPE)
        assert str(e.value) == line
    with pytest.raises(ConfigError, match=f"--from={tmp_path}: is a directory; expected"):
        read_images(str(tmp_path), _SHAPE)
    good = np.random.default_rng(1).uniform(-1, 1, (2, *_SHAPE))  # float64: cast
    np.save(tmp_path / "good.npy", good)
    x = read_images(str(tmp_path / "good.npy"), _SHAPE)
    assert x.dtype == np.float32 and x.shape == (2, *_SHAPE)


def test_translate_file_refuses_a_bad_file_before_reading_the_run(tmp_path):
    """The CLI's `--from` path: the file is checked before any checkpoint is read (the workdir
    here does not even exist, and is not created)."""
    c = _digits_translation()
    bad = np.full((2, *_SHAPE), np.nan, np.float32)
    np.save(tmp_path / "nan.npy", bad)
    with pytest.raises(ConfigError, match=r"nan.npy: has 128 non-finite value\(s\)"):
        translate_file(c, str(tmp_path / "run"), str(tmp_path / "nan.npy"))
    assert not (tmp_path / "run").exists()


# --------------------------------------------------------------------------- output size


def test_an_output_too_large_is_refused_up_front(ddgan_run, tmp_path, monkeypatch):
    """Case S01: 3e9 2-D samples are 24 GB; refused before the run is read or anything drawn."""
    out = tmp_path / "big.npy"
    monkeypatch.setattr("experiments.sample.available_memory", lambda: 23 * 10**9)
    with pytest.raises(ConfigError) as e:
        sample(_ddgan(), str(ddgan_run), 3_000_000_000, out=str(out))
    assert str(e.value) == (
        "--num=3000000000: 3000000000 samples of shape (2,) take 24.0 GB and drawing them needs "
        "about 48.0 GB of memory; 23.0 GB is available; draw fewer (e.g. several runs with "
        "another --seed)"
    )
    assert not out.exists()
    monkeypatch.setattr("experiments.sample.shutil.disk_usage", lambda p: SimpleNamespace(free=0))
    with pytest.raises(ConfigError) as e:
        check_room(1_000_000, (2,), str(tmp_path / "deep" / "s.npy"))
    assert str(e.value).startswith(f"--out={tmp_path / 'deep' / 's.npy'}: 1000000 samples")
    assert str(e.value).endswith(
        f"take 8.0 MB; {tmp_path} has 0.0 MB free; draw fewer or write elsewhere"
    )
    check_room(1_000_000, (2,))  # no output file: memory only


# --------------------------------------------------------------------------- the data fit


def test_a_non_finite_data_fit_is_refused_naming_file_and_field(tmp_path):
    """Case D05: a NaN in `data_fit.npz` was sampled into 50 % NaN output with exit 0. Refused
    in one line naming the file and the field; deleting it, as the line says, refits it."""
    c = smoke(importlib.import_module("experiments.configs.fdrl.toy2d").get_config())
    c.method.update(dict(prior="ddp", flow_steps=2))
    wd = tmp_path / "run"
    train(c, str(wd), progress=False)
    path, out = wd / "data_fit.npz", tmp_path / "s.npy"
    fit = dict(np.load(path))
    save_fields(path, {**fit, "prior_mean": np.array([0.1, np.nan], np.float32)})
    with pytest.raises(CheckpointError) as e:
        sample(c, str(wd), 10, out=str(out))
    assert str(e.value) == (
        f"{path}: the data fit's field 'prior_mean' has 1 non-finite value(s); delete the file: "
        "the next command refits it bit-identically on the training data"
    )
    assert not out.exists()
    path.unlink()
    x, _, _ = sample(c, str(wd), 10)
    assert np.isfinite(x).all()
    np.testing.assert_array_equal(np.load(path)["prior_mean"], fit["prior_mean"])


# --------------------------------------------------------------------------- base stages


@pytest.fixture(scope="module")
def gan_base(tmp_path_factory):
    """A finished gan2d base run: 2 steps, checkpoints 1 and 2."""
    c = gan_config()
    c.data.update(dict(batch_size=16))
    c.train.update(dict(num_steps=2, ckpt_every=1, sample_every=0, steps_per_call=1))
    c.model.update(dict(latent=4, gen_hidden=(8,), disc_hidden=(8,)))
    wd = tmp_path_factory.mktemp("gan") / "base"
    train(c, str(wd), progress=False)
    return wd


@pytest.fixture
def tilt(monkeypatch):
    monkeypatch.setitem(methods.RECIPES, "tilt2d", TILT)


def test_a_base_that_is_still_training_is_refused(gan_base, tilt):
    """Case BS6: a live process holds the base's lock (here this one, through another open
    file: `flock` sees them as two holders)."""
    assert lock_holder(gan_base) is None
    with WorkdirLock(gan_base, say=lambda *_: None):
        holder = lock_holder(gan_base)
        assert holder["pid"] == os.getpid()
        with pytest.raises(ConfigError) as e:
            cli.experiment(_tilt_config(gan_base)).restore_base()
        assert str(e.value) == (
            f"the base run in {gan_base} is still training (pid {os.getpid()} on "
            f"{holder['host']}); wait for it or name a step with --config.method.base_step=N"
        )
        c = _tilt_config(gan_base)
        c.method.base_step = 1  # a named checkpoint is taken as it is
        assert int(cli.experiment(c).restore_base()[1].step) == 1
    assert lock_holder(gan_base) is None and not (gan_base / ".lock").read_text()


def test_an_unfinished_base_is_refused_unless_a_step_is_named(gan_base, tilt, tmp_path):
    config = json.loads((gan_base / "config.json").read_text())
    config["train"]["num_steps"] = 5  # as if stopped at step 2 of 5
    unfinished = tmp_path / "unfinished"
    unfinished.mkdir()
    (unfinished / "config.json").write_text(json.dumps(config))
    os.symlink(gan_base / "checkpoints", unfinished / "checkpoints")
    with pytest.raises(ConfigError) as e:
        cli.experiment(_tilt_config(unfinished)).restore_base()
    assert str(e.value) == (
        f"the base run in {unfinished} is unfinished: its newest readable checkpoint is step 2 "
        "of train.num_steps=5; finish training it, or name a step with "
        "--config.method.base_step=2"
    )
    c = _tilt_config(unfinished)
    c.method.base_step = 2
    assert int(cli.experiment(c).restore_base()[1].step) == 2


def test_the_base_checkpoint_is_recorded_with_its_digest(gan_base, tilt, tmp_path):
    exp = cli.experiment(_tilt_config(gan_base))
    base, state = exp.restore_base()
    for wd in ("a", "b"):
        exp.save_base_config(base, str(tmp_path / wd), step=int(state.step))
    a, b = (json.loads((tmp_path / wd / "base_run.json").read_text()) for wd in ("a", "b"))
    assert a == b and a["checkpoint"] == str(gan_base / "checkpoints" / "2")
    assert a["step"] == 2 and a["base_step"] == -1 and len(a["sha256"]) == 64


def test_a_damaged_base_config_names_the_file(gan_base, tilt, tmp_path):
    """Case BS3: the base's `config.json` cut short."""
    base = tmp_path / "base"
    base.mkdir()
    text = (gan_base / "config.json").read_text()
    (base / "config.json").write_text(text[:29])
    with pytest.raises(ConfigError) as e:
        cli.experiment(_tilt_config(base)).restore_base()
    line = str(e.value)
    assert "\n" not in line and line.startswith(f"config.method.base_workdir='{base}': ")
    assert str(base / "config.json") in line and "base run's config" in line


def test_sigterm_stops_evaluate_and_sample_with_one_line_and_status_143(tmp_path, capsys):
    """E08, S02: SIGTERM during `evaluate` or `sample` ends it at once with one line (rounds
    and `--out` are written atomically, so any moment is safe); the previous SIGTERM handler is
    back afterwards."""
    import os
    import signal

    from experiments.cli import stop_on_sigterm

    before = signal.getsignal(signal.SIGTERM)
    with pytest.raises(SystemExit) as e, stop_on_sigterm("evaluation stopped; rounds kept"):
        os.kill(os.getpid(), signal.SIGTERM)
        for _ in range(1000):  # the handler runs between bytecodes
            pass
    assert e.value.code == 143
    assert capsys.readouterr().err.strip().splitlines() == [
        "SIGTERM: evaluation stopped; rounds kept"
    ]
    assert signal.getsignal(signal.SIGTERM) is before

"""The CLI contract: a bad flag or config field stops with exit status 2 and ONE line on stderr
that names the field; sample / evaluate on a run without checkpoints say so in one line.

Most cases run `experiments.cli.parse_flags` in-process on a private `FlagValues` (the same
parsing code as the CLIs, without jax start-up costs); a few subprocesses prove the behaviour end
to end.
"""

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import ml_collections
import pytest
from absl import flags
from ml_collections import config_flags

from experiments import cli
from experiments.configs.vapo import toy2d as vapo_toy2d
from jaxgen.methods import vapo
from jaxgen.methods.common import ConfigError, replace_fields

REPO = Path(__file__).resolve().parents[1]
CONFIG = "experiments/configs/vapo/toy2d.py"

# ml_collections loads config files with the deprecated importlib load_module()
pytestmark = pytest.mark.filterwarnings(
    "ignore:the load_module\\(\\) method is deprecated:DeprecationWarning"
)


# --------------------------------------------------------------------------- in-process parsing


def _parse(monkeypatch, *overrides, config=CONFIG):
    """`cli.parse_flags` on a fresh FlagValues defined like `cli.define_common_flags` (which
    writes to absl's global FLAGS; defining those twice in one process is an error)."""
    fv = flags.FlagValues()
    config_flags.DEFINE_config_file(
        "config", None, "experiment config file", flag_values=fv, lock_config=True
    )
    flags.DEFINE_string("workdir", None, "run directory", flag_values=fv)
    argv = ["train", *(["--config", str(REPO / config)] if config else []), *overrides]
    monkeypatch.setattr(sys, "argv", argv)  # config_flags reads overrides from sys.argv
    monkeypatch.setattr(cli, "FLAGS", fv)
    return cli.parse_flags(argv)


def _one_error_line(monkeypatch, capsys, *overrides, **kw) -> str:
    """What a CLI's `main` prints: `parse_flags` raises, `run_main` makes it one line."""
    monkeypatch.setattr("jaxgen.runtime.reuse_host_memory", lambda: None)
    with pytest.raises(SystemExit) as e:
        cli.run_main(lambda: _parse(monkeypatch, *overrides, **kw))
    assert e.value.code == 2
    out, err = capsys.readouterr()
    assert out == ""
    lines = err.splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("error: ") and "Traceback" not in err
    return lines[0]


BAD = [
    # (override, text naming the field)
    ("--config.optim.potential.lrx=1", "config.optim.potential.lrx"),  # unknown key
    ("--config.optim.lr=1e-3", "config.optim.lr"),  # a field of another section's level
    ("--config.optim.potential.lr=abc", "config.optim.potential.lr"),  # wrong type
    ("--config.train.num_steps=1.5", "config.train.num_steps"),
    ("--config.seed=abc", "config.seed"),
    ("--config.optim.potential.lr=-1", "config.optim.potential.lr"),  # impossible values
    ("--config.optim.potential.eps=0", "config.optim.potential.eps"),
    ("--config.optim.potential.weight_decay=0.1", "config.optim.potential.weight_decay"),
    ("--config.sample.t_end=0", "config.sample.t_end"),
    ("--config.method.sigma=0", "config.method.sigma"),
    ("--config.optim.potential.ema_rate=1.0", "config.optim.potential.ema_rate"),
    ("--config.optim.potential.decay=milestones", "config.optim.potential.milestones"),
    ("--config.data.batch_size=12", "config.data.batch_size"),  # not divisible by 8 devices
    ("--config.data.batch_size=0", "config.data.batch_size"),
    ("--config.data.name=nope", "config.data.name"),
    ("--config.train.nonfinite=maybe", "config.train.nonfinite"),
    ("--config.train.num_steps=-1", "config.train.num_steps"),
    ("--config.train.log_every=0", "config.train.log_every"),
    ("--config.train.num_devices=9", "config.train.num_devices"),
    ("--config.eval.num_samples=0", "config.eval.num_samples"),
    ("--config.sample.t_end=inf", "config.sample.t_end"),  # passes `> 0`, but not finite
    ("--config.method.sigma=nan", "config.method.sigma"),
]


@pytest.mark.parametrize("override, field", BAD, ids=[b[0].split("--config.")[1] for b in BAD])
def test_bad_override_is_one_line_naming_the_field(monkeypatch, capsys, override, field):
    line = _one_error_line(monkeypatch, capsys, override)
    assert field in line


def test_non_finite_values_are_refused_as_not_finite():
    """inf passes a `> 0` check and nan fails every comparison with a misleading reason: both
    are one `ConfigError` saying the field must be finite."""
    for field, value in (("sample.t_end", float("inf")), ("method.sigma", float("nan"))):
        with pytest.raises(ConfigError, match=rf"{field}=(inf|nan): must be finite"):
            replace_fields(vapo.Config(), {field: value})


def test_batch_error_states_the_device_count(monkeypatch, capsys):
    line = _one_error_line(monkeypatch, capsys, "--config.data.batch_size=12")
    assert "divisible by the number of devices (8)" in line


def test_missing_config_is_one_line(monkeypatch, capsys):
    line = _one_error_line(monkeypatch, capsys, config=None)
    assert "--config is required" in line


def test_good_overrides_reach_the_recipe_config(monkeypatch):
    exp = _parse(
        monkeypatch,
        "--config.optim.potential.lr=0.5",
        "--config.optim.potential.decay=cosine",
        "--config.model.hidden=(64, 64)",
    )
    c, rc = exp.c, exp.rc
    assert c.optim.potential.lr == 0.5 and tuple(c.model.hidden) == (64, 64)
    assert isinstance(rc, vapo.Config) and exp.caps is vapo.CAPABILITIES
    assert rc.optim.potential.lr == 0.5 and rc.model.hidden == (64, 64)
    assert rc.optim.potential.total_steps == c.train.num_steps  # cosine: the run's length


def test_runlocal_applies_the_smoke_variant(monkeypatch):
    c = _parse(monkeypatch, "--config.runlocal=True").c
    assert c.train.num_steps == 2 and c.data.batch_size == 16 and c.eval.num_samples == 160


def test_configs_state_only_what_differs_from_the_recipe_defaults():
    """The recipe's Config is the one source of defaults: the ConfigDict's sections are filled
    from it, and the 2-D config file sets nothing in them that equals a default."""
    from jaxgen.methods.common import config_to_dict

    c = vapo_toy2d.get_config()
    defaults = config_to_dict(vapo.Config())
    for section in ("model", "method", "optim", "sample"):
        assert c[section].to_dict() == defaults[section]


def test_validate_and_recipe_config_directly():
    c = vapo_toy2d.get_config()
    cli.experiment(c)  # the shipped config is valid
    for name in ("seed", "data", "train", "eval"):
        assert name in c
    for field in ("name", "batch_size"):
        assert field in c.data
    for field in ("num_steps", "log_every", "ckpt_every", "sample_every"):
        assert field in c.train
    c.optim.potential.lr = -1.0
    with pytest.raises(cli.ConfigError, match=r"config\.optim\.potential\.lr="):
        cli.experiment(c)
    c = vapo_toy2d.get_config()
    c.sample.t_end = 0.0
    with pytest.raises(cli.ConfigError, match=r"config\.sample\.t_end="):
        cli.experiment(c)
    c = vapo_toy2d.get_config()
    with c.unlocked():
        c.optim.potential.foo = 1
    with pytest.raises(
        cli.ConfigError, match=r"unknown config field config\.optim\.potential\.foo"
    ):
        cli.experiment(c)


# ---- regressions of bugs found while writing these tests


def test_unknown_key_message_names_the_full_field(monkeypatch, capsys):
    line = _one_error_line(monkeypatch, capsys, "--config.optim.potential.lrx=1")
    assert "config.optim.potential.lrx" in line and "\\" not in line


def test_unknown_section_is_one_line(monkeypatch, capsys):
    line = _one_error_line(monkeypatch, capsys, "--config.nope.x=1")
    assert "nope" in line


@pytest.mark.parametrize(
    "override",
    [
        "--config.optim.potential.optimizer=sgd",
        "--config.optim.potential.decay=linear",
        "--config.model.act=foo",
        "--config.sample.solver=foo",
    ],
)
def test_unknown_choice_is_rejected_up_front(monkeypatch, capsys, override):
    line = _one_error_line(monkeypatch, capsys, override)
    assert override.split("=")[0].lstrip("-") in line


# --------------------------------------------------------------------------- end to end

NOISE = re.compile(
    r"^([WIEF]\d{4} |WARNING:absl:|INFO:absl:|.*tensorflow|.*Tensorflow library not found)"
)


def _env():
    env = dict(os.environ)
    env.update(
        XLA_FLAGS="--xla_force_host_platform_device_count=8",
        JAX_PLATFORMS="cpu",
        TF_CPP_MIN_LOG_LEVEL="3",
        OPENBLAS_NUM_THREADS="1",
        PYTHONPATH=str(REPO) + os.pathsep + env.get("PYTHONPATH", ""),
    )
    return env


@pytest.fixture(scope="module")
def cli_runs(tmp_path_factory):
    """Three CLI invocations with bad input, started together (each pays ~3 s of imports)."""
    tmp = tmp_path_factory.mktemp("cli")
    empty = tmp / "empty_run"
    cases = {
        "bad_batch": [
            "experiments.train",
            f"--config={CONFIG}",
            f"--workdir={tmp / 'never'}",
            "--config.data.batch_size=12",
        ],
        "no_workdir": ["experiments.train", f"--config={CONFIG}"],
        "sample_empty": [
            "experiments.sample",
            f"--config={CONFIG}",
            f"--workdir={empty}",
            f"--out={tmp / 'x.npy'}",
        ],
    }
    procs = {
        k: subprocess.Popen(
            [sys.executable, "-m", *args],
            cwd=REPO,
            env=_env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for k, args in cases.items()
    }
    results = {}
    for k, p in procs.items():
        out, err = p.communicate(timeout=240)
        results[k] = (p.returncode, out, err)
    return tmp, results


def _check_one_line(result) -> str:
    code, out, err = result
    assert code == 2, (code, err)
    assert "Traceback" not in err
    lines = [ln for ln in err.splitlines() if ln.strip() and not NOISE.match(ln)]
    assert len(lines) == 1, err
    assert lines[0].startswith("error: ")
    return lines[0]


def test_cli_impossible_value_end_to_end(cli_runs):
    tmp, results = cli_runs
    line = _check_one_line(results["bad_batch"])
    assert "config.data.batch_size=12" in line and "(8)" in line  # 8 simulated devices
    assert not (tmp / "never").exists(), "a rejected config must not create the workdir"


def test_cli_missing_workdir_end_to_end(cli_runs):
    line = _check_one_line(cli_runs[1]["no_workdir"])
    assert "--workdir" in line and "required" in line


def test_sample_without_checkpoints_end_to_end(cli_runs):
    tmp, results = cli_runs
    line = _check_one_line(results["sample_empty"])
    assert "no checkpoints" in line and str(tmp / "empty_run") in line
    assert not (tmp / "x.npy").exists()
    assert not (tmp / "empty_run").exists(), "nothing is created in a run without checkpoints"


def test_restore_and_evaluate_without_checkpoints_in_process(tmp_path):
    """Library calls raise (no `sys.exit` below the CLIs' `main`), with one-line messages."""
    from experiments import evaluate
    from jaxgen.train.checkpoint import CheckpointError

    c = vapo_toy2d.get_config()
    exp = cli.experiment(c)
    empty = tmp_path / "run"
    for call in (
        lambda: exp.restore_latest(str(empty)),
        lambda: evaluate.evaluate(c, str(empty)),
    ):
        with pytest.raises(CheckpointError) as e:
            call()
        msg = str(e.value)
        assert msg.startswith("no checkpoints in ") and "\n" not in msg
        assert str(empty / "checkpoints") in msg
    assert not empty.exists()
    # an existing but empty checkpoint folder: the same message, nothing deleted
    (empty / "checkpoints").mkdir(parents=True)
    (empty / "checkpoints" / "keep.txt").write_text("x")
    with pytest.raises(CheckpointError, match="no checkpoints"):
        exp.restore_latest(str(empty))
    assert (empty / "checkpoints" / "keep.txt").read_text() == "x"


def test_config_docstring_states_the_commands():
    doc = vapo_toy2d.__doc__
    for tool in ("train", "sample", "evaluate"):
        assert f"python -m experiments.{tool}" in doc and CONFIG in doc
    assert isinstance(vapo_toy2d.get_config(), ml_collections.ConfigDict)


# ---- renamed fields (2026-12-07): one release of an error naming the new field


@pytest.mark.parametrize(
    "config, old, new",
    [
        ("experiments/configs/ddgan/25gaussians.py", "method.num_steps", "method.diffusion_steps"),
        (
            "experiments/configs/shortrun_ebm/9gaussians.py",
            "method.num_steps",
            "method.langevin_steps",
        ),
        ("experiments/configs/vapo/toy2d.py", "sample.fixed_steps", "sample.num_steps"),
    ],
)
def test_a_renamed_field_names_its_new_name(monkeypatch, capsys, config, old, new):
    line = _one_error_line(monkeypatch, capsys, f"--config.{old}=2", config=config)
    assert line == (
        f"error: config field config.{old} was renamed config.{new} "
        f"({config.split('/')[2]}) on 2026-12-07; set that instead"
    )
    assert _parse(monkeypatch, f"--config.{new}=2", config=config)  # the new name is taken


def test_a_field_renamed_in_another_recipe_is_just_unknown(monkeypatch, capsys):
    line = _one_error_line(monkeypatch, capsys, "--config.method.num_steps=2")  # VAPO: none
    assert line == "error: unknown config field config.method.num_steps"


def test_library_configs_and_saved_runs_follow_the_renames(tmp_path):
    from experiments.experiment import load_saved_config
    from experiments.resume import recorded_identity
    from jaxgen.methods import ddgan
    from jaxgen.methods.common import ConfigError, config_from_dict

    with pytest.raises(ConfigError, match=r"^config field config.method.num_steps was renamed"):
        config_from_dict(ddgan.Config, {"method": {"num_steps": 4}})
    saved = {"recipe": "ddgan", "method": {"num_steps": 8}, "data": {"name": "25gaussians"}}
    (tmp_path / "config.json").write_text(json.dumps(saved))
    c = load_saved_config(tmp_path / "config.json")  # an older run's config.json reads
    assert c.method.diffusion_steps == 8 and "num_steps" not in c.method
    run = {"recipe": "ddgan", "method.num_steps": 8}  # an older checkpoint's identity
    assert recorded_identity({"run": run}, str(tmp_path)) == {
        "recipe": "ddgan",
        "method.diffusion_steps": 8,
    }


def test_only_jaxgen_value_errors_are_one_line_user_errors(capsys):
    """Issue #30: a ValueError raised by jaxgen's own checks is one `error:` line (exit 2); one
    raised inside numpy or JAX is an internal error and keeps its traceback."""
    import numpy as np

    from experiments.cli import _our_check, run_main
    from jaxgen.train.logging import progress_mode

    def ours():
        progress_mode("sideways")

    def internal():
        np.zeros(2).reshape(3)

    with pytest.raises(SystemExit) as e:
        run_main(ours)
    assert e.value.code == 2
    assert capsys.readouterr().err.startswith("error: progress='sideways'")
    with pytest.raises(ValueError) as e:
        run_main(internal)
    assert not _our_check(e.value)

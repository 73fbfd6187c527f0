"""The evaluation protocol runner: FD-<dataset> in the project's features, rounds that survive
preemption, the protocol recorded, FID reported as unavailable without weights or with bad ones,
missing data reported before anything is sampled."""

import copy
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from experiments import evaluate as evaluate_module
from experiments import protocol
from experiments.configs.common import smoke
from experiments.configs.vapo.fashion_mnist import get_config
from experiments.evaluate import evaluate
from experiments.train import train
from jaxgen.data import DatasetMissingError
from jaxgen.metrics.inception_weights import InceptionWeightsError

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def digits_run(tmp_path_factory):
    c = smoke(get_config())
    c.data.name, c.model.channels = "digits", 1
    wd = tmp_path_factory.mktemp("digits_run")
    train(c, str(wd), progress=False)
    return c, wd


@pytest.mark.slow
def test_fd_rounds_resume_after_preemption(digits_run):
    c, wd = digits_run
    c.eval.metrics = ("fd", "sample_grid")
    first = evaluate(c, str(wd))
    fd = first["fd"]
    assert fd["fd_digits"] > 0 and fd["num_samples"] == c.eval.num_samples == 160
    assert (
        fd["feature_network"]["name"] == "digits_cnn_v1"
        and len(fd["feature_network"]["hash"]) == 64
    )
    assert first["protocol"]["feature_network"] == fd["feature_network"]
    assert 0 <= fd["precision"] <= 1 and 0 <= fd["recall"] <= 1
    (rdir,) = (wd / "eval").glob("rounds_*")
    rounds = sorted(rdir.glob("round_*.npz"))
    assert len(rounds) == 2
    kept_mtime = rounds[0].stat().st_mtime_ns
    rounds[1].unlink()  # as if preempted after the first round
    again = evaluate(c, str(wd))
    assert rounds[0].stat().st_mtime_ns == kept_mtime and rounds[1].exists()
    assert again["fd"]["fd_digits"] == pytest.approx(fd["fd_digits"], rel=1e-6)
    assert "fd.fd_digits" in (wd / "eval" / "metrics.md").read_text()
    saved = json.loads((wd / "eval" / "metrics.json").read_text())
    assert saved["protocol"]["round_size"] == 80


@pytest.mark.slow
def test_a_different_protocol_gets_its_own_rounds(digits_run):
    c, wd = digits_run
    c.eval.metrics = ("sample_grid",)
    evaluate(c, str(wd))
    c.eval.ema = False
    evaluate(c, str(wd))
    c.eval.ema = True
    assert len(list((wd / "eval").glob("rounds_*"))) >= 2


def test_fid_without_weights_reports_why(tmp_path):
    c = smoke(get_config())
    c.data.name = "cifar10"
    c.eval.inception_weights = str(tmp_path / "missing.pth")
    net, name, reason = protocol.feature_network(c)
    assert net is None and name == "fid"
    assert reason == f"unavailable: no Inception weights at {tmp_path / 'missing.pth'}"


def test_quantise_round_trip():
    import numpy as np

    x = np.linspace(-1, 1, 256, dtype=np.float32)
    u8 = protocol.quantise(x)
    assert u8.dtype == np.uint8 and u8.min() == 0 and u8.max() == 255
    np.testing.assert_allclose(protocol.dequantise(u8), x, atol=1 / 255)


@pytest.mark.slow
def test_model_selection_keeps_the_best_state(tmp_path):
    from jaxgen.train.checkpoint import Checkpoints

    c = smoke(get_config())
    c.data.name, c.model.channels = "digits", 1
    c.train.select_every, c.train.select_samples = 1, 160
    train(c, str(tmp_path), progress=False)
    rows = [json.loads(x) for x in (tmp_path / "selection.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [1, 2] and all(r["fd_digits"] > 0 for r in rows)
    best = min(rows, key=lambda r: r["fd_digits"])
    assert Checkpoints(tmp_path / "best").latest_step() == best["step"]


# --------------------------------------------------------------------------- bad FID weights


def _bad_weights(tmp_path) -> dict:
    """A few bad Inception weights files: {kind: path}."""
    random_npz = tmp_path / "random.npz"
    random_npz.write_bytes(np.random.default_rng(0).bytes(2048))
    wrong_hash = tmp_path / "pt_inception-2015-12-05-6726825d.pth"
    wrong_hash.write_bytes(b"not the weights")
    truncated = tmp_path / "truncated.npz"
    np.savez(truncated, a=np.arange(1000, dtype=np.float32))
    truncated.write_bytes(truncated.read_bytes()[:300])
    folder = tmp_path / "folder"
    folder.mkdir()
    return {
        "random_npz": random_npz,
        "wrong_hash_pth": wrong_hash,
        "truncated": truncated,
        "directory": folder,
    }


def _cifar_config(weights: str = ""):
    c = smoke(get_config())
    c.data.name, c.model.channels = "cifar10", 3
    c.eval.inception_weights = weights
    return c


@pytest.mark.parametrize("via", ["config", "env"])
def test_bad_fid_weights_disable_fid_with_one_warning(tmp_path, capsys, monkeypatch, via):
    monkeypatch.delenv("JAXGEN_INCEPTION_WEIGHTS", raising=False)
    for kind, path in _bad_weights(tmp_path).items():
        if via == "env":
            monkeypatch.setenv("JAXGEN_INCEPTION_WEIGHTS", str(path))
        c = _cifar_config(str(path) if via == "config" else "")
        if kind != "directory":  # the library's own loader stays strict
            with pytest.raises(InceptionWeightsError):
                protocol.feature_network(c)
        capsys.readouterr()
        net, name, reason = evaluate_module.feature_network(c)
        assert net is None and name == "fid", kind
        assert reason.startswith("unavailable: ") and str(path) in reason and "\n" not in reason
        err = capsys.readouterr().err.splitlines()
        assert err == [f"warning: fid {reason}; the other metrics still run"], kind
    # a missing file takes the same path
    missing = tmp_path / "missing.npz"
    net, _, reason = evaluate_module.feature_network(_cifar_config(str(missing)))
    assert net is None and reason == f"unavailable: no Inception weights at {missing}"
    assert capsys.readouterr().err.count("\n") == 1


@pytest.mark.slow
def test_bad_fid_weights_leave_the_other_metrics(digits_run, tmp_path, monkeypatch, capsys):
    """On the tiny digits run, with the FID network in place of its own extractor: a bad weights
    file (config field or environment variable) disables FID only; the rest is written."""
    c0, wd0 = digits_run
    monkeypatch.setattr(protocol, "FEATURE_EXTRACTORS", {})  # digits -> the Inception path
    monkeypatch.delenv("JAXGEN_INCEPTION_WEIGHTS", raising=False)
    bad = _bad_weights(tmp_path)
    wd = tmp_path / "run"
    shutil.copytree(wd0, wd, ignore=shutil.ignore_patterns("eval"))
    for via, path in (("config", bad["wrong_hash_pth"]), ("env", bad["random_npz"])):
        c = copy.deepcopy(c0)
        c.eval.metrics = ("fd", "sample_grid", "energy_histogram")
        c.eval.inception_weights = str(path) if via == "config" else ""
        if via == "env":
            monkeypatch.setenv("JAXGEN_INCEPTION_WEIGHTS", str(path))
        capsys.readouterr()
        result = evaluate(c, str(wd))
        (reason,) = result["fd"].values()
        assert list(result["fd"]) == ["fid"] and reason.startswith("unavailable: ")
        assert str(path) in reason
        assert capsys.readouterr().err.splitlines() == [
            f"warning: fid {reason}; the other metrics still run"
        ]
        saved = json.loads((wd / "eval" / "metrics.json").read_text())
        assert saved["fd"] == {"fid": reason} and "feature_network" not in saved["protocol"]
        assert 0 <= saved["energy_histogram"]["auroc_train_vs_test"] <= 1
        assert Path(saved["sample_grid"]).exists()


# --------------------------------------------------------------------------- missing data


def test_missing_data_stops_before_the_checkpoint_is_read(tmp_path):
    c = _cifar_config()
    c.data.data_dir = str(tmp_path / "tfds")
    with pytest.raises(DatasetMissingError) as e:
        evaluate(c, str(tmp_path / "run"))
    msg = str(e.value)
    assert msg.startswith("cifar10: ") and str(tmp_path / "tfds") in msg and "\n" not in msg
    assert "nothing is downloaded" in msg
    assert not (tmp_path / "run").exists() and not (tmp_path / "tfds").exists()
    # an image data set among the OOD sets is checked too (here: metrics that need no data)
    c = smoke(get_config())
    c.data.name, c.model.channels = "digits", 1
    c.data.data_dir = str(tmp_path / "tfds")
    c.eval.metrics, c.eval.ood_sets = ("ood",), ("uniform_noise", "cifar10")
    with pytest.raises(DatasetMissingError, match="^cifar10: .*split test"):
        evaluate(c, str(tmp_path / "run"))


def test_evaluate_cli_without_data_prints_one_line(tmp_path):
    """`python -m experiments.evaluate` on CIFAR-10 without its tfds data: exit 2, one line."""
    env = {
        **os.environ,
        "JAX_PLATFORMS": "cpu",
        "TF_CPP_MIN_LOG_LEVEL": "3",
        "XLA_FLAGS": "--xla_force_host_platform_device_count=1",
    }
    cmd = [
        sys.executable,
        "-m",
        "experiments.evaluate",
        "--config=experiments/configs/vapo/cifar10.py",
        f"--workdir={tmp_path / 'run'}",
        f"--config.data.data_dir={tmp_path / 'tfds'}",
    ]
    out = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 2, out.stderr[-2000:]
    (line,) = out.stderr.splitlines()
    assert line.startswith("error: cifar10: no prepared tfds data set 'cifar10'")
    assert f"data_dir={tmp_path / 'tfds'}" in line and "nothing is downloaded at run time" in line


def test_evaluate_a_chosen_checkpoint_step(tmp_path):
    """`evaluate(..., step=N)` (`--step N`) restores checkpoint N, not the newest, writes to
    `eval/step_N/`, and a missing step is one error naming the steps there are."""
    from experiments.configs.vapo.toy2d import get_config as toy2d_config
    from jaxgen.train.checkpoint import CheckpointError

    c = smoke(toy2d_config())
    c.train.keep = 3
    c.eval.metrics = ("mmd",)
    wd = tmp_path / "run"
    train(c, str(wd), progress=False)
    newest = evaluate(c, str(wd))
    older = evaluate(c, str(wd), step=1)
    assert newest["protocol"]["checkpoint_step"] == 2 and older["protocol"]["checkpoint_step"] == 1
    saved = json.loads((wd / "eval" / "step_1" / "metrics.json").read_text())
    assert saved["protocol"]["checkpoint_step"] == 1
    assert (
        json.loads((wd / "eval" / "metrics.json").read_text())["protocol"]["checkpoint_step"] == 2
    )
    with pytest.raises(
        CheckpointError, match=r"no checkpoint at step 7 in .*there are steps 1, 2$"
    ):
        evaluate(c, str(wd), step=7)


@pytest.mark.slow
def test_a_chosen_step_shares_the_reference_statistics(digits_run):
    """`step=N` writes its rounds and metrics to `eval/step_N/` but reads the reference split's
    statistics from `eval/` (computed once per workdir, not once per step)."""
    c, wd = digits_run
    c.eval.metrics = ("fd",)
    evaluate(c, str(wd))
    refs = sorted((wd / "eval").glob("reference_*"))
    stamps = [p.stat().st_mtime_ns for p in refs]
    older = evaluate(c, str(wd), step=1)
    assert older["protocol"]["checkpoint_step"] == 1 and older["fd"]["fd_digits"] > 0
    assert refs and not list((wd / "eval" / "step_1").glob("reference_*"))
    assert [p.stat().st_mtime_ns for p in refs] == stamps

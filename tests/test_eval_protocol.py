"""The evaluation protocol runner: FD-<dataset> in the project's features, rounds that survive
preemption, the protocol recorded, FID reported as unavailable without weights."""

import json

import pytest

from experiments import protocol
from experiments.configs.common import smoke
from experiments.configs.vapo.fashion_mnist import get_config
from experiments.evaluate import evaluate
from experiments.train import train


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

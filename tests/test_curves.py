"""`python -m experiments.curves`: a figure of a run's logged metrics (the recipe's headline
metrics by default), one clear line when a metric was never logged or the run has no log."""

import json

import pytest

from experiments import curves


def _run(tmp_path, name="a"):
    wd = tmp_path / name
    wd.mkdir()
    rows = [{"step": s, "loss_d": 1.0 / s, "loss_g": float(s)} for s in range(1, 11)]
    (wd / "metrics.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    (wd / "config.json").write_text(json.dumps({"recipe": "ddgan"}))
    return wd


def test_curves_of_the_headline_metrics_and_of_two_runs(tmp_path):
    wd = _run(tmp_path)
    curves.main(["--workdir", str(wd), "--smooth", "3"])
    assert (wd / "curves.png").stat().st_size > 0
    out = tmp_path / "both.png"
    curves.main(
        ["--workdir", f"x={wd}", "--workdir", f"y={_run(tmp_path, 'b')}", "--out", str(out)]
    )
    assert out.stat().st_size > 0


def _error(monkeypatch, capsys, argv) -> str:
    """The one `error: ...` line (exit status 2) that `curves.main(argv)` prints."""
    monkeypatch.setattr("jaxgen.runtime.reuse_host_memory", lambda: None)
    with pytest.raises(SystemExit) as e:
        curves.main(argv)
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert len(err.splitlines()) == 1 and err.startswith("error: "), err
    return err


def test_curves_bad_input_is_one_line(tmp_path, monkeypatch, capsys):
    wd = _run(tmp_path)
    err = _error(monkeypatch, capsys, ["--workdir", str(wd), "--keys", "nope"])
    assert "no run logged ['nope']; the logged metrics are" in err
    err = _error(monkeypatch, capsys, ["--workdir", str(tmp_path / "none"), "--keys", "loss_d"])
    assert "metrics.jsonl does not exist" in err


def test_symlog_reaches_the_figure_and_names_a_plotted_metric(tmp_path, monkeypatch, capsys):
    wd, seen = _run(tmp_path), {}
    monkeypatch.setattr(curves, "save_curves", lambda out, rows, keys, **kw: seen.update(kw))
    curves.main(["--workdir", str(wd), "--keys", "loss_d", "loss_g", "--symlog", "loss_g"])
    assert seen["symlog"] == ("loss_g",)
    argv = ["--workdir", str(wd), "--keys", "loss_d", "--symlog", "loss_x"]
    assert "--symlog ['loss_x'] are not among the plotted" in _error(monkeypatch, capsys, argv)

"""The side files a run writes and reads back (`data_fit.npz`, evaluation rounds, reference
statistics, `config.json`, `base_config.json`, `metrics.jsonl`): written atomically (a full disk
names the file and leaves no temporary file), and when damaged anyway (cut short, empty, random
bytes) one line naming the file and its fix, with nothing deleted. A cut-short last row of
`metrics.jsonl` is moved aside before the trainer appends; readers skip it with one warning.
`experiments.curves` reports its errors like the other CLIs (`error: ...`, exit 2)."""

import errno
import json
from pathlib import Path

import ml_collections
import numpy as np
import pytest

from experiments import cli, curves, protocol
from experiments.run_files import (
    BASE_CONFIG,
    DATA_FIT,
    check_workdir,
    load_saved_config,
    save_json,
)
from jaxgen.io import SideFileError, atomic_savez, atomic_write, atomic_write_text
from jaxgen.methods.common import ConfigError
from jaxgen.train.fixed_fields import load_fields, save_fields
from jaxgen.train.logging import MetricsWriter, read_metrics

RECOMPUTE = "delete it (or move it aside): the same command recomputes it"


def _one_error_line(monkeypatch, capsys, fn) -> str:
    """What a CLI prints when `fn` raises: one `error: ...` line on stderr, exit status 2."""
    monkeypatch.setattr("jaxgen.runtime.reuse_host_memory", lambda: None)
    with pytest.raises(SystemExit) as e:
        cli.run_main(fn)
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert len(err.splitlines()) == 1 and err.startswith("error: "), err
    return err.strip().removeprefix("error: ")


def _damage(path: Path, how: str) -> bytes:
    """Damage `path` in place (`cut`: its first half, `empty`, `garbage`: 300 random bytes);
    returns the damaged bytes, which must still be there afterwards."""
    data = path.read_bytes()
    damaged = {
        "cut": data[: len(data) // 2],
        "empty": b"",
        "garbage": np.random.default_rng(0).bytes(300),
    }[how]
    path.write_bytes(damaged)
    return damaged


WHY = {
    "cut": "cut short or corrupt: File is not a zip file",
    "empty": "empty",
    "garbage": "not an .npz archive",
}

# ------------------------------------------------------------------ atomic writes


def test_a_full_disk_names_the_file_and_leaves_the_old_one_and_no_temporary(
    tmp_path, monkeypatch, capsys
):
    """numpy's short write (E11: `191616 requested and 76768 written`, no errno) and a plain
    ENOSPC both become `OSError(ENOSPC, ..., path)`; the old file is intact, no `.tmp` left."""
    path = tmp_path / "eval" / "ref.features.npy"
    atomic_write_text(path, "old")

    def short_write(f):
        f.write(b"x" * 1000)
        raise OSError("191616 requested and 76768 written")

    def enospc(f):
        f.write(b"x" * 1000)
        raise OSError(errno.ENOSPC, "No space left on device")

    for write in (short_write, enospc):
        with pytest.raises(OSError) as e:
            atomic_write(path, write)
        assert (e.value.errno, e.value.filename) == (errno.ENOSPC, str(path))
        assert path.read_text() == "old"
        assert sorted(p.name for p in path.parent.iterdir()) == ["ref.features.npy"]
    line = _one_error_line(monkeypatch, capsys, lambda: atomic_write(path, short_write))
    assert line == f"{path}: No space left on device (free some space; the same command resumes)"


def test_reference_features_on_a_full_disk_are_one_line(tmp_path, monkeypatch, capsys):
    """E11 at its site: the reference features cannot be saved (numpy's short write)."""
    c, net = _image_config(), _FakeNet()
    monkeypatch.setattr(protocol, "split_images", lambda c, split: _images(64, seed=1))

    def short_save(f, arr):
        f.write(b"\x93NUMPY" + b"x" * 100)
        raise OSError("191616 requested and 76768 written")

    monkeypatch.setattr(np, "save", short_save)
    line = _one_error_line(monkeypatch, capsys, lambda: protocol.reference(c, net, tmp_path))
    feats = tmp_path / "reference_digits_test_fake.features.npy"
    assert line == f"{feats}: No space left on device (free some space; the same command resumes)"
    assert list(tmp_path.iterdir()) == []  # nothing half-written, nothing to clean up


def test_save_json_is_atomic_and_reads_back(tmp_path):
    path = save_json(tmp_path / "run" / BASE_CONFIG, {"recipe": "gan2d", "x": Path("a")})
    assert json.loads(path.read_text()) == {"recipe": "gan2d", "x": "a"}
    assert [p.name for p in path.parent.iterdir()] == [BASE_CONFIG]


# ------------------------------------------------------------------ data_fit.npz (D01-D03)


@pytest.mark.parametrize("how", ["cut", "empty", "garbage"])
def test_a_damaged_data_fit_is_one_line_naming_it_and_the_fix(tmp_path, how, monkeypatch, capsys):
    path = tmp_path / DATA_FIT
    save_fields(path, {"prior_mean": np.zeros(2), "prior_chol": np.eye(2)})
    assert [p.name for p in tmp_path.iterdir()] == [DATA_FIT]
    damaged = _damage(path, how)
    with pytest.raises(SideFileError):
        load_fields(path)
    line = _one_error_line(monkeypatch, capsys, lambda: load_fields(path))
    assert line == (
        f"{path}: the run's data fit is unreadable ({WHY[how]}); delete it: the trainer refits "
        "it bit-identically on the training data"
    )
    assert path.read_bytes() == damaged  # nothing deleted


# ------------------------------------------------------------------ evaluation rounds (E15)


def _image_config(**eval_fields):
    c = ml_collections.ConfigDict()
    c.data = dict(name="digits", pad_to_32=False, classes=(), train_limit=0)
    c.eval = dict(
        num_samples=8,
        round_size=4,
        batch_size=4,
        kid_reference_max=64,
        ema=True,
        reference_split="test",
    )
    c.eval.update(eval_fields)
    return c


def _images(n, seed=0):
    return np.random.default_rng(seed).uniform(-1, 1, (n, 4, 4, 1)).astype(np.float32)


class _FakeExp:
    """The part of an `Experiment` that `protocol.sample_rounds` uses."""

    def __init__(self, c):
        self.c, self.draws = c, 0

    def draw(self, state, num, *, seed, use_ema):
        self.draws += 1
        return _images(num, seed), {"nfe_mean": 1.0, "nfe_max": 1.0}


class _FakeNet:
    name, hash = "fake", "ab" * 32

    def features(self, images):
        return np.asarray(images).reshape(len(images), -1)[:, :3].astype(np.float64)


def test_a_damaged_round_is_one_line_and_is_kept(tmp_path, monkeypatch, capsys):
    c = _image_config()
    exp, proto = _FakeExp(c), {"seed": 1, "num_samples": 8}
    protocol.sample_rounds(exp, None, None, tmp_path, seed=1, protocol=proto)
    (rdir,) = tmp_path.glob("rounds_*")
    assert sorted(p.name for p in rdir.iterdir()) == [
        "protocol.json",
        "round_0000.npz",
        "round_0001.npz",
    ]
    for how in ("cut", "empty", "garbage"):
        path = rdir / "round_0001.npz"
        atomic_savez(path, {"samples": np.zeros((4, 4, 4, 1), np.uint8)})
        damaged = _damage(path, how)
        again = _FakeExp(c)
        line = _one_error_line(
            monkeypatch,
            capsys,
            lambda e=again: protocol.sample_rounds(e, None, None, tmp_path, seed=1, protocol=proto),
        )
        assert line == f"{path}: an evaluation round is unreadable ({WHY[how]}); {RECOMPUTE}"
        assert path.read_bytes() == damaged and again.draws == 0


@pytest.mark.parametrize(
    "field, value", [("round_size", 0), ("batch_size", 0), ("round_size", -3), ("batch_size", -1)]
)
def test_eval_sizes_below_one_are_refused_naming_the_field(tmp_path, field, value):
    """E13 (round_size=0: ZeroDivisionError) and E14 (batch_size=0: `range() arg 3`)."""
    c = _image_config(**{field: value})
    exp = _FakeExp(c)
    with pytest.raises(ConfigError) as e:
        protocol.sample_rounds(exp, None, None, tmp_path, seed=1, protocol={})
    assert str(e.value) == f"config.eval.{field}={value}: must be > 0"
    assert exp.draws == 0 and list(tmp_path.iterdir()) == []


# ------------------------------------------------------------------ reference statistics


@pytest.mark.parametrize("which", ["stats", "features"])
def test_damaged_reference_statistics_are_one_line(tmp_path, which, monkeypatch, capsys):
    c, net = _image_config(), _FakeNet()
    monkeypatch.setattr(protocol, "split_images", lambda c, split: _images(64, seed=1))
    ref, feats = protocol.reference(c, net, tmp_path)
    assert feats.shape == (64, 3) and ref.num_samples == 64
    stats = tmp_path / "reference_digits_test_fake.npz"
    path = stats if which == "stats" else stats.with_suffix(".features.npy")
    what = {"stats": "the reference-statistics file", "features": "the reference-features file"}
    kind = {"stats": "an .npz archive", "features": "an .npy file"}
    for how in ("empty", "garbage"):
        damaged = _damage(path, how)
        line = _one_error_line(monkeypatch, capsys, lambda: protocol.reference(c, net, tmp_path))
        why = "empty" if how == "empty" else f"not {kind[which]}"
        assert line == f"{path}: {what[which]} is unreadable ({why}); {RECOMPUTE}"
        assert path.read_bytes() == damaged
    path.unlink()  # the fix: the same call recomputes both files
    again, _ = protocol.reference(c, net, tmp_path)
    np.testing.assert_array_equal(again.sigma, ref.sigma)


# ------------------------------------------------------------------ config.json (U04, BS3)


def test_a_cut_short_config_is_one_line_naming_it(tmp_path, monkeypatch, capsys):
    run = tmp_path / "run"
    save_json(run / "config.json", {"recipe": "ddgan", "seed": 0})
    (run / "metrics.jsonl").write_text('{"step": 1, "loss_d": 1.0}\n')
    damaged = _damage(run / "config.json", "cut")
    line = _one_error_line(monkeypatch, capsys, lambda: load_saved_config(run / "config.json"))
    assert line.startswith(f"{run / 'config.json'}: the run's saved config is unreadable (cut ")
    assert line.endswith("; restore it from a copy or move the run aside")
    assert line == _curves_error(monkeypatch, capsys, "--workdir", str(run))  # U04
    assert (run / "config.json").read_bytes() == damaged

    base = run / BASE_CONFIG
    base.write_bytes(b"")
    line = _one_error_line(monkeypatch, capsys, lambda: load_saved_config(base))
    assert line == (
        f"{base}: the base run's config kept in this run is unreadable (empty); restore it from "
        "a copy, or delete it to read method.base_workdir's config.json again"
    )


# ------------------------------------------------------------------ metrics.jsonl (W04, U03)


def _rows_file(wd: Path, n: int) -> bytes:
    wd.mkdir(parents=True, exist_ok=True)
    rows = [{"step": s, "loss_d": 1.0 / s, "loss_g": float(s)} for s in range(1, n + 1)]
    text = "".join(json.dumps(r) + "\n" for r in rows).encode()
    (wd / "metrics.jsonl").write_bytes(text)
    save_json(wd / "config.json", {"recipe": "ddgan"})
    return text


def test_a_resumed_writer_moves_a_cut_short_row_aside(tmp_path):
    """W04: the step-3 fragment goes to metrics.jsonl.partial (after a note), the next row
    starts on its own line; every byte is still somewhere."""
    wd = tmp_path / "run"
    text = _rows_file(wd, 3)
    cut = text[:-15]
    (wd / "metrics.jsonl").write_bytes(cut)
    said = []
    writer = MetricsWriter(wd, tensorboard=False, say=said.append)
    writer.write(3, {"loss_d": 0.5, "loss_g": 3.0})
    writer.close()
    log, aside = wd / "metrics.jsonl", wd / "metrics.jsonl.partial"
    fragment = cut[cut.rindex(b"\n") + 1 :]
    assert said == [
        f"{log}: its last line was cut short (a killed or disk-full write); moved its "
        f"{len(fragment)} bytes to {aside} and appending after the last whole row"
    ]
    assert [r["step"] for r in read_metrics(wd, say=said.append)] == [1, 2, 3]
    assert log.read_bytes().startswith(cut[: len(cut) - len(fragment)])
    note, kept = aside.read_bytes().splitlines()
    assert note.startswith(b"# ") and b"cut-short last line of metrics.jsonl" in note
    assert kept == fragment and len(said) == 1

    MetricsWriter(wd, tensorboard=False, say=said.append).close()  # a whole file: untouched
    assert len(said) == 1


def test_a_log_that_is_one_cut_short_row_is_moved_aside_whole(tmp_path):
    wd = tmp_path / "run"
    wd.mkdir()
    (wd / "metrics.jsonl").write_bytes(b'{"step": 1, "lo')
    said = []
    MetricsWriter(wd, tensorboard=False, say=said.append).close()
    assert (wd / "metrics.jsonl").read_bytes() == b"" and len(said) == 1
    assert (wd / "metrics.jsonl.partial").read_bytes().endswith(b'\n{"step": 1, "lo\n')


def test_readers_skip_an_unreadable_line_with_one_warning(tmp_path, monkeypatch, capsys):
    """U03: curves on a log whose last line is cut short, and on one with two rows fused by an
    older trainer: the figure is drawn, one warning line per bad line (file and line number)."""
    wd = tmp_path / "run"
    text = _rows_file(wd, 4)
    lines = text.splitlines(keepends=True)
    fused = lines[0] + lines[1][:10] + lines[2] + lines[3][:-15]
    (wd / "metrics.jsonl").write_bytes(fused)
    monkeypatch.setattr("jaxgen.runtime.reuse_host_memory", lambda: None)
    curves.main(["--workdir", str(wd)])
    assert (wd / "curves.png").stat().st_size > 0
    out, err = capsys.readouterr()
    log = wd / "metrics.jsonl"
    assert err.splitlines() == [
        f"warning: {log}, line 2: not a JSON row (cut short?); skipped",
        f"warning: {log}, line 3: not a JSON row (cut short?); skipped",
    ]
    assert out == f"curves: {wd / 'curves.png'}\n"
    assert log.read_bytes() == fused  # a reader changes nothing


# ------------------------------------------------------------------ curves and --workdir


def _curves_error(monkeypatch, capsys, *argv) -> str:
    monkeypatch.setattr("jaxgen.runtime.reuse_host_memory", lambda: None)
    with pytest.raises(SystemExit) as e:
        curves.main(list(argv))
    assert e.value.code == 2
    out, err = capsys.readouterr()
    assert len(err.splitlines()) == 1 and err.startswith("error: "), err
    return err.strip().removeprefix("error: ")


def test_curves_errors_are_one_line_with_exit_status_2(tmp_path, monkeypatch, capsys):
    """U01: like the other CLIs; W02/W03: a regular file as --workdir."""
    none = tmp_path / "none"
    line = _curves_error(monkeypatch, capsys, "--workdir", str(none), "--keys", "loss_d")
    assert line == f"{none / 'metrics.jsonl'} does not exist (train the run first)"
    afile = tmp_path / "afile"
    afile.write_text("x")
    line = _curves_error(monkeypatch, capsys, "--workdir", str(afile))
    assert line == f"--workdir {afile} is a file, not a directory"
    line = _curves_error(monkeypatch, capsys, "--workdir", f"x={afile / 'run'}")
    assert line == f"--workdir {afile / 'run'}: {afile} is a file, not a directory"


def test_curves_workdir_paths_may_hold_an_equals_sign(tmp_path, monkeypatch, capsys):
    """U05: an existing directory is never split; NAME=DIR splits at the first `=`."""
    wd = tmp_path / "u05=x"
    _rows_file(wd, 3)
    monkeypatch.setattr("jaxgen.runtime.reuse_host_memory", lambda: None)
    curves.main(["--workdir", str(wd)])
    assert (wd / "curves.png").exists()
    assert curves.run_spec(str(wd)) == ("u05=x", wd)
    assert curves.run_spec(f"a={wd}") == ("a", wd)
    assert curves.run_spec("runs/a") == ("a", Path("runs/a"))
    assert curves.run_spec("runs/a=b") == ("a=b", Path("runs/a=b"))  # a name has no '/'


def test_check_workdir(tmp_path):
    check_workdir(tmp_path)
    check_workdir(tmp_path / "new" / "run")  # not there yet: train makes it
    afile = tmp_path / "afile"
    afile.write_text("x")
    with pytest.raises(ConfigError, match=rf"^--workdir {afile} is a file, not a directory$"):
        check_workdir(afile)
    assert afile.read_text() == "x"

"""Operating real runs: the workdir lock, resume checks, unreadable checkpoints, bounded
non-finite recovery, failed saves and progress lines (docs/operating.md)."""

import dataclasses
import errno
import json
import os
import re
import signal
import subprocess
import sys
import time
from functools import partial

import jax
import numpy as np
import pytest

from experiments import cli
from experiments.configs.vapo.toy2d import get_config
from experiments.train import train
from jaxgen.data import make_stream
from jaxgen.data.pipeline import BatchStream
from jaxgen.methods import vapo
from jaxgen.methods.common import ConfigError, replace_fields
from jaxgen.parallel import make_mesh
from jaxgen.train import checkpoint as checkpoint_lib
from jaxgen.train.checkpoint import CheckpointError, Checkpoints
from jaxgen.train.lock import WorkdirLock, WorkdirLockedError
from jaxgen.train.loop import NonFiniteError, TrainPlan, fit

CFG = replace_fields(vapo.Config(), {"model.hidden": (16, 16), "optim.potential.lr": 3e-3})


def _config(num_steps=4, **train):
    c = get_config()
    c.model.hidden = (16, 16)
    c.data.batch_size = 64
    c.train.update(dict(num_steps=num_steps, log_every=1, ckpt_every=1, sample_every=0))
    c.train.update({"steps_per_call": 1, "progress": "off", **train})
    return c


# ------------------------------------------------------------------ workdir lock


def test_lock_names_a_live_holder_and_takes_over_a_dead_ones(tmp_path):
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time; from jaxgen.train.lock import WorkdirLock; "
            f"WorkdirLock({str(tmp_path)!r}).acquire(); print('held', flush=True); time.sleep(600)",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(WorkdirLockedError) as e:
            WorkdirLock(tmp_path).acquire()
        assert f"in use by pid {holder.pid} on " in str(e.value) and "\n" not in str(e.value)
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    said = []
    with WorkdirLock(tmp_path, say=said.append):  # the kernel dropped the dead holder's flock
        assert json.loads((tmp_path / ".lock").read_text())["pid"] == os.getpid()
    assert said == [said[0]] and f"pid {holder.pid}" in said[0] and "not running" in said[0]
    assert (tmp_path / ".lock").read_text() == ""  # released cleanly: nothing to take over
    with WorkdirLock(tmp_path, say=said.append):
        pass
    assert len(said) == 1


def test_second_trainer_on_a_live_workdir_stops_at_once(tmp_path):
    lock = WorkdirLock(tmp_path)
    lock.acquire()
    try:
        t0 = time.perf_counter()
        with pytest.raises(WorkdirLockedError, match=f"pid {os.getpid()}"):
            train(_config(), str(tmp_path))
        assert time.perf_counter() - t0 < 5
        assert not (tmp_path / "config.json").exists()
    finally:
        lock.release()


# ------------------------------------------------------------------ resume checks


def test_resume_refuses_a_changed_run_before_writing_anything(tmp_path, capsys):
    wd = str(tmp_path)
    train(_config(2), wd)
    record = (tmp_path / "config.json").read_bytes()
    for field, value in (("data.batch_size", 32), ("model.hidden", (8,)), ("seed", 1)):
        c = _config(4)
        section, _, leaf = field.rpartition(".")
        (c[section] if section else c)[leaf] = value
        with pytest.raises(ConfigError) as e:
            train(c, wd)
        msg = str(e.value)
        assert msg.startswith("resume refused") and field in msg and "\n" not in msg
        assert (tmp_path / "config.json").read_bytes() == record
        assert Checkpoints(tmp_path / "checkpoints").latest_step() == 2
    # deliberate changes pass: more steps, other intervals; a named field with allow_changes
    c = _config(3, log_every=3, allow_changes="data.batch_size")
    c.data.batch_size = 32
    assert int(train(c, wd).step) == 3
    assert json.loads((tmp_path / "config.json").read_text())["data"]["batch_size"] == 32
    with pytest.raises(ConfigError, match="data.batch_size was 32, now 64"):
        train(_config(4), wd)  # the newest checkpoint records the allowed change


def test_a_finished_run_says_so(tmp_path, capsys):
    wd = str(tmp_path)
    train(_config(3), wd)
    capsys.readouterr()
    for n in (3, 2):
        state = train(_config(n), wd)
        out = capsys.readouterr().out
        assert int(state.step) == 3 and "is finished" in out and "step 3" in out
    assert Checkpoints(tmp_path / "checkpoints").latest_step() == 3


# ------------------------------------------------------------------ unreadable checkpoints


def _corrupt_newest(ckpt) -> int:
    step = Checkpoints(ckpt).latest_step()
    for f in (ckpt / str(step)).rglob("*"):
        if f.is_file() and f.stat().st_size > 100:
            f.write_bytes(f.read_bytes()[:50])
    return step


def test_unreadable_newest_checkpoint_is_moved_aside_and_the_previous_used(tmp_path, capsys):
    wd = str(tmp_path)
    ckpt = tmp_path / "checkpoints"
    train(_config(3), wd)
    bad = _corrupt_newest(ckpt)
    exp = cli.experiment(_config(3))
    state, _ = exp.restore_latest(wd)  # what sample / evaluate use
    warned = [ln for ln in capsys.readouterr().out.splitlines() if ln.startswith("warning")]
    assert int(state.step) == bad - 1 and len(warned) == 1
    assert str(ckpt / str(bad)) in warned[0] and "checkpoints_unreadable" in warned[0]
    assert (tmp_path / "checkpoints_unreadable" / str(bad)).is_dir()  # moved, not deleted
    assert int(train(_config(4), wd).step) == 4  # resumes from step 2 to 4
    bad = _corrupt_newest(ckpt)
    state = train(_config(5), wd)
    assert int(state.step) == 5
    assert (tmp_path / "checkpoints_unreadable" / str(bad)).is_dir()


def test_a_failed_save_names_the_cause_in_one_line(tmp_path, monkeypatch):
    store = Checkpoints(tmp_path / "ckpt")
    state = vapo.init(CFG, {"x": np.zeros((8, 2), np.float32)}, key=jax.random.PRNGKey(0))

    def full(*a, **k):
        try:
            raise OSError(errno.ENOSPC, "No space left on device", str(tmp_path / "ckpt/1.tmp"))
        except OSError as e:
            raise RuntimeError("orbax: async save failed") from e

    monkeypatch.setattr(store._mngr, "save", full)
    with pytest.raises(CheckpointError) as e:
        store.save(1, state, {"cursor": 1})
    msg = str(e.value)
    assert "the disk is full" in msg and "no earlier checkpoint" in msg and "\n" not in msg
    assert checkpoint_lib._root_os_error(RuntimeError("x")) is None


# ------------------------------------------------------------------ bounded non-finite recovery


class _PoisonedFrom:
    """Batches from `start` on are NaN (a run whose learning rate has blown up)."""

    def __init__(self, stream, start):
        self.stream, self.start, self.batch_size = stream, start, stream.batch_size

    def batch(self, i):
        b = self.stream.batch(i)
        return {"x": b["x"] * np.nan} if i >= self.start else b

    def with_seed_offset(self, offset):  # a rollback reseeds the order: still NaN from `start`
        return _PoisonedFrom(self.stream.with_seed_offset(offset), self.start)


@pytest.mark.parametrize("policy", ["skip", "rollback"])
def test_skip_and_rollback_give_up_after_max_nonfinite(tmp_path, policy, capsys):
    stream = make_stream("8gaussians", 64, seed=3)
    state = vapo.init(CFG, stream.batch(0), key=jax.random.PRNGKey(0))
    store = Checkpoints(tmp_path / "ckpt")
    t0 = time.perf_counter()
    with pytest.raises(NonFiniteError) as e:
        fit(
            partial(vapo.train_step, config=CFG),
            state,
            _PoisonedFrom(stream, 3),
            make_mesh(8),
            TrainPlan(100, log_every=1, ckpt_every=2, nonfinite=policy, max_nonfinite=4),
            checkpoints=store,
            progress="off",
        )
    assert time.perf_counter() - t0 < 60
    msg = str(e.value)
    assert f"4 non-finite steps without progress past them (train.nonfinite={policy}" in msg
    # the last finite state is saved: step 3 under skip, the rolled-back step 2 under rollback
    last = 3 if policy == "skip" else 2
    assert f"saved as checkpoint {tmp_path / 'ckpt' / str(last)};" in msg, msg
    saved, meta = Checkpoints(tmp_path / "ckpt").restore(state)
    assert int(saved.step) == last and meta["cursor"] >= last
    assert all(np.isfinite(np.asarray(x)).all() for x in jax.tree.leaves(saved))
    warnings = [ln for ln in capsys.readouterr().out.splitlines() if ln.startswith("warning")]
    assert len(warnings) == 3  # three recovered, the fourth gives up


@dataclasses.dataclass
class _PoisonedAt(BatchStream):
    """Batch `bad` is NaN in the original order (seed 3); reseeded orders are clean."""

    bad: int = -1

    def batch(self, i):
        b = super().batch(i)
        return {"x": b["x"] * np.nan} if (i == self.bad and self.seed == 3) else b


def test_rollback_reseed_draws_new_batches_and_resumes_exactly(tmp_path):
    """After a rollback with `rollback_reseed` (the default), the batches come in a new order and
    the step keys from a folded key; the number of reseeds and the key are saved, so a run
    stopped after it and resumed ends where an unstopped one does."""
    stream = _PoisonedAt("8gaussians", 64, 3, bad=3)
    step, mesh = partial(vapo.train_step, config=CFG), make_mesh(8)

    def plan(n):
        return TrainPlan(n, log_every=1, ckpt_every=2, nonfinite="rollback", rollback_reseed=True)

    def init():  # a fresh state per run (fit donates the state's buffers)
        return vapo.init(CFG, stream.batch(0), key=jax.random.PRNGKey(0))

    full, _ = fit(step, init(), stream, mesh, plan(8), checkpoints=Checkpoints(tmp_path / "a"))
    assert Checkpoints(tmp_path / "a").read_meta()["reseeds"] == 1 and int(full.step) == 8
    fit(step, init(), stream, mesh, plan(6), checkpoints=Checkpoints(tmp_path / "b"))
    store = Checkpoints(tmp_path / "b")
    state, meta = store.restore(init())
    assert meta["reseeds"] == 1
    resumed, _ = fit(
        step, state, stream, mesh, plan(8), checkpoints=store, cursor=meta["cursor"],
        reseeds=meta["reseeds"],
    )  # fmt: skip
    for x, y in zip(jax.tree.leaves(full), jax.tree.leaves(resumed), strict=True):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))
    # the step keys after the rollback come from the key folded with the reseed count, saved
    # in the checkpoints (the resume above matched bit for bit)
    first_key = init().key
    np.testing.assert_array_equal(
        np.asarray(full.key), np.asarray(jax.random.fold_in(first_key, 1))
    )
    # without the reseed the same run replays the old stream after the rollback
    other, _ = fit(
        step, init(), stream, mesh,
        TrainPlan(8, log_every=1, ckpt_every=2, nonfinite="rollback", rollback_reseed=False),
        checkpoints=Checkpoints(tmp_path / "c"),
    )  # fmt: skip
    np.testing.assert_array_equal(np.asarray(other.key), np.asarray(first_key))
    assert not np.array_equal(
        np.asarray(jax.tree.leaves(other.potential)[0]),
        np.asarray(jax.tree.leaves(full.potential)[0]),
    )


# ------------------------------------------------------------------ progress in logs


def test_progress_lines_when_stdout_is_a_file(tmp_path, capsys):
    c = _config(4, log_every=2, progress="lines")
    train(c, str(tmp_path))
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("train: vapo on 8gaussians (batch 64), 8 devices; starting, step 0")
    lines = [ln for ln in out if ln.startswith("step ")]
    assert [ln.split()[1] for ln in lines] == ["2/4", "4/4"]
    assert all(re.search(r"loss -?[\d.e+-]+ .* ex/s  eta \d+:\d\d:\d\d$", ln) for ln in lines)
    assert out[-1].startswith("done: step 4 in ") and "checkpoints/4" in out[-1]


def test_nothing_is_moved_when_no_checkpoint_can_be_read(tmp_path):
    ckpt = tmp_path / "checkpoints"
    train(_config(2), str(tmp_path))
    for step in (1, 2):  # corrupt both
        for f in (ckpt / str(step)).rglob("*"):
            if f.is_file() and f.stat().st_size > 100:
                f.write_bytes(f.read_bytes()[:50])
    with pytest.raises(checkpoint_lib.UnreadableCheckpointError, match="checkpoints/2 is"):
        cli.experiment(_config(2)).restore_latest(str(tmp_path))
    assert sorted(p.name for p in ckpt.iterdir() if p.name.isdigit()) == ["1", "2"]
    assert not (tmp_path / "checkpoints_unreadable").exists()


def test_a_reader_under_a_live_trainer_moves_nothing(tmp_path, capsys):
    train(_config(3), str(tmp_path))
    bad = _corrupt_newest(tmp_path / "checkpoints")
    capsys.readouterr()
    with WorkdirLock(tmp_path):  # a trainer holds the workdir
        state, _ = cli.experiment(_config(3)).restore_latest(str(tmp_path))
    (warned,) = [ln for ln in capsys.readouterr().out.splitlines() if ln.startswith("warning")]
    assert int(state.step) == bad - 1 and "left in place" in warned
    assert (tmp_path / "checkpoints" / str(bad)).is_dir()


def test_resume_identity_tolerates_fields_added_or_removed_since():
    from experiments.resume import check_resume, run_identity

    c = _config(4)
    recorded = run_identity(c)
    recorded.pop("model.hidden")  # a field an older jaxgen did not have ...
    recorded["method.retired_knob"] = 1  # ... and one this version dropped
    with pytest.raises(ConfigError, match="model.hidden was"):
        check_resume(c, recorded, "w")  # hidden=(16, 16) is not the default
    c.model.hidden = tuple(vapo.Config().model.hidden)
    check_resume(c, recorded, "w")  # the default: the older run had it too


def test_lengthening_a_cosine_schedule_is_a_change_of_run(tmp_path):
    c = _config(2)
    c.optim.potential.decay = "cosine"
    train(c, str(tmp_path))
    c.train.num_steps = 4
    with pytest.raises(ConfigError, match="optim.potential.total_steps was 2, now 4"):
        train(c, str(tmp_path))
    c.optim.potential.total_steps = 2  # the same schedule, explicitly: trains on
    assert int(train(c, str(tmp_path)).step) == 4

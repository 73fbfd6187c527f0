"""Multi-host training as real processes: 2 processes x 4 CPU devices form one JAX cluster on
127.0.0.1 (gloo collectives), are preempted (SIGTERM to one process: JAX's sync point stops
both at the same step), killed (SIGKILL to both), resumed, and end where 1 process x 8
devices ends."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import jax
import numpy as np
import pytest

from experiments import cli
from experiments.configs.common import set_field
from experiments.configs.vapo.toy2d import get_config
from experiments.train import train
from jaxgen.train.checkpoint import Checkpoints
from tools.operator_faults import free_port

REPO = Path(__file__).resolve().parents[1]
CONFIG = REPO / "experiments/configs/vapo/toy2d.py"
CKPT_EVERY, SAMPLE_EVERY = 10, 20
# Interrupted launches run with a step count they cannot reach, so a fast machine cannot finish
# before the signal lands (CI once did: 3 calls of 10 toy steps outran SIGTERM's propagation);
# the run then ends at a step count set from where it was killed (a constant learning rate:
# resume allows a changed train.num_steps).
UNREACHABLE = 1_000_000
ARGS = [
    f"--config.train.ckpt_every={CKPT_EVERY}",
    "--config.train.log_every=5",  # rows every 10 steps: the config runs 10 steps per call
    f"--config.train.sample_every={SAMPLE_EVERY}",  # the sample figure is a collective draw
    "--config.train.progress=lines",
]
ENV = {
    **os.environ,
    "XLA_FLAGS": "--xla_force_host_platform_device_count=4",
    "JAX_PLATFORMS": "cpu",
    "TF_CPP_MIN_LOG_LEVEL": "3",
}


# Gloo's C++ connection report ("[Gloo] Rank 1 is connected to 7 peer ranks. Expected number
# of connected peer ranks is : 7") goes to stdout from several threads; its pieces interleave
# (CI once split one across two lines), so its words are removed word by word with the numbers.
GLOO_WORDS = set("[Gloo] Rank is connected to peer ranks ranks. Expected number of :".split())


def _without_gloo_chatter(text: str) -> list[str]:
    """The words of `text` that are not Gloo's connection report."""
    return [w for w in text.split() if w not in GLOO_WORDS and not w.isdigit()]


STARTED: list = []


@pytest.fixture(autouse=True)
def _no_orphans():
    yield
    for p in STARTED:
        if p.poll() is None:
            p.kill()
    STARTED.clear()


def _start(workdir, num_steps, n=2):
    """The train CLI for `num_steps` as `n` processes of one cluster; returns the `Popen`s
    (process 0 first)."""
    port = free_port()
    common = [
        sys.executable,
        "-m",
        "experiments.train",
        f"--config={CONFIG}",
        f"--workdir={workdir}",
        *ARGS,
        f"--config.train.num_steps={num_steps}",
        "--config.train.multihost=True",
        f"--config.train.coordinator=127.0.0.1:{port}",
        f"--config.train.num_processes={n}",
    ]
    procs = [
        subprocess.Popen(
            [*common, f"--config.train.process_id={i}"],
            cwd=REPO,
            env=ENV,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for i in range(n)
    ]
    STARTED.extend(procs)
    return procs


def _wait_for_checkpoint(procs, ckpt: Path, after: int, timeout=300):
    deadline = time.time() + timeout
    while not any(int(p.name) > after for p in ckpt.glob("*") if p.name.isdigit()):
        assert all(p.poll() is None for p in procs), "a process ended early"
        assert time.time() < deadline, "no checkpoint appeared"
        time.sleep(0.05)


def _finish(procs, timeout=300):
    outs = [p.communicate(timeout=timeout) for p in procs]
    return [p.returncode for p in procs], outs


def _restore(workdir):
    exp = cli.experiment(get_config())
    return exp.restore_latest(str(workdir))


@pytest.mark.slow
def test_two_processes_preempted_killed_resumed_match_one_process(tmp_path):
    wd, ckpt = tmp_path / "multi", tmp_path / "multi" / "checkpoints"
    t0 = time.perf_counter()

    # 1. preemption: SIGTERM to process 1 only; both stop at one step, checkpoint it, exit 143
    procs = _start(wd, UNREACHABLE)
    _wait_for_checkpoint(procs, ckpt, 0)
    procs[1].send_signal(signal.SIGTERM)
    codes, outs = _finish(procs)
    assert codes == [143, 143], [o[1][-1500:] for o in outs]
    stopped = Checkpoints(ckpt).latest_step()
    assert CKPT_EVERY <= stopped < UNREACHABLE
    said = [ln for ln in outs[0][1].splitlines() if ln.startswith("SIGTERM")]
    assert len(said) == 1 and f"stopped at step {stopped}" in said[0]
    assert not [ln for ln in outs[1][1].splitlines() if ln.startswith("SIGTERM")]  # process 0 says

    # 2. resume, then SIGKILL both once a later checkpoint exists
    procs = _start(wd, UNREACHABLE)
    _wait_for_checkpoint(procs, ckpt, stopped)
    for p in procs:
        p.kill()
    _finish(procs)
    killed_at = Checkpoints(ckpt).latest_step()
    steps_total = (killed_at // SAMPLE_EVERY + 2) * SAMPLE_EVERY  # ends on a sample step

    # 3. resume to the end
    codes, outs = _finish(_start(wd, steps_total))
    assert codes == [0, 0], [o[1][-1500:] for o in outs]
    assert f"resuming from {ckpt / str(killed_at)}" in outs[0][0]
    printed = _without_gloo_chatter(outs[1][0])
    assert printed == [], printed  # only process 0 prints, logs and writes figures
    multi_s = time.perf_counter() - t0

    # the same run uninterrupted, as 2 processes
    codes, outs = _finish(_start(tmp_path / "multi_once", steps_total))
    assert codes == [0, 0], [o[1][-1500:] for o in outs]

    # the same run as 1 process x 8 devices
    t1 = time.perf_counter()
    c = get_config()
    for arg in [*ARGS, f"--config.train.num_steps={steps_total}"]:
        dotted, value = arg[len("--config.") :].split("=")
        set_field(c, dotted, value if dotted == "train.progress" else int(value))
    train(c, str(tmp_path / "single"), progress="off")
    single_s = time.perf_counter() - t1
    multi, multi_meta = _restore(wd)
    once, _ = _restore(tmp_path / "multi_once")
    single, single_meta = _restore(tmp_path / "single")
    assert int(multi.step) == int(once.step) == int(single.step) == steps_total
    assert multi_meta["cursor"] == single_meta["cursor"] == steps_total
    pairs = list(zip(jax.tree.leaves(multi), jax.tree.leaves(single), strict=True))
    worst = max(float(np.max(np.abs(np.asarray(a) - np.asarray(b)))) for a, b in pairs)
    print(
        f"stopped at {stopped}, killed at {killed_at}, ended at {steps_total}; 2x4 processes:"
        f" {multi_s:.0f} s (3 launches); 1x8: {single_s:.0f} s; max |diff| {worst}"
    )
    # preempted + killed + resumed = uninterrupted, bit for bit, across processes
    for a, b in zip(jax.tree.leaves(multi), jax.tree.leaves(once), strict=True):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    # against 1 process: the 8-way gradient mean is summed in another order (gloo's across the
    # processes, XLA's within one), so float32 rounding differs at the ulp level each step;
    # 40 Adam steps carry it to ~3e-7 (parameters are O(0.1..1))
    for a, b in pairs:
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-5, atol=1e-6)

    rows = [json.loads(x) for x in (wd / "metrics.jsonl").read_text().splitlines()]
    steps = [r["step"] for r in rows]
    # one writer: each log step once up to the preemption (a SIGKILL may repeat later ones)
    first = steps[: steps.index(stopped) + 1]
    assert first == sorted(set(first)) and steps.count(steps_total) == 1, steps
    assert (wd / "samples" / f"step_{steps_total:07d}.png").exists()


@pytest.mark.slow
def test_a_locked_workdir_stops_every_process(tmp_path):
    """Process 0 cannot take the lock: every process stops with one line, none waits."""
    from jaxgen.train.lock import WorkdirLock

    lock = WorkdirLock(tmp_path)
    lock.acquire()
    try:
        t0 = time.perf_counter()
        codes, outs = _finish(_start(tmp_path, 40), timeout=120)
        seconds = time.perf_counter() - t0
    finally:
        lock.release()
    assert codes == [2, 2], [o[1][-1500:] for o in outs]
    for _, err in outs:
        errors = [ln for ln in err.splitlines() if ln.startswith("error:")]
        assert len(errors) == 1, err[-1500:]
        assert "could not be locked" in errors[0] or "in use by" in errors[0]
    assert f"in use by pid {os.getpid()}" in outs[0][1]
    assert not (tmp_path / "config.json").exists() and seconds < 120

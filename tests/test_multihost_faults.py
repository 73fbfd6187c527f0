"""Multi-host faults as real processes (2 processes x 1 CPU device on 127.0.0.1): a second
launch of a live job is refused before it reaches the live job's coordinator, a process that
dies ends the others with one `error:` line within seconds, processes started with different
configs stop with one line naming the field, and a missing process ends the wait after
`train.join_timeout` with progress lines meanwhile (issue #30)."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tools.operator_faults import free_port

REPO = Path(__file__).resolve().parents[1]
CONFIG = REPO / "experiments/configs/ddgan/25gaussians.py"
ENV = {
    **os.environ,
    "XLA_FLAGS": "--xla_force_host_platform_device_count=1",
    "JAX_PLATFORMS": "cpu",
}
STARTED: list = []


@pytest.fixture(autouse=True)
def _no_orphans():
    yield
    for p in STARTED:
        if p.poll() is None:
            p.kill()
    STARTED.clear()


def _command(workdir, coordinator, process_id, *extra, n=2) -> list[str]:
    """One process of a 2-process DDGAN smoke run that would train for a long time."""
    return [
        sys.executable,
        "-m",
        "experiments.train",
        f"--config={CONFIG}",
        f"--workdir={workdir}",
        "--config.runlocal=True",
        "--config.train.num_steps=1000000",
        "--config.train.ckpt_every=20",
        "--config.train.sample_every=0",
        "--config.train.log_every=20",
        "--config.train.progress=lines",
        "--config.train.heartbeat_timeout=10",  # bounds the wait where no collective fails
        "--config.train.multihost=True",
        f"--config.train.coordinator={coordinator}",
        f"--config.train.num_processes={n}",
        f"--config.train.process_id={process_id}",
        *extra,
    ]


def _launch(workdir, port, process_id, *extra):
    cmd = _command(workdir, f"127.0.0.1:{port}", process_id, *extra)
    p = subprocess.Popen(cmd, cwd=REPO, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    STARTED.append(p)
    return p


def _steps(ckpt: Path) -> list[int]:
    return sorted(int(p.name) for p in ckpt.glob("*") if p.name.isdigit())


def _wait_for(predicate, procs, timeout=240):
    deadline = time.time() + timeout
    while not predicate():
        assert all(p.poll() is None for p in procs), "a process ended early"
        assert time.time() < deadline, "timed out"
        time.sleep(0.1)


def _ended(p, timeout=120) -> tuple[int, list[str], float]:
    """`(exit status, stderr lines, seconds waited)` of `p`."""
    t0 = time.perf_counter()
    _, err = p.communicate(timeout=timeout)
    lines = [ln for ln in err.decode().splitlines() if ln.strip()]
    return p.returncode, lines, time.perf_counter() - t0


def _one_error(lines: list[str]) -> str:
    errors = [ln for ln in lines if ln.startswith("error:")]
    assert len(errors) == 1 and lines[-1] == errors[0], lines[-12:]
    return errors[0]


@pytest.mark.slow
def test_a_second_launch_is_refused_and_a_killed_process_ends_the_other(tmp_path):
    wd, port = tmp_path / "run", free_port()
    live = [_launch(wd, port, i) for i in (0, 1)]
    _wait_for(lambda: _steps(wd / "checkpoints"), live)
    before = _steps(wd / "checkpoints")

    # the same two commands again: each stops at once on its own process's lock; the live job
    # never notices (it keeps its processes and goes on checkpointing)
    again = [_launch(wd, port, i) for i in (0, 1)]
    for p in again:
        code, lines, _ = _ended(p)
        assert code == 2 and "is in use by pid" in _one_error(lines), lines[-5:]
    assert all(p.poll() is None for p in live)
    _wait_for(lambda: _steps(wd / "checkpoints")[-1] > before[-1], live)

    # kill -9 process 1: process 0 ends within seconds, with one line saying what to do
    live[1].send_signal(signal.SIGKILL)
    code, lines, waited = _ended(live[0])
    line = _one_error(lines)
    # a failed collective (gloo) says so at once; a wait elsewhere (a checkpoint's barrier)
    # ends at the heartbeat timeout, when JAX's runtime aborts the process and the parent
    # says what the runtime said
    gloo = "another process of this run stopped" in line
    assert code == 2 and (gloo or "most likely another process died" in line), lines[-5:]
    assert "run the same command on every process" in line or "the full output is in" in line
    assert waited < 45, waited
    print(
        f"checkpoints before the second launch {before}, after {_steps(wd / 'checkpoints')}; "
        f"process 0 ended {waited:.1f} s after process 1 was killed"
    )


@pytest.mark.slow
def test_processes_with_different_configs_stop_with_one_line_naming_the_field(tmp_path):
    port, t0 = free_port(), time.perf_counter()
    procs = [
        _launch(tmp_path, port, 0),
        _launch(tmp_path, port, 1, "--config.model.hidden=(8,8,8)"),
    ]
    for p in procs:
        code, lines, _ = _ended(p)
        line = _one_error(lines)
        assert (
            code == 2
            and "model.hidden is [16, 16, 16] on process 0, [8, 8, 8] on process 1" in line
        )
    seconds = time.perf_counter() - t0
    assert seconds < 60 and not (tmp_path / "checkpoints").exists()
    print(f"mismatch: both processes ended in {seconds:.1f} s")


@pytest.mark.slow
def test_a_missing_process_ends_the_wait_after_join_timeout(tmp_path):
    t0 = time.perf_counter()
    p = _launch(tmp_path, free_port(), 0, "--config.train.join_timeout=6")
    code, lines, _ = _ended(p)
    seconds = time.perf_counter() - t0
    line = _one_error(lines)
    assert code == 2 and "did not join within train.join_timeout=6 s" in line
    waiting = [ln for ln in lines if "waiting for the others at 127.0.0.1" in ln]
    assert len(waiting) >= 1, lines
    assert seconds < 45 and not (tmp_path / "checkpoints").exists()
    print(f"missing process: ended after {seconds:.1f} s with {len(waiting)} progress lines")


def test_a_coordinator_without_a_port_is_one_line():
    from jaxgen.parallel import ClusterError, initialize_distributed

    with pytest.raises(ClusterError, match=r"train.coordinator='127.0.0.1': expected HOST:PORT"):
        initialize_distributed("127.0.0.1", 2, 0)
    with pytest.raises(ClusterError, match=r"0 <= train.process_id < num_processes"):
        initialize_distributed("127.0.0.1:1234", 2, 2)


def test_the_parent_of_a_multihost_launch_reads_its_process_from_the_command_line(monkeypatch):
    """`launch_without_jax` (the parent that imports no JAX) takes both flag forms, and leaves
    every case it cannot read to the full config parse."""
    from experiments import supervise

    argv = ["train.py", "--config", "c.py", "--workdir=/w", "--config.train.multihost", "True"]
    assert supervise._argv_values(argv) == {
        "config": "c.py",
        "workdir": "/w",
        "config.train.multihost": "True",
    }
    started = []
    monkeypatch.setattr(supervise, "run_supervised", lambda *a: started.append(a) or 0)
    full = [*argv, "--config.train.coordinator=h:1", "--config.train.process_id=1",
            "--config.train.num_processes=2"]  # fmt: skip
    for partial in (argv, [*full[:-1], "--config.train.num_processes=two"], full[:5]):
        supervise.launch_without_jax(partial, "experiments.train")  # returns: full parse
    assert started == []
    monkeypatch.setenv(supervise.ENV_FLAG, "3")  # the child itself
    supervise.launch_without_jax(full, "experiments.train")
    monkeypatch.delenv(supervise.ENV_FLAG)
    with pytest.raises(SystemExit) as done:
        supervise.launch_without_jax(full, "experiments.train")
    assert done.value.code == 0 and len(started) == 1
    _, module, workdir, t = started[0]
    assert (module, workdir, t.coordinator, t.process_id, t.num_processes) == (
        "experiments.train", "/w", "h:1", 1, 2)  # fmt: skip

"""A multi-host process runs as a child of a thin parent that keeps its stderr readable.

JAX's C++ runtime reports the death of another process of the cluster by aborting this one
with 50-70 lines of abseil and stack text and no line a person can act on. So
`experiments.train` with `train.multihost=True` re-runs itself as a child (`run_supervised`)
whose Python stderr and C++ stderr (file descriptor 2) are two pipes: the parent copies both to
a log file (`WORKDIR/logs/process{K}-{time}-{pid}.log`) and only Python's lines to the
terminal. When the child ends without having said why (it was aborted or killed), the parent
prints one `error:` line: what the runtime said, and where the full text is. SIGTERM to the
parent is passed on (preemption behaves as without the parent); SIGINT (Ctrl-C) reaches the
child with its process group; the child dies with its parent (Linux `PR_SET_PDEATHSIG`).
"""

import contextlib
import ctypes
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from types import SimpleNamespace

ENV_FLAG = "JAXGEN_SUPERVISED"  # in the child's environment: the fd of its Python stderr

# abseil's fatal line: "F1207 19:44:47.737955 21610 client.h:80] Terminating process ..."
_FATAL = re.compile(r"^F\d{4} [^\]]*\] (.*)")


def supervised() -> bool:
    """Whether this process is the supervised child."""
    return bool(os.environ.get(ENV_FLAG))


def adopt_stderr() -> None:
    """In the supervised child: Python's stderr (messages, warnings, tracebacks) goes to the
    parent's pipe for it, which reaches the terminal; file descriptor 2, where the C++ runtime
    writes, goes to the log file only."""
    if supervised():
        sys.stderr = open(int(os.environ[ENV_FLAG]), "w", buffering=1, closefd=False)  # noqa: SIM115


def _argv_values(argv: list[str]) -> dict[str, str]:
    """The `--name=value` and `--name value` arguments of `argv` as {name: value}."""
    values, args = {}, argv[1:]
    for i, arg in enumerate(args):
        if not arg.startswith("--"):
            continue
        if "=" in arg:
            name, value = arg[2:].split("=", 1)
        elif i + 1 < len(args) and not args[i + 1].startswith("-"):
            name, value = arg[2:], args[i + 1]
        else:
            continue
        values[name] = value
    return values


def launch_without_jax(argv: list[str], module: str) -> None:
    """Called by `module`'s `__main__` before its heavy imports: when the command line itself
    names a multi-host process (`--config.train.multihost=True` with `--workdir`,
    `--config.train.coordinator`, `process_id` and `num_processes`), run it as the supervised
    child and exit with its status, so that this parent never imports JAX (a few seconds of CPU
    per process). Anything else returns and the module parses the config itself: multihost set
    in the config file, an auto-detected cluster, a workdir that cannot hold the log, or this
    process being the child already."""
    if supervised():
        return
    given = _argv_values(argv)
    if given.get("config.train.multihost", "").lower() not in ("true", "1"):
        return
    names = ("coordinator", "process_id", "num_processes")
    wanted = {n: given.get(f"config.train.{n}", "") for n in names}
    if not given.get("workdir") or not all(wanted.values()):
        return
    try:
        t = SimpleNamespace(
            coordinator=wanted["coordinator"],
            process_id=int(wanted["process_id"]),
            num_processes=int(wanted["num_processes"]),
        )
    except ValueError:
        return  # the full parse names the bad value
    try:
        code = run_supervised(argv, module, given["workdir"], t)
    except OSError:
        return  # e.g. the workdir is a file: the full parse says so in one line
    sys.exit(code)


def run_supervised(argv: list[str], module: str, workdir: str, t) -> int:
    """Run `python -m module argv[1:]` as a supervised child (`train` section `t` names the
    process); returns the exit status to exit with: the child's when it ended by itself or
    reported its own error, 2 when it was killed or aborted without an `error:` line (one is
    printed)."""
    log_path = _log_path(workdir, t)
    log_path.parent.mkdir(parents=True, exist_ok=True)
    py_read, py_write = os.pipe()
    env = {**os.environ, ENV_FLAG: str(py_write), "PYTHONUNBUFFERED": "1"}
    child = subprocess.Popen(
        [sys.executable, "-m", module, *argv[1:]],
        stderr=subprocess.PIPE,
        pass_fds=(py_write,),
        env=env,
        preexec_fn=_die_with_parent,
    )
    os.close(py_write)
    seen = {"error": False, "fatal": None}
    with open(log_path, "a", encoding="utf-8") as log, _forward_signals(child):
        lock = threading.Lock()
        pumps = [
            threading.Thread(target=_pump, args=(child.stderr, log, lock, seen, False)),
            threading.Thread(target=_pump, args=(os.fdopen(py_read, "rb"), log, lock, seen, True)),
        ]
        for p in pumps:
            p.start()
        code = child.wait()
        for p in pumps:
            p.join()
    if code in (0, 130, 143) or (code > 0 and seen["error"]):  # it said why it ended
        return code
    why = _runtime_reason(seen["fatal"]) or (
        f"killed by {signal.Signals(-code).name}" if code < 0 else f"exit status {code}"
    )
    print(f"error: {_who(t)} stopped: {why}; the full output is in {log_path}", file=sys.stderr)
    return 2


def _runtime_reason(fatal: str | None) -> str | None:
    """A short reason from abseil's fatal message: JAX's "detected fatal errors" text says
    another process most likely died; the status it carries says how this one learnt it."""
    if fatal is None:
        return None
    status = fatal.split("absl::Status:", 1)[1].strip() if "absl::Status:" in fatal else ""
    if "distributed service detected fatal errors" in fatal:
        seen = f" ({status[:120]})" if status else ""
        return f"the cluster reported a fatal error{seen}, most likely another process died"
    return fatal[:200]


def _pump(stream, log, lock, seen: dict, to_terminal: bool) -> None:
    """Copy the lines of the binary `stream` to `log`, and to stderr when `to_terminal`;
    records in `seen` whether an `error:` line passed and the first fatal runtime message."""
    for raw in stream:
        line = raw.decode("utf-8", "replace")
        with lock:
            log.write(line)
            log.flush()
        if to_terminal:
            seen["error"] = seen["error"] or line.startswith("error:")
            sys.stderr.write(line)
            sys.stderr.flush()
        elif seen["fatal"] is None and (m := _FATAL.match(line)):
            seen["fatal"] = m.group(1).strip()[:300]
    stream.close()


@contextlib.contextmanager
def _forward_signals(child):
    """SIGTERM to the parent goes to the child; SIGINT (Ctrl-C reaches the whole process
    group, the child included) is left to the child."""

    def forward(signum, frame):
        with contextlib.suppress(ProcessLookupError):
            child.send_signal(signum)

    old = {signal.SIGTERM: signal.signal(signal.SIGTERM, forward)}
    old[signal.SIGINT] = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        yield
    finally:
        for s, h in old.items():
            signal.signal(s, h)


def _die_with_parent() -> None:
    """In the child, before exec: receive SIGKILL when the parent dies (Linux only), so a
    `kill -9` of the launched command does not leave the training process behind."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG = 1


def _who(t) -> str:
    if t.coordinator:
        return f"process {t.process_id} of {t.num_processes}"
    return f"the process on {socket.gethostname()}"


def _log_path(workdir: str, t) -> Path:
    name = f"process{t.process_id}" if t.coordinator else f"host-{socket.gethostname()}"
    stamp = time.strftime("%Y%m%d-%H%M%S")
    return Path(workdir) / "logs" / f"{name}-{stamp}-{os.getpid()}.log"

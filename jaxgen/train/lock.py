"""One trainer per workdir: an exclusive lock on `workdir/.lock`, naming its holder.

The lock is `flock` on the open file, so the kernel drops it when the holder dies however it
dies (`kill -9`, a crash, a preempted VM): a lock file left by a killed run is stale by
construction and the next trainer takes it over, saying whose it was. The file's text (pid,
host, start time, command) names the holder; it is emptied on a clean release. `flock` is per
machine, so a lock file naming another machine is never taken over: its run may be alive.
"""

import fcntl
import json
import os
import socket
import sys
import time
from pathlib import Path


class WorkdirLockedError(RuntimeError):
    """Another live process holds the workdir's lock."""


class WorkdirLock:
    """`with WorkdirLock(workdir): ...` holds `workdir/.lock` for the block (`name`: another
    file in the workdir, e.g. the lock of one process of a multi-host run)."""

    def __init__(self, workdir: str | Path, *, say=print, name: str = ".lock", info=None):
        self.path = Path(workdir) / name
        self._say = say
        self._info = dict(info or {})  # recorded beside the holder (e.g. its cluster)
        self._fd = None

    def acquire(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _describe(_read(fd))
            os.close(fd)
            raise WorkdirLockedError(
                f"{self.path.parent} is in use by {holder}; stop that run or use another --workdir"
            ) from None
        previous = _read(fd)
        if previous and previous.get("host") not in (None, "?", socket.gethostname()):
            fcntl.flock(fd, fcntl.LOCK_UN)  # flock cannot see another machine's holder
            os.close(fd)
            raise WorkdirLockedError(
                f"{self.path.parent} was locked by {_describe(previous)}, another machine, "
                f"which may still be running; if it is not, delete {self.path}"
            )
        if previous:  # the holder died without unlocking (killed, crashed, preempted)
            self._say(f"taking over the lock of {_describe(previous)}, which is not running")
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps({**_me(), **self._info}).encode(), 0)
        os.fsync(fd)
        self._fd = fd

    def release(self) -> None:
        if self._fd is None:
            return
        os.ftruncate(self._fd, 0)  # an empty file: released cleanly
        fcntl.flock(self._fd, fcntl.LOCK_UN)
        os.close(self._fd)
        self._fd = None

    def __enter__(self):
        self.acquire()
        return self

    def __exit__(self, *exc):
        self.release()


def _me() -> dict:
    return {
        "pid": os.getpid(),
        "host": socket.gethostname(),
        "since": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "command": " ".join(sys.argv)[:300],
    }


def _read(fd) -> dict:
    try:
        text = os.pread(fd, 4096, 0).decode()
        return json.loads(text) if text.strip() else {}
    except (OSError, ValueError):
        return {"pid": "?", "host": "?"}


def describe_holder(holder: dict) -> str:
    """`pid 123 on HOST since TIME` for a lock's record."""
    return _describe(holder)


def _describe(holder: dict) -> str:
    if not holder:
        return "another process"
    since = f" since {holder['since']}" if holder.get("since") else ""
    return f"pid {holder.get('pid')} on {holder.get('host')}{since}"


def lock_holder(workdir: str | Path) -> dict | None:
    """Whether a live process on this machine holds `workdir/.lock` now: its record (pid, host,
    since, command; `{}` when it wrote none), or None (no holder, no lock file). A non-blocking
    probe that creates nothing: it takes a shared `flock` and drops it at once (a trainer
    starting in that instant is told the workdir is in use)."""
    try:
        fd = os.open(Path(workdir) / ".lock", os.O_RDONLY)
    except OSError:  # no lock file (never trained here), or not a folder
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = _read(fd)
        os.close(fd)
        return holder
    fcntl.flock(fd, fcntl.LOCK_UN)
    os.close(fd)
    return None

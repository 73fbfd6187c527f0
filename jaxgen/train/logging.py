"""Scalar logging to `metrics.jsonl` and TensorBoard event files; progress lines for logs that
are files.

A row cut short (a `kill -9` or a full disk in mid-write) leaves `metrics.jsonl` without its
final newline. The writer moves such a fragment to `metrics.jsonl.partial` (appended there after
a note) before it appends, so it never fuses with the next row; readers skip a line that is not
a JSON row with one warning line naming the file and the line number.
"""

import json
import os
import sys
import time
from pathlib import Path

import numpy as np


class MetricsWriter:
    """Appends one JSON line per logged step to `workdir/metrics.jsonl` and mirrors the scalars
    to TensorBoard (`workdir/tb`) when tensorboardX is installed. A cut-short last row is moved
    aside first (`set_aside_partial_line`), with one line to `say`."""

    def __init__(self, workdir: str | Path, *, tensorboard: bool = True, say=None):
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        path = self.workdir / "metrics.jsonl"
        set_aside_partial_line(path, say=say or _warn)
        self._jsonl = open(path, "a")  # noqa: SIM115
        self._tb = None
        if tensorboard:
            try:
                from tensorboardX import SummaryWriter

                self._tb = SummaryWriter(str(self.workdir / "tb"))
            except ImportError:
                pass

    def write(self, step: int, scalars: dict) -> None:
        row = {"step": int(step), "time": time.time()}
        row.update({k: float(np.asarray(v)) for k, v in scalars.items()})
        self._jsonl.write(json.dumps(row) + "\n")
        self._jsonl.flush()
        if self._tb is not None:
            for k, v in row.items():
                if k not in ("step", "time"):
                    self._tb.add_scalar(k, v, step)

    def close(self) -> None:
        self._jsonl.close()
        if self._tb is not None:
            self._tb.close()


def _warn(line: str) -> None:
    print(f"warning: {line}", file=sys.stderr, flush=True)


def set_aside_partial_line(path: Path, *, say=_warn) -> int:
    """Move the unterminated last line of the append-only log `path` (a row cut short) to
    `<path>.partial`, after a note naming where it came from, then cut it from `path`; one line
    to `say`. Returns the fragment's size in bytes (0: nothing to do). The fragment is written
    and flushed to disk before `path` is shortened, so it is never lost."""
    path = Path(path)
    if not path.is_file():
        return 0
    with open(path, "rb") as f:
        size = f.seek(0, os.SEEK_END)
        if size == 0:
            return 0
        f.seek(size - 1)
        if f.read(1) == b"\n":
            return 0
        keep = _after_last_newline(f, size)
        f.seek(keep)
        fragment = f.read()
    aside = path.with_name(path.name + ".partial")
    when = time.strftime("%Y-%m-%d %H:%M:%S")
    note = f"# {when}: the cut-short last line of {path.name} (from byte {keep}):\n"
    with open(aside, "ab") as f:
        f.write(note.encode() + fragment + b"\n")
        f.flush()
        os.fsync(f.fileno())
    os.truncate(path, keep)
    say(
        f"{path}: its last line was cut short (a killed or disk-full write); moved its "
        f"{len(fragment)} bytes to {aside} and appending after the last whole row"
    )
    return len(fragment)


def _after_last_newline(f, size: int) -> int:
    """The offset just after the last newline of the open file `f` of `size` bytes (0: none)."""
    end = size
    while end > 0:
        start = max(0, end - (1 << 16))
        f.seek(start)
        cut = f.read(end - start).rfind(b"\n")
        if cut >= 0:
            return start + cut + 1
        end = start
    return 0


def read_jsonl(path: str | Path, *, say=_warn) -> list[dict]:
    """The JSON objects of the lines of `path`; a line that is not one (cut short, fused with
    the next row) is skipped with one line to `say` naming the file and the line number."""
    rows = []
    for number, line in enumerate(Path(path).read_bytes().splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except ValueError:
            row = None
        if not isinstance(row, dict):
            say(f"{path}, line {number}: not a JSON row (cut short?); skipped")
            continue
        rows.append(row)
    return rows


def read_metrics(workdir: str | Path, *, say=_warn) -> list[dict]:
    """The rows of `workdir/metrics.jsonl` (`read_jsonl`: unreadable lines skipped, each with
    one warning line)."""
    return read_jsonl(Path(workdir) / "metrics.jsonl", say=say)


class ProgressLines:
    """One line per log interval, for logs that are files (`progress="lines"`):
    `step 200/2000 (10%)  loss 0.1234  5123 ex/s  eta 0:01:30`."""

    def __init__(self, total: int, start: int, out=None):
        self.total, self.start, self.t0 = total, start, time.perf_counter()
        self.out = out or sys.stdout

    def __call__(self, step: int, shown: dict, examples_per_s: float) -> None:
        done, elapsed = step - self.start, time.perf_counter() - self.t0
        eta = (self.total - step) * elapsed / done if done > 0 else 0.0
        metrics = "  ".join(f"{k} {v}" for k, v in shown.items())
        pct = 100 * step / max(self.total, 1)
        print(
            f"step {step}/{self.total} ({pct:.0f}%)  {metrics}  {examples_per_s:.0f} ex/s  "
            f"eta {_clock(eta)}",
            file=self.out,
            flush=True,
        )


def _clock(seconds: float) -> str:
    s = int(round(seconds))
    return f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}"


def progress_mode(progress) -> str:
    """ "bar", "lines" or "off" from `progress`: True / False, None or "auto" (a bar on a
    terminal, lines otherwise), or one of the three."""
    if progress is None or progress == "auto":
        return "bar" if sys.stdout.isatty() else "lines"
    if isinstance(progress, bool):
        return "bar" if progress else "off"
    if progress not in ("bar", "lines", "off"):
        raise ValueError(f"progress={progress!r}; choose auto, bar, lines or off")
    return progress

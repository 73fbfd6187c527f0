"""Scalar logging to `metrics.jsonl` and TensorBoard event files; progress lines for logs that
are files."""

import json
import sys
import time
from pathlib import Path

import numpy as np


class MetricsWriter:
    """Appends one JSON line per logged step to `workdir/metrics.jsonl` and mirrors the scalars
    to TensorBoard (`workdir/tb`) when tensorboardX is installed."""

    def __init__(self, workdir: str | Path, *, tensorboard: bool = True):
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self._jsonl = open(self.workdir / "metrics.jsonl", "a")  # noqa: SIM115
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


def read_metrics(workdir: str | Path) -> list[dict]:
    path = Path(workdir) / "metrics.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


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

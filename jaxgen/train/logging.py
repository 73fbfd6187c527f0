"""Scalar logging to `metrics.jsonl` and TensorBoard event files."""

import json
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

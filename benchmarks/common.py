"""Helpers shared by the benchmark scripts: timing and recording results (`tools.records`)."""

import time
from pathlib import Path

import jax
import numpy as np

from tools.records import RESULTS, machine, record

__all__ = ["RESULTS", "interleaved_times", "machine", "median_time", "record", "restore"]


def median_time(fn, *, repeats: int = 5, warmup: int = 1) -> float:
    """Median wall time (s) of `fn()` over `repeats` runs after `warmup` runs."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return float(np.median(times))


def interleaved_times(calls: dict, repeats: int) -> dict:
    """Wall times (s) `{name: [repeats]}` of each `calls[name]()` (blocked on), the names taken in
    turn within every repeat so that drifts of the machine's load hit all of them alike. Warm
    the calls up (compile them) before."""
    times = {name: [] for name in calls}
    for _ in range(repeats):
        for name, call in calls.items():
            t = time.perf_counter()
            jax.block_until_ready(call())
            times[name].append(time.perf_counter() - t)
    return times


def restore(workdir: Path):
    """`(experiment, state)` of a run: its saved config and newest readable checkpoint."""
    from experiments import cli
    from experiments.experiment import load_saved_config

    c = load_saved_config(workdir / "config.json")
    exp = cli.experiment(c)
    state, _ = exp.restore_latest(str(workdir))
    return exp, state

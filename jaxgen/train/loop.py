"""The training loop: sharded steps, prefetching, logging, checkpoints, non-finite handling.

`fit` knows nothing about methods or configs: it takes a step function, a state, a batch
stream and explicit intervals. Each step's `finite` flag is read on the host, which both drives
the non-finite guard and keeps collective programs from piling up un-awaited (an XLA:CPU abort
on multi-device runs, see ecosystem notes §5).
"""

import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import jax
import numpy as np
from tqdm.auto import tqdm

from jaxgen.parallel.mesh import global_batch, replicated
from jaxgen.train.checkpoint import Checkpoints
from jaxgen.train.logging import MetricsWriter
from jaxgen.train.step import make_sharded_step


class NonFiniteError(FloatingPointError):
    """Training produced a NaN/Inf loss or gradient."""


@dataclass(frozen=True)
class Schedule:
    num_steps: int
    log_every: int = 100
    ckpt_every: int = 1000
    sample_every: int = 0  # 0: never
    nonfinite: str = "stop"  # stop | skip | rollback


def _prefetch(stream, mesh, cursor: int):
    """Yields `(cursor, global_batch)`, preparing the next batch on a thread while a step runs."""
    with ThreadPoolExecutor(max_workers=1) as pool:
        future = pool.submit(lambda c: global_batch(stream.batch(c), mesh), cursor)
        while True:
            batch = future.result()
            future = pool.submit(lambda c: global_batch(stream.batch(c), mesh), cursor + 1)
            yield cursor, batch
            cursor += 1


def _log(writer, pbar, pending, step, batch_size, seconds):
    if not pending:
        return
    rows = jax.device_get(pending)
    means = {k: float(np.mean([r[k] for r in rows])) for k in rows[0] if k != "finite"}
    means["examples_per_s"] = batch_size * len(rows) / max(seconds, 1e-9)
    if writer is not None:
        writer.write(step, means)
    pbar.set_postfix(
        loss=f"{means.get('loss', float('nan')):.4g}",
        ex_s=f"{means['examples_per_s']:.0f}",
        refresh=False,
    )


def fit(
    step_fn: Callable,
    state,
    stream,
    mesh,
    schedule: Schedule,
    *,
    cursor: int = 0,
    checkpoints: Checkpoints | None = None,
    meta: dict | None = None,
    writer: MetricsWriter | None = None,
    on_sample: Callable | None = None,
    progress: bool | None = None,
):
    """Train until `state.step == schedule.num_steps`. Returns `(state, cursor)`.

    `step_fn(state, batch) -> (state, metrics)` is pure; it is jitted here with shardings and a
    non-finite guard. `cursor` is the stream index of the next batch; it is saved with the
    state (with `meta`) so a resumed run sees the same batches. `on_sample(state, step)` is called
    every `sample_every` steps. `progress=None` shows a bar only on a terminal.
    """
    if schedule.nonfinite not in ("stop", "skip", "rollback"):
        raise ValueError(f"nonfinite={schedule.nonfinite!r}; choose stop, skip or rollback")
    step_jit = make_sharded_step(step_fn, mesh)
    state = jax.device_put(state, replicated(mesh))
    step = int(state.step)
    pending, t_last = [], time.perf_counter()
    pbar = tqdm(
        total=schedule.num_steps,
        initial=step,
        disable=None if progress is None else not progress,
        dynamic_ncols=True,
        desc="train",
    )

    def save(at_step, at_cursor):
        if checkpoints is not None:
            checkpoints.save(at_step, state, {**(meta or {}), "cursor": at_cursor})

    batches = _prefetch(stream, mesh, cursor)
    while step < schedule.num_steps:
        cursor, batch = next(batches)
        state, metrics = step_jit(state, batch)
        if not bool(metrics["finite"]):  # blocks on this step
            state, restored_cursor = _on_nonfinite(schedule.nonfinite, step, state, checkpoints)
            if restored_cursor is not None:  # rolled back: resume after the offending batch
                step = int(state.step)
                batches.close()
                batches = _prefetch(stream, mesh, cursor + 1)
            continue
        step += 1
        pending.append(metrics)
        pbar.update(1)
        if step % schedule.log_every == 0 or step == schedule.num_steps:
            now = time.perf_counter()
            _log(writer, pbar, pending, step, stream.batch_size, now - t_last)
            pending, t_last = [], now
        if schedule.ckpt_every and (step % schedule.ckpt_every == 0 or step == schedule.num_steps):
            save(step, cursor + 1)
        if on_sample is not None and schedule.sample_every and step % schedule.sample_every == 0:
            on_sample(state, step)
    batches.close()
    pbar.close()
    return state, cursor + 1 if schedule.num_steps > 0 else cursor


def _on_nonfinite(policy, step, state, checkpoints):
    """Returns `(state, restored_cursor or None)` or raises `NonFiniteError`."""
    if policy == "skip":
        print(f"warning: non-finite loss or gradient at step {step}; batch skipped")
        return state, None
    if policy == "rollback" and checkpoints is not None and checkpoints.latest_step() is not None:
        restored, meta = checkpoints.restore(state)
        print(
            f"warning: non-finite loss or gradient at step {step}; rolled back to step "
            f"{int(restored.step)} and skipping the batch"
        )
        return jax.device_put(restored, jax.tree.leaves(state)[0].sharding), meta["cursor"]
    where = f" (last good checkpoint: step {checkpoints.latest_step()})" if checkpoints else ""
    raise NonFiniteError(f"non-finite loss or gradient at step {step}{where}")

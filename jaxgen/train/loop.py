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
import jax.numpy as jnp
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
    nonfinite: str = "stop"  # stop | skip | rollback (newest checkpoint, then the next batch)
    steps_per_call: int = 1  # K > 1: K steps per dispatch in one lax.scan


def _prefetch(stream, cursor: int):
    """Yields `(cursor, host_batch)`, reading the next batch on a thread while a step runs."""
    with ThreadPoolExecutor(max_workers=1) as pool:
        future = pool.submit(stream.batch, cursor)
        while True:
            batch = future.result()
            future = pool.submit(stream.batch, cursor + 1)
            yield cursor, batch
            cursor += 1


def _next_call(batches, mesh, k: int, stacked: bool):
    """`(first_cursor, global batch)` of the next `k` batches (stacked `[k, B, ...]` if asked)."""
    items = [next(batches) for _ in range(k)]
    local = items[0][1]
    if stacked:
        local = {key: np.stack([b[key] for _, b in items]) for key in local}
    return items[0][0], global_batch(local, mesh, stacked=stacked)


@jax.jit
def _concat(metrics: list[dict]) -> dict:
    return {k: jnp.concatenate([jnp.ravel(m[k]) for m in metrics]) for k in metrics[0]}


def _log(writer, pbar, pending, step, batch_size, seconds):
    if not pending:
        return
    # one device-side concatenation per metric, then one transfer each (not one per step)
    rows = jax.device_get(_concat(pending))
    keep = rows.pop("finite").astype(bool)
    means = {k: float(np.mean(v[keep])) for k, v in rows.items()}
    means["examples_per_s"] = batch_size * int(keep.sum()) / max(seconds, 1e-9)
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
    hooks: tuple[tuple[int, Callable], ...] = (),
    progress: bool | None = None,
):
    """Train until `state.step == schedule.num_steps`. Returns `(state, cursor)`.

    `step_fn(state, batch) -> (state, metrics)` is pure; it is jitted here with shardings and a
    non-finite guard. `cursor` is the stream index of the next batch; it is saved with the
    state (with `meta`) so a resumed run sees the same batches. `on_sample(state, step)` is called
    every `sample_every` steps, and each `(every, fn)` of `hooks` as `fn(state, step)` every `every`
    steps (e.g. model selection). `progress=None` shows a bar only on a terminal.
    """
    if schedule.nonfinite not in ("stop", "skip", "rollback"):
        raise ValueError(f"nonfinite={schedule.nonfinite!r}; choose stop, skip or rollback")
    K = schedule.steps_per_call
    step_jit = make_sharded_step(step_fn, mesh, steps_per_call=K)
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
    batches = _prefetch(stream, cursor)
    try:
        while step < schedule.num_steps:
            k = min(K, schedule.num_steps - step)
            first, batch = _next_call(batches, mesh, k, stacked=K > 1)
            state, metrics = step_jit(state, batch)
            cursor = first + k
            finite = np.ravel(np.asarray(metrics["finite"]))  # blocks on this call
            if not finite.all():
                bad = step + int(np.argmin(finite))
                state, rolled_back = _on_nonfinite(schedule.nonfinite, bad, state, checkpoints)
                if rolled_back:  # continue from the checkpoint's state after the bad batch
                    step = int(state.step)
                    batches.close()
                    batches = _prefetch(stream, cursor)
                    continue
            before, step = step, step + int(finite.sum())
            pending.append(metrics)
            pbar.update(step - before)
            last = step == schedule.num_steps
            if _crossed(before, step, schedule.log_every) or last:
                now = time.perf_counter()
                _log(writer, pbar, pending, step, stream.batch_size, now - t_last)
                pending, t_last = [], now
            if checkpoints is not None and (
                _crossed(before, step, schedule.ckpt_every) or (last and schedule.ckpt_every)
            ):
                checkpoints.save(step, state, {**(meta or {}), "cursor": cursor})
            if on_sample is not None and _crossed(before, step, schedule.sample_every):
                on_sample(state, step)
            for every, fn in hooks:
                if _crossed(before, step, every):
                    fn(state, step)
    finally:
        batches.close()
        pbar.close()
    return state, cursor


def _crossed(before: int, after: int, every: int) -> bool:
    """Whether a multiple of `every` lies in (before, after] (`every = 0`: never)."""
    return bool(every) and after // every > before // every


def _on_nonfinite(policy, step, state, checkpoints):
    """Returns `(state, rolled_back)` or raises `NonFiniteError`."""
    if policy == "skip":
        print(f"warning: non-finite loss or gradient at step {step}; batch skipped")
        return state, False
    if policy == "rollback" and checkpoints is not None and checkpoints.latest_step() is not None:
        restored, _ = checkpoints.restore(state)
        print(
            f"warning: non-finite loss or gradient at step {step}; rolled back to step "
            f"{int(restored.step)} and skipping the batch"
        )
        return jax.device_put(restored, jax.tree.leaves(state)[0].sharding), True
    where = f" (last good checkpoint: step {checkpoints.latest_step()})" if checkpoints else ""
    raise NonFiniteError(f"non-finite loss or gradient at step {step}{where}")

"""The training loop: sharded steps, one call in flight, logging, checkpoints, non-finite handling.

`fit` knows nothing about methods or configs: it takes a step function, a state, a batch
stream and explicit intervals. Each call's `finite` flags are read on the host while the next
call runs: this drives the non-finite guard, hides the host's work behind the device's, and
keeps at most two collective programs in flight (more, un-awaited, abort XLA:CPU on multi-device
runs, see ecosystem notes §5).
"""

import time
from collections.abc import Callable
from dataclasses import dataclass, field

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


class Interrupted(Exception):
    """Training stopped on request (`fit(should_stop=...)`, e.g. SIGTERM) after the call in
    flight finished and a checkpoint of that step was written; `step` is that step."""

    def __init__(self, step: int, where: str):
        super().__init__(f"stopped at step {step}; {where}")
        self.step = step


@dataclass(frozen=True)
class TrainPlan:
    """How long to train, the intervals of logging / checkpoints / samples, and the policy for
    a non-finite step."""

    num_steps: int
    log_every: int = 100
    ckpt_every: int = 1000
    sample_every: int = 0  # 0: never
    nonfinite: str = "stop"  # stop | skip | rollback (newest checkpoint, then the next batch)
    steps_per_call: int = 1  # K > 1: K steps per dispatch in one lax.scan


def _prefetch(stream, cursor: int):
    """Yields `(cursor, host_batch)` from `cursor` on. Batches are read on the main thread while
    the device runs the calls already dispatched (one call is always in flight, see `fit`); a
    reader thread measured slower here (a thread hand-off per batch costs more than an in-memory
    batch, `benchmarks/step_throughput.py`)."""
    while True:
        yield cursor, stream.batch(cursor)
        cursor += 1


def _next_call(batches, mesh, k: int, stacked: bool):
    """`(first_cursor, batch)` of the next `k` batches (stacked `[k, B, ...]` if asked).

    On one host the numpy batch goes to the jitted step as is: its `in_shardings` place it, which
    costs a third of a separate `device_put` (the trainer's largest per-step host cost)."""
    items = [next(batches) for _ in range(k)]
    local = items[0][1]
    if stacked:
        local = {key: np.stack([b[key] for _, b in items]) for key in local}
    if jax.process_count() == 1:
        return items[0][0], local
    return items[0][0], global_batch(local, mesh, stacked=stacked)


@jax.jit
def _concat(metrics: list[dict]) -> dict:
    return {k: jnp.concatenate([jnp.ravel(m[k]) for m in metrics]) for k in metrics[0]}


def _log(writer, pbar, pending, step, batch_size, seconds, headline):
    if not pending:
        return
    # one device-side concatenation per metric, then one transfer each (not one per step)
    rows = jax.device_get(_concat(pending))
    keep = rows.pop("finite").astype(bool)
    means = {k: float(np.mean(v[keep])) for k, v in rows.items()}
    means["examples_per_s"] = batch_size * int(keep.sum()) / max(seconds, 1e-9)
    if writer is not None:
        writer.write(step, means)
    shown = {k: f"{means[k]:.4g}" for k in headline if k in means}
    pbar.set_postfix(**shown, ex_s=f"{means['examples_per_s']:.0f}", refresh=False)


def fit(
    step_fn: Callable,
    state,
    stream,
    mesh,
    schedule: TrainPlan,
    *,
    state_sharding=None,
    headline: tuple[str, ...] = ("loss",),
    cursor: int = 0,
    checkpoints: Checkpoints | None = None,
    meta: dict | None = None,
    writer: MetricsWriter | None = None,
    on_sample: Callable | None = None,
    hooks: tuple[tuple[int, Callable], ...] = (),
    progress: bool | None = None,
    should_stop: Callable[[], bool] | None = None,
):
    """Train until `state.step == schedule.num_steps`. Returns `(state, cursor)`.

    `step_fn(state, batch) -> (state, metrics)` is pure; it is jitted here with shardings and a
    non-finite guard. `cursor` is the stream index of the next batch; it is saved with the
    state (with `meta`) so a resumed run sees the same batches. `on_sample(state, step)` is called
    every `sample_every` steps, and each `(every, fn)` of `hooks` as `fn(state, step)` every `every`
    steps (e.g. model selection). `progress=None` shows a bar only on a terminal, with the
    `headline` metrics. `state_sharding` lays the state out on the mesh (replicated when None;
    see `jaxgen.parallel.state_shardings`).

    `should_stop()` is polled before each dispatch: once it is true, no new call starts, the
    call in flight is finished, its step is checkpointed (when `checkpoints` is given) and
    `Interrupted` is raised (nothing trained is lost; a resume continues bit-identically).
    """
    if schedule.nonfinite not in ("stop", "skip", "rollback"):
        raise ValueError(f"nonfinite={schedule.nonfinite!r}; choose stop, skip or rollback")
    K = schedule.steps_per_call
    shardings = replicated(mesh) if state_sharding is None else state_sharding
    step_jit = make_sharded_step(step_fn, mesh, state_sharding=shardings, steps_per_call=K)
    state = jax.device_put(state, shardings)
    run = _Run(int(state.step), cursor, time.perf_counter())
    pbar = tqdm(
        total=schedule.num_steps,
        initial=run.step,
        disable=None if progress is None else not progress,
        dynamic_ncols=True,
        desc="train",
    )
    batches = _prefetch(stream, cursor)
    inflight = None  # the dispatched call whose `finite` flags are not read yet
    planned = run.step  # steps once every dispatched call has run

    def flush_log():  # right after a settle, so each log interval gets its own row
        if run.step >= schedule.num_steps or run.log_due:
            seconds = run.seconds()
            _log(writer, pbar, run.pending, run.step, stream.batch_size, seconds, headline)
            run.pending, run.log_due = [], False

    try:
        while True:
            call = None
            stopping = should_stop is not None and should_stop()
            if planned < schedule.num_steps and not stopping:
                k = min(K, schedule.num_steps - planned)
                first, batch = _next_call(batches, mesh, k, stacked=K > 1)
                state, metrics = step_jit(state, batch)
                call, planned = (first, k, metrics), planned + k
            if inflight is not None:  # read the previous call while this one runs
                state, restart = _settle(inflight, state, run, schedule, checkpoints, pbar)
                if restart:  # rolled back: drop the call just dispatched, re-read the stream
                    batches, planned, inflight = _restart(batches, stream, run)
                    continue
                flush_log()
            inflight = call
            if inflight is None:
                if stopping and run.step < schedule.num_steps:
                    flush_log()
                    raise Interrupted(run.step, _save_now(state, run, checkpoints, meta))
                break
            # the state of a step boundary is needed now (checkpoint / sample / hooks / end)
            everies = (schedule.ckpt_every, schedule.sample_every, *(e for e, _ in hooks))
            ends = planned == schedule.num_steps
            if ends or run.forced or any(_crossed(run.checked, planned, e) for e in everies):
                state, restart = _settle(inflight, state, run, schedule, checkpoints, pbar)
                inflight, planned = None, run.step
                if restart:
                    batches, planned, inflight = _restart(batches, stream, run)
                    continue
                flush_log()
                _at_boundary(state, run, schedule, checkpoints, meta, on_sample, hooks)
    finally:
        batches.close()
        pbar.close()
    return state, run.cursor


def _restart(batches, stream, run):
    """After a rollback: a fresh batch iterator from the restored cursor, nothing in flight.
    Returns `(batches, planned_step, inflight)`."""
    batches.close()
    return _prefetch(stream, run.cursor), run.step, None


@dataclass
class _Run:
    """Host-side progress of `fit`: confirmed steps, stream cursor, pending metrics."""

    step: int
    cursor: int
    t_last: float
    checked: int = 0  # boundaries up to this step have been handled (starts at `step`)
    forced: bool = False  # a call was skipped: check boundaries at the next call
    log_due: bool = False
    pending: list = field(default_factory=list)  # metrics of settled calls not yet logged

    def __post_init__(self):
        self.checked = self.step

    def seconds(self) -> float:
        now, last = time.perf_counter(), self.t_last
        self.t_last = now
        return now - last


def _settle(call, state, run: _Run, schedule, checkpoints, pbar):
    """Read a finished call's `finite` flags (blocking on it) and account for its steps.
    Returns `(state, restarted)`; a rollback returns the checkpoint's state."""
    first, k, metrics = call
    finite = np.ravel(np.asarray(metrics["finite"]))
    run.cursor = first + k
    if not finite.all():
        bad = run.step + int(np.argmin(finite))
        state, rolled_back = _on_nonfinite(schedule.nonfinite, bad, state, checkpoints)
        if rolled_back:  # continue from the checkpoint's state after the bad batch
            run.step = run.checked = int(state.step)
            return state, True
        run.forced = True
    before = run.step
    run.step += int(finite.sum())
    run.pending.append(metrics)
    pbar.update(run.step - before)
    run.log_due |= _crossed(before, run.step, schedule.log_every)
    return state, False


def _at_boundary(state, run: _Run, schedule, checkpoints, meta, on_sample, hooks):
    """Checkpoint, sample and run hooks for the boundaries in (run.checked, run.step]; `state`
    is the state at `run.step` (no later call has been dispatched)."""
    before, step, last = run.checked, run.step, run.step == schedule.num_steps
    if checkpoints is not None and (
        _crossed(before, step, schedule.ckpt_every) or (last and schedule.ckpt_every)
    ):
        checkpoints.save(step, state, {**(meta or {}), "cursor": run.cursor})
    if on_sample is not None and _crossed(before, step, schedule.sample_every):
        on_sample(state, step)
    for every, fn in hooks:
        if _crossed(before, step, every):
            fn(state, step)
    run.checked, run.forced = step, False


def _save_now(state, run: _Run, checkpoints, meta) -> str:
    """Checkpoint the state of `run.step` unless that step is saved already; says where."""
    if checkpoints is None:
        return "no checkpoints were configured"
    if checkpoints.latest_step() != run.step:
        checkpoints.save(run.step, state, {**(meta or {}), "cursor": run.cursor})
    return f"checkpoint {checkpoints.directory / str(run.step)}"


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
        shardings = jax.tree.map(lambda x: x.sharding, state)
        return jax.device_put(restored, shardings), True
    where = f" (last good checkpoint: step {checkpoints.latest_step()})" if checkpoints else ""
    raise NonFiniteError(f"non-finite loss or gradient at step {step}{where}")

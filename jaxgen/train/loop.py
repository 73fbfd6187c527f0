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
from jaxgen.train.logging import MetricsWriter, ProgressLines, progress_mode
from jaxgen.train.step import make_sharded_step


class NonFiniteError(FloatingPointError):
    """Training produced a NaN/Inf loss or gradient."""


class _GiveUp(Exception):  # noqa: N818 - internal signal from _settle to fit
    def __init__(self, step: int):
        self.step = step


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
    max_nonfinite: int = 3  # skip / rollback give up at this many failures in a row
    rollback_reseed: bool = False  # after a rollback, draw batches in a new order (see fit)


RESEED_STRIDE = 1_000_003  # seed offset of the k-th reseeded batch order: seed + k * stride


def reseeded(stream, k: int):
    """`stream` with its `k`-th reseeded batch order (k = 0: `stream` itself)."""
    return stream if k == 0 else stream.with_seed_offset(k * RESEED_STRIDE)


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


def _log(writer, pbar, pending, step, batch_size, seconds, headline, lines=None):
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
    if lines is not None:
        lines(step, shown, means["examples_per_s"])


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
    progress: bool | str | None = None,
    should_stop: Callable[[], bool] | None = None,
    reseeds: int = 0,
):
    """Train until `state.step == schedule.num_steps`. Returns `(state, cursor)`.

    `step_fn(state, batch) -> (state, metrics)` is pure; it is jitted here with shardings and a
    non-finite guard. `cursor` is the stream index of the next batch; it is saved with the
    state (with `meta`) so a resumed run sees the same batches. `on_sample(state, step)` is called
    every `sample_every` steps, and each `(every, fn)` of `hooks` as `fn(state, step)` every `every`
    steps (e.g. model selection). `progress` (see `progress_mode`): a bar, or a line per log
    interval, with the `headline` metrics. `state_sharding` lays the state out on the mesh
    (replicated when None; see `jaxgen.parallel.state_shardings`).

    `should_stop()` is polled before each dispatch: once it is true, no new call starts, the
    call in flight is finished, its step is checkpointed (when `checkpoints` is given) and
    `Interrupted` is raised (nothing trained is lost; a resume continues bit-identically).

    Non-finite steps (`schedule.nonfinite`): "skip" drops the step's update, "rollback" restores
    the newest checkpoint and continues after the bad batch, with the `k`-th reseeded batch
    order (`reseeded`) when `schedule.rollback_reseed`; `reseeds` is the number of earlier
    reseeds (saved in the checkpoints' meta as "reseeds"). Both give up with `NonFiniteError`
    after `schedule.max_nonfinite` failures without a finite step past the last one.
    """
    if schedule.nonfinite not in ("stop", "skip", "rollback"):
        raise ValueError(f"nonfinite={schedule.nonfinite!r}; choose stop, skip or rollback")
    K = schedule.steps_per_call
    shardings = replicated(mesh) if state_sharding is None else state_sharding
    step_jit = make_sharded_step(step_fn, mesh, state_sharding=shardings, steps_per_call=K)
    state = jax.device_put(state, shardings)
    run = _Run(int(state.step), cursor, time.perf_counter(), reseeds=reseeds)
    mode = progress_mode(progress)
    pbar = tqdm(
        total=schedule.num_steps,
        initial=run.step,
        disable=mode != "bar",
        dynamic_ncols=True,
        desc="train",
    )
    lines = ProgressLines(schedule.num_steps, run.step) if mode == "lines" else None
    meta = run.meta = {**(meta or {}), "reseeds": reseeds}
    stream = reseeded(stream, reseeds)
    batches = _prefetch(stream, cursor)
    inflight = None  # the dispatched call whose `finite` flags are not read yet
    planned = run.step  # steps once every dispatched call has run

    def flush_log():  # right after a settle, so each log interval gets its own row
        if run.step >= schedule.num_steps or run.log_due:
            seconds = run.seconds()
            _log(writer, pbar, run.pending, run.step, stream.batch_size, seconds, headline, lines)
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
                try:
                    state, restart = _settle(inflight, state, run, schedule, checkpoints, pbar)
                except _GiveUp as g:
                    _give_up(g.step, state, run, call, schedule, checkpoints)
                if restart:  # rolled back: drop the call just dispatched, re-read the stream
                    batches, planned, inflight, stream = _restart(batches, stream, run, schedule)
                    meta["reseeds"] = run.reseeds
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
                try:
                    state, restart = _settle(inflight, state, run, schedule, checkpoints, pbar)
                except _GiveUp as g:
                    _give_up(g.step, state, run, None, schedule, checkpoints)
                inflight, planned = None, run.step
                if restart:
                    batches, planned, inflight, stream = _restart(batches, stream, run, schedule)
                    meta["reseeds"] = run.reseeds
                    continue
                flush_log()
                _at_boundary(state, run, schedule, checkpoints, meta, on_sample, hooks)
    finally:
        batches.close()
        pbar.close()
    return state, run.cursor


def _restart(batches, stream, run, schedule):
    """After a rollback: a fresh batch iterator from the restored cursor (in a new order when
    `schedule.rollback_reseed`), nothing in flight. Returns
    `(batches, planned_step, inflight, stream)`."""
    batches.close()
    if schedule.rollback_reseed:
        stream = reseeded(stream, 1)  # one stride further than the order in use
        run.reseeds += 1
    return _prefetch(stream, run.cursor), run.step, None, stream


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
    reseeds: int = 0  # reseeded batch orders so far (rollback_reseed)
    failures: int = 0  # non-finite failures without a finite step past the last one
    failed_at: int = -1  # the step of the last failure
    nonfinite: str = ""  # the metrics that were non-finite at the last failure
    meta: dict = field(default_factory=dict)  # saved with each checkpoint

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
    bad = _count_failures(run, finite)
    if bad is not None:
        run.nonfinite = _nonfinite_names(metrics, finite)
        if schedule.nonfinite != "stop" and run.failures >= schedule.max_nonfinite:
            run.step += int(finite.sum())  # the guard kept the last finite state
            raise _GiveUp(bad)
        state, rolled_back = _on_nonfinite(
            schedule.nonfinite, bad, state, checkpoints, run.nonfinite
        )
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


def _count_failures(run: _Run, finite) -> int | None:
    """Count a call's non-finite steps, in order, into `run.failures` (reset by a finite step
    past the last failure: after a rollback, steps redone below it do not reset). Returns the
    first failing step of the call, or None."""
    step, first_bad = run.step, None
    for ok in finite:
        if ok:
            step += 1
            if step > run.failed_at:
                run.failures = 0
        else:
            run.failures += 1
            run.failed_at = step
            first_bad = step if first_bad is None else first_bad
    return first_bad


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


def _give_up(bad: int, state, run: _Run, newer, schedule, checkpoints):
    """Raise `NonFiniteError` after saving the last finite state: `state` also holds the call
    dispatched after the failing one (`newer`, or None), whose finite steps count too (the
    guard made its non-finite ones no-ops)."""
    if newer is not None:
        first, k, metrics = newer
        run.step += int(np.sum(np.asarray(metrics["finite"])))
        run.cursor = first + k
    saved = _save_now(state, run, checkpoints, run.meta)
    raise NonFiniteError(
        f"gave up at step {bad}{run.nonfinite}: {run.failures} non-finite steps without "
        "progress past them "
        f"(train.nonfinite={schedule.nonfinite}, train.max_nonfinite={schedule.max_nonfinite}); "
        f"the last finite state is saved as {saved}; lower the learning rate or check the data"
    )


def _nonfinite_names(metrics, finite) -> str:
    """ " (non-finite: a, b)": the metrics that were NaN / Inf at a call's first failing step,
    which name the network (e.g. `grad_norm_flow`, `log_det`); "" when none is reported."""
    first = int(np.argmin(finite))
    names = []
    for name, value in sorted(metrics.items()):
        v = np.ravel(np.asarray(value))
        if name == "finite" or not np.issubdtype(v.dtype, np.floating):
            continue
        v = v[first] if v.size == finite.size else v
        if not np.all(np.isfinite(v)):
            names.append(name)
    return f" (non-finite: {', '.join(names)})" if names else ""


def _on_nonfinite(policy, step, state, checkpoints, what: str = ""):
    """Returns `(state, rolled_back)` or raises `NonFiniteError`; `what` names the metrics."""
    if policy == "skip":
        print(f"warning: non-finite loss or gradient at step {step}{what}; batch skipped")
        return state, False
    if policy == "rollback" and checkpoints is not None and checkpoints.latest_step() is not None:
        restored, _ = checkpoints.restore(state)
        print(
            f"warning: non-finite loss or gradient at step {step}{what}; rolled back to step "
            f"{int(restored.step)} and skipping the batch"
        )
        shardings = jax.tree.map(lambda x: x.sharding, state)
        return jax.device_put(restored, shardings), True
    where = f" (last good checkpoint: step {checkpoints.latest_step()})" if checkpoints else ""
    raise NonFiniteError(f"non-finite loss or gradient at step {step}{what}{where}")

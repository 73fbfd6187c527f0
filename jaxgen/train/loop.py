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


class _GiveUp(Exception):  # noqa: N818 - internal signal from _settle to _Loop.settle
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
    rollback_reseed: bool = True  # after a rollback, new batch order and step keys (see fit)


RESEED_STRIDE = 1_000_003  # seed offset of the k-th reseeded batch order: seed + k * stride


def reseeded(stream, k: int):
    """`stream` with its `k`-th reseeded batch order (k = 0: `stream` itself)."""
    return stream if k == 0 else stream.with_seed_offset(k * RESEED_STRIDE)


def reseed_key(state, k: int):
    """`state` with its random key (the `key` field every recipe's state has; the step keys are
    `fold_in(key, step)`) folded with `k`, the reseed count: after the k-th rollback the steps
    redone draw other noise, so a divergence that came from one unlucky draw is not replayed
    (peers' experience: JEM's issue #4). The folded key is saved with the next checkpoint, so a
    resume continues with it. A state without a `key` field is returned as it is."""
    key = getattr(state, "key", None)
    if key is None or not hasattr(state, "replace"):
        return state
    return state.replace(key=jax.jit(jax.random.fold_in, out_shardings=key.sharding)(key, k))


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
    order (`reseeded`) and the state's key folded with k (`reseed_key`) when
    `schedule.rollback_reseed` (the default); `reseeds` is the number of earlier
    reseeds (saved in the checkpoints' meta as "reseeds"). Both give up with `NonFiniteError`
    after `schedule.max_nonfinite` failures without a finite step past the last one.
    """
    if schedule.nonfinite not in ("stop", "skip", "rollback"):
        raise ValueError(f"nonfinite={schedule.nonfinite!r}; choose stop, skip or rollback")
    shardings = replicated(mesh) if state_sharding is None else state_sharding
    step_jit = make_sharded_step(
        step_fn, mesh, state_sharding=shardings, steps_per_call=schedule.steps_per_call
    )
    state = jax.device_put(state, shardings)
    run = _Run(int(state.step), cursor, time.perf_counter(), reseeds=reseeds)
    run.meta = {**(meta or {}), "reseeds": reseeds}
    stream = reseeded(stream, reseeds)
    feed = _Feed(stream, _prefetch(stream, cursor), run.step)
    display = _Display.open(schedule.num_steps, run.step, progress, headline, writer)
    loop = _Loop(step_jit, mesh, schedule, run, feed, display, checkpoints, on_sample, hooks)
    try:
        state = loop.train(state, should_stop)
    finally:
        loop.close()
    return state, run.cursor


@dataclass
class _Feed:
    """The batches `fit` reads: `stream` (in its reseeded order), the iterator `batches` over it
    from the next cursor, and `planned`, the step count once every dispatched call has run."""

    stream: object
    batches: object
    planned: int

    def next_call(self, mesh, schedule: TrainPlan):
        """`(first_cursor, k, batch)` of the next call's `k` batches (at most
        `schedule.steps_per_call`, none past `schedule.num_steps`); counts them as planned."""
        K = schedule.steps_per_call
        k = min(K, schedule.num_steps - self.planned)
        first, batch = _next_call(self.batches, mesh, k, stacked=K > 1)
        self.planned += k
        return first, k, batch

    def restart(self, run: "_Run", schedule: TrainPlan) -> None:
        """After a rollback: a fresh batch iterator from the restored cursor (in a new order when
        `schedule.rollback_reseed`, recorded in `run.reseeds` and the checkpoints' meta)."""
        self.batches.close()
        if schedule.rollback_reseed:
            self.stream = reseeded(self.stream, 1)  # one stride further than the order in use
            run.reseeds += 1
        run.meta["reseeds"] = run.reseeds
        self.batches, self.planned = _prefetch(self.stream, run.cursor), run.step

    def close(self) -> None:
        self.batches.close()


@dataclass
class _Display:
    """Where `fit` reports progress: the bar `pbar` (disabled unless the mode is "bar"), the
    `lines` (mode "lines", else None), the metrics `writer` and the `headline` metrics."""

    pbar: tqdm
    lines: ProgressLines | None
    writer: MetricsWriter | None
    headline: tuple[str, ...]

    @classmethod
    def open(cls, num_steps: int, step: int, progress, headline, writer) -> "_Display":
        """The display of `progress_mode(progress)` for a run at `step` of `num_steps`."""
        mode = progress_mode(progress)
        pbar = tqdm(
            total=num_steps, initial=step, disable=mode != "bar", dynamic_ncols=True, desc="train"
        )
        lines = ProgressLines(num_steps, step) if mode == "lines" else None
        return cls(pbar, lines, writer, headline)


@dataclass
class _Loop:
    """One `fit`: the jitted step, the mesh and plan, the host-side progress `run`, the batch
    `feed`, the `display`, and what happens at step boundaries (checkpoints, samples, hooks)."""

    step_jit: Callable
    mesh: object
    schedule: TrainPlan
    run: "_Run"
    feed: _Feed
    display: _Display
    checkpoints: Checkpoints | None
    on_sample: Callable | None
    hooks: tuple[tuple[int, Callable], ...]

    def train(self, state, should_stop):
        """Dispatch calls until `schedule.num_steps`, each call's flags read while the next one
        runs; settle at once where a step boundary needs its exact state. Returns the state."""
        run, num_steps = self.run, self.schedule.num_steps
        inflight = None  # the dispatched call whose `finite` flags are not read yet
        while True:
            call = None
            stopping = should_stop is not None and should_stop()
            if self.feed.planned < num_steps and not stopping:
                first, k, batch = self.feed.next_call(self.mesh, self.schedule)
                state, metrics = self.step_jit(state, batch)
                call = (first, k, metrics)
            if inflight is not None:  # read the previous call while this one runs
                state, restarted = self.settle(inflight, state, newer=call)
                if restarted:  # rolled back: drop the call just dispatched, re-read the stream
                    inflight = None
                    continue
                self.flush_log()
            inflight = call
            if inflight is None:
                if stopping and run.step < num_steps:
                    self.flush_log()
                    raise Interrupted(run.step, _save_now(state, run, self.checkpoints, run.meta))
                return state
            if self.boundary_due():  # the state of a step boundary is needed now
                state, restarted = self.settle(inflight, state, newer=None)
                inflight = None
                if restarted:
                    continue
                self.feed.planned = run.step
                self.flush_log()
                self.at_boundary(state)

    def settle(self, call, state, *, newer):
        """Read `call`'s flags (`_settle`): give up with `NonFiniteError` after too many
        failures (`newer`: the call dispatched after it, or None), or, after a rollback, restart
        the feed from the restored cursor. Returns `(state, restarted)`."""
        try:
            state, restarted = _settle(
                call, state, self.run, self.schedule, self.checkpoints, self.display.pbar
            )
        except _GiveUp as g:
            _give_up(g.step, state, self.run, newer, self.schedule, self.checkpoints)
        if restarted:
            self.feed.restart(self.run, self.schedule)
            if self.schedule.rollback_reseed:
                state = reseed_key(state, self.run.reseeds)
        return state, restarted

    def boundary_due(self) -> bool:
        """Whether the dispatched steps end the run, follow a skipped call, or cross a checkpoint,
        sample or hook interval."""
        s, run, planned = self.schedule, self.run, self.feed.planned
        everies = (s.ckpt_every, s.sample_every, *(e for e, _ in self.hooks))
        ends = planned == s.num_steps
        return ends or run.forced or any(_crossed(run.checked, planned, e) for e in everies)

    def flush_log(self) -> None:
        """Log the pending metrics if the run ended or crossed a log interval (right after a
        settle, so each log interval gets its own row)."""
        run, d = self.run, self.display
        if run.step >= self.schedule.num_steps or run.log_due:
            seconds = run.seconds()
            _log(
                d.writer,
                d.pbar,
                run.pending,
                run.step,
                self.feed.stream.batch_size,
                seconds,
                d.headline,
                d.lines,
            )
            run.pending, run.log_due = [], False

    def at_boundary(self, state) -> None:
        """Checkpoint, sample and run the hooks due at the settled step (`_at_boundary`)."""
        run = self.run
        s = self.schedule
        _at_boundary(state, run, s, self.checkpoints, run.meta, self.on_sample, self.hooks)

    def close(self) -> None:
        self.feed.close()
        self.display.pbar.close()


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

"""Train a method: `python -m experiments.train --config CONFIG --workdir DIR [--config.a.b=v]`.

Resumes from the newest readable checkpoint in `DIR/checkpoints` after checking that the run
is the same one (`experiments.resume`); logs to `DIR/metrics.jsonl` and TensorBoard (`DIR/tb`);
writes sample figures to `DIR/samples/`; holds `DIR/.lock` while it runs. SIGTERM (preemption)
or Ctrl-C finishes the step in flight, checkpoints it, prints one line and exits with 128 + the
signal number (143 for SIGTERM, 130 for SIGINT); the same command resumes. Multi-host: every
process runs the same command with `--config.train.multihost=True` (see docs/operating.md).

From Python: `train(config_dict, workdir)` returns the final state.
"""

import sys

if __name__ == "__main__":  # a multi-host launch's parent imports no JAX (supervise.py)
    from experiments.supervise import launch_without_jax

    launch_without_jax(sys.argv, "experiments.train")

import contextlib
import itertools
import os
import signal
import socket
import time
from functools import partial

import jax
from absl import flags

from experiments import cli, supervise
from experiments.experiment import Experiment
from experiments.resume import check_resume, recorded_identity, run_identity
from experiments.sampling import sample_figure
from experiments.selection import selection_hook
from jaxgen.methods.common import check_inputs
from jaxgen.parallel import agreed, any_process, is_primary, preemption_point
from jaxgen.train.checkpoint import UnreadableCheckpointError
from jaxgen.train.lock import WorkdirLock, WorkdirLockedError, describe_holder, lock_holder
from jaxgen.train.logging import MetricsWriter
from jaxgen.train.loop import Interrupted, TrainPlan, fit


@contextlib.contextmanager
def stop_on_signals(signums=(signal.SIGTERM, signal.SIGINT), *, multihost: bool = False):
    """Within the block, SIGTERM (preemption) and SIGINT (Ctrl-C) only set a flag; yields
    `received() -> signal number or None`. A second SIGINT interrupts at once. `multihost`:
    SIGTERM is left to JAX's preemption notifier (every process then stops at one step) and
    SIGINT is turned into a SIGTERM to this process."""
    got: list[int] = []
    if multihost:
        signums = tuple(s for s in signums if s != signal.SIGTERM)

    def handler(signum, frame):
        if got and signum == signal.SIGINT:
            raise KeyboardInterrupt
        got.append(signum)
        if multihost:
            os.kill(os.getpid(), signal.SIGTERM)

    old = {s: signal.signal(s, handler) for s in signums}
    try:
        yield lambda: got[0] if got else None
    finally:
        for s, h in old.items():
            signal.signal(s, h)


def train(config, workdir: str, *, progress=None, received=None):
    """Train (or resume) the run in `workdir` (`config`: an experiment ConfigDict or its
    `Experiment`). Returns the final state. `received()` (see `stop_on_signals`) is polled
    between steps: once it returns a signal, the step in flight finishes, is checkpointed, and
    `jaxgen.train.loop.Interrupted` is raised; multi-host runs stop at JAX's preemption sync
    point instead. `progress`: see `jaxgen.train.loop.progress_mode` (default
    `train.progress`)."""
    c = config.c if isinstance(config, Experiment) else config
    with contextlib.ExitStack() as held:
        joining = c.train.multihost and not jax.distributed.is_initialized()
        if joining:  # before the cluster is joined: a duplicate launch never reaches it
            held.callback(_process_lock(workdir, c.train).release)
        exp = cli.as_experiment(config)  # a multi-host config joins its cluster here
        exp.require_base_run()  # a stage without its base run: one ConfigError, before any work
        if not (joining and c.train.coordinator):  # else process 0 holds `.lock` already
            held.enter_context(_workdir_lock(workdir))
        return _train_locked(exp, workdir, progress, received)


def process_lock_name(t) -> str:
    """The lock file a process of a multi-host run (`train` section `t`) holds before it joins
    the cluster: process 0 holds the workdir's `.lock`, process k `.lock.process{k}`, and a
    process of an auto-detected cluster (index unknown before joining) `.lock.host-{hostname}`.
    A second launch of the same job finds its own process's lock held and stops at once,
    before it could reach the live job's coordinator (which would abort the live job)."""
    if not t.coordinator:
        return f".lock.host-{socket.gethostname()}"
    return ".lock" if t.process_id == 0 else f".lock.process{t.process_id}"


def _process_lock(workdir, t) -> WorkdirLock:
    """The lock a multi-host process (`train` section `t`) takes before joining, taken; process
    0's records the cluster's address. Process k > 0 also stops when the workdir's `.lock` is
    held by something other than a process 0 of this cluster (a one-process trainer, another
    job), which process 0 would stop at, leaving k waiting for it."""
    say = print if t.process_id <= 0 else (lambda *a, **k: None)  # process 0 prints
    lock = WorkdirLock(workdir, name=process_lock_name(t), info={"cluster": t.coordinator}, say=say)
    lock.acquire()
    holder = lock_holder(workdir) if t.coordinator and t.process_id > 0 else None
    if holder is not None and holder.get("cluster") != t.coordinator:
        lock.release()
        raise WorkdirLockedError(
            f"{workdir} is in use by {describe_holder(holder)}, not by process 0 of this run "
            f"({t.coordinator}); stop that run or use another --workdir"
        )
    return lock


@contextlib.contextmanager
def _workdir_lock(workdir):
    """Process 0 holds the workdir's lock; on a multi-host run every process learns whether it
    got it, so a refused run stops on every host instead of leaving the others waiting."""
    lock, error = WorkdirLock(workdir), None
    if is_primary():
        try:
            lock.acquire()
        except (WorkdirLockedError, OSError) as e:
            error = e
    if any_process(error is not None) and error is None:
        error = WorkdirLockedError(f"{workdir} could not be locked (see process 0)")
    if error is not None:
        raise error
    try:
        yield
    finally:
        if is_primary():
            lock.release()


def _train_locked(exp, workdir, progress, received):
    c, primary = exp.c, is_primary()
    say = print if primary else (lambda *a, **k: None)
    paths = cli.workdir_paths(workdir)
    store = exp.checkpoints(paths["ckpt"], workdir, say=say, max_to_keep=c.train.keep)
    try:
        resumed = _resume(exp, store, workdir, say) if store.latest_step() is not None else None
        if resumed is not None and int(resumed[0].step) >= c.train.num_steps:
            say(
                f"the run in {workdir} is finished: its newest checkpoint is step "
                f"{int(resumed[0].step)} (train.num_steps={c.train.num_steps}); raise "
                "--config.train.num_steps to train longer"
            )
            return resumed[0]
        return _fit(exp, store, workdir, resumed, progress, received, say)
    finally:
        store.close()


def _resume(exp, store, workdir, say):
    """`(state, shardings, meta)` of the newest readable checkpoint, once the run's identity
    checks out (nothing is written before)."""
    try:
        meta = store.read_meta()
    except UnreadableCheckpointError:  # restore_newest moves it aside; check config.json
        meta = {}
    check_resume(exp.c, recorded_identity(meta, workdir), str(store.directory))
    abstract = exp.abstract_state(workdir)
    shardings = exp.state_sharding(exp.mesh(), abstract)
    state, meta = store.restore_newest(jax.tree.map(_placed, abstract, shardings), say=say)
    return state, shardings, meta


def _fit(exp, store, workdir, resumed, progress, received, say):
    """Open the data, make the new state (`_new_state`) when `resumed` (`_resume`) is None,
    record the config, then train to `train.num_steps`. Returns the final state."""
    c = exp.c
    stream, mesh = agreed(exp.stream, "opening the data"), exp.mesh()
    if resumed is not None:  # no init, no data fit, no base run needed
        state, shardings, meta = resumed
        cursor, reseeds = int(meta["cursor"]), int(meta.get("reseeds", 0))
    else:  # a base run that does not check out stops this before config.json is written
        state, shardings = _new_state(exp, stream, mesh, workdir, say)
        cursor, reseeds = 0, 0
    write = is_primary()  # the config record, once the data opened and the run checked out
    agreed(lambda: cli.save_config(c, workdir) if write else None, "writing config.json")
    say(_start_line(exp, workdir, mesh, int(state.step), store if resumed else None))
    at = dict(cursor=cursor, reseeds=reseeds, progress=progress, received=received)
    state, seconds = _run_fit(exp, state, stream, mesh, shardings, store, workdir, **at)
    last = store.latest_step()
    saved = f"; checkpoint {store.directory / str(last)}" if last is not None else ""
    say(f"done: step {int(state.step)} in {seconds:.1f} s{saved}")
    return state


def _new_state(exp, stream, mesh, workdir, say):
    """`(state, shardings)` of a new run: the base run restored (its config and the checkpoint
    step used are recorded in `workdir`), the first batch checked, the data fit made and
    written, then the recipe's `init`."""
    c, write = exp.c, is_primary()
    base, base_state = exp.restore_base()
    if base is not None:
        step = int(base_state.step)
        say(f"base: {base.c.recipe} run {exp.base_workdir}, checkpoint step {step}")
        if write:
            exp.save_base_config(base, workdir, step=step)
    first = stream.batch(0)
    image, who = len(exp.shape) == 3, f"train ({c.data.name})"
    agreed(lambda: check_inputs(first, image=image, who=who), "checking the first batch")
    example = exp.example_batch(first)
    fitted = exp.fit_data(stream)
    state = exp.init(example, fitted=fitted, base=base_state)
    agreed(lambda: exp.save_fit(workdir, fitted) if write else None, "writing the data fit")
    return state, exp.state_sharding(mesh, state)


def _plan(c) -> TrainPlan:
    """The `TrainPlan` of the config's `train` section."""
    t = c.train
    return TrainPlan(
        t.num_steps,
        t.log_every,
        t.ckpt_every,
        t.sample_every,
        t.nonfinite,
        t.steps_per_call,
        t.max_nonfinite,
        t.rollback_reseed,
    )


def _run_fit(
    exp, state, stream, mesh, shardings, store, workdir, *, cursor, reseeds, progress, received
):
    """`fit` from `state` at stream position `cursor` (after `reseeds` reseeds) with the run's
    plan, checkpoints, metrics writer (process 0), model selection hook and sample figures; the
    writer is closed however training ends (an error closing it never replaces the error that
    stopped the run). Returns the final state and the seconds from the start of training."""
    c = exp.c
    writer = MetricsWriter(workdir) if is_primary() else None
    hooks = tuple(h for h in [selection_hook(exp, workdir)] if h)
    t0 = time.perf_counter()
    try:
        state, _ = fit(
            partial(exp.recipe.train_step, config=exp.rc),
            state,
            stream,
            mesh,
            _plan(c),
            state_sharding=shardings,
            headline=exp.caps.headline,
            checkpoints=store,
            meta={"recipe": c.recipe, "run": run_identity(c)},
            writer=writer,
            on_sample=sample_figure(exp, workdir),
            hooks=hooks,
            progress=_progress(progress, c) if is_primary() else "off",
            should_stop=_stop_poll(received),
            cursor=cursor,
            reseeds=reseeds,
        )
    except BaseException:
        if writer is not None:  # a full disk must not replace the error that stopped the run
            with contextlib.suppress(OSError):
                writer.close()
        raise
    if writer is not None:
        writer.close()
    return state, time.perf_counter() - t0


def _progress(progress, c):
    return c.train.progress if progress is None else progress


def _start_line(exp, workdir, mesh, start, store) -> str:
    c = exp.c
    hosts = f" on {jax.process_count()} processes" if jax.process_count() > 1 else ""
    where = f"resuming from {store.directory / str(start)}" if store else "starting"
    return (
        f"train: {c.recipe} on {c.data.name} (batch {c.data.batch_size}), {mesh.size} "
        f"device{'s' if mesh.size > 1 else ''}"
        f"{hosts}; {where}, step {start} of {c.train.num_steps}; workdir {workdir}"
    )


def _stop_poll(received):
    """`should_stop` for `fit`: JAX's preemption sync point on multi-host runs (the same poll
    sequence on every process), else the signal flag."""
    if jax.process_count() > 1:
        polls = itertools.count()
        return lambda: preemption_point(next(polls))
    if received is None:
        return None
    return lambda: received() is not None


def _placed(abstract, sharding):
    return jax.ShapeDtypeStruct(abstract.shape, abstract.dtype, sharding=sharding)


def main(argv):
    supervise.adopt_stderr()

    def run():
        c = cli.parse_config(argv)
        workdir = flags.FLAGS.workdir
        if workdir is None:
            raise cli.ConfigError("--workdir is required")
        if c.train.multihost and not supervise.supervised():
            # the run goes on in a child process whose C++ runtime output goes to a log file
            sys.exit(supervise.run_supervised(argv, "experiments.train", workdir, c.train))
        with stop_on_signals(multihost=c.train.multihost) as received:
            try:
                train(c, workdir, received=received)
            except Interrupted as e:  # preempted or Ctrl-C: saved; exit 128 + signal number
                signum = received() or signal.SIGTERM  # multi-host: JAX caught a SIGTERM
                if is_primary():
                    name = signal.Signals(signum).name
                    print(f"{name}: {e}; run the same command to resume", file=sys.stderr)
                sys.exit(128 + signum)

    cli.run_main(run)


if __name__ == "__main__":
    cli.define_common_flags()
    main(sys.argv)

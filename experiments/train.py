"""Train a method: `python -m experiments.train --config CONFIG --workdir DIR [--config.a.b=v]`.

Resumes from the newest checkpoint in `DIR/checkpoints`; logs to `DIR/metrics.jsonl` and
TensorBoard (`DIR/tb`); writes sample figures to `DIR/samples/`. SIGTERM (preemption) or Ctrl-C
finishes the step in flight, checkpoints it, prints one line and exits with 128 + the signal
number (143 for SIGTERM, 130 for SIGINT); the same command resumes.

From Python: `train(config_dict, workdir)` returns the final state.
"""

import contextlib
import signal
import sys
from functools import partial

import jax
from absl import flags

from experiments import cli
from experiments.sampling import sample_figure
from experiments.selection import selection_hook
from jaxgen.parallel import initialize_distributed
from jaxgen.train.checkpoint import Checkpoints
from jaxgen.train.logging import MetricsWriter
from jaxgen.train.loop import Interrupted, TrainPlan, fit


@contextlib.contextmanager
def stop_on_signals(signums=(signal.SIGTERM, signal.SIGINT)):
    """Within the block, SIGTERM (preemption) and SIGINT (Ctrl-C) only set a flag; yields
    `received() -> signal number or None`. A second SIGINT interrupts at once."""
    got: list[int] = []

    def handler(signum, frame):
        if got and signum == signal.SIGINT:
            raise KeyboardInterrupt
        got.append(signum)

    old = {s: signal.signal(s, handler) for s in signums}
    try:
        yield lambda: got[0] if got else None
    finally:
        for s, h in old.items():
            signal.signal(s, h)


def train(config, workdir: str, *, progress: bool | None = None, received=None):
    """Train (or resume) the run in `workdir` (`config`: an experiment ConfigDict or its
    `Experiment`). Returns the final state. `received()` (see `stop_on_signals`) is polled
    between steps: once it returns a signal, the step in flight finishes, is checkpointed, and
    `jaxgen.train.loop.Interrupted` is raised."""
    exp = cli.as_experiment(config)
    c = exp.c
    if c.train.multihost:
        initialize_distributed()
    paths = cli.workdir_paths(workdir)
    cli.save_config(c, workdir)
    stream = exp.stream()
    mesh = exp.mesh()
    store = Checkpoints(paths["ckpt"], max_to_keep=c.train.keep)
    cursor = 0
    if store.latest_step() is not None:  # resume: no init, no data fit, no base run needed
        abstract = exp.abstract_state(workdir)
        shardings = exp.state_sharding(mesh, abstract)
        state, meta = store.restore(jax.tree.map(_placed, abstract, shardings))
        cursor = int(meta["cursor"])
        print(f"resuming from {paths['ckpt']} at step {int(state.step)}")
    else:
        base, base_state = exp.restore_base()
        if base is not None:
            exp.save_base_config(base, workdir)
        example = exp.example_batch(stream.batch(0))
        state = exp.init(example, fitted=exp.fit_data(stream), base=base_state)
        shardings = exp.state_sharding(mesh, state)
    plan = TrainPlan(
        c.train.num_steps,
        c.train.log_every,
        c.train.ckpt_every,
        c.train.sample_every,
        c.train.nonfinite,
        c.train.steps_per_call,
    )
    writer = MetricsWriter(workdir)
    hooks = tuple(h for h in [selection_hook(exp, workdir)] if h)
    try:
        state, _ = fit(
            partial(exp.recipe.train_step, config=exp.rc),
            state,
            stream,
            mesh,
            plan,
            state_sharding=shardings,
            headline=exp.caps.headline,
            cursor=cursor,
            checkpoints=store,
            meta={"recipe": c.recipe},
            writer=writer,
            on_sample=sample_figure(exp, workdir),
            hooks=hooks,
            progress=progress,
            should_stop=None if received is None else (lambda: received() is not None),
        )
    finally:
        writer.close()
        store.close()
    return state


def _placed(abstract, sharding):
    return jax.ShapeDtypeStruct(abstract.shape, abstract.dtype, sharding=sharding)


def main(argv):
    def run():
        exp = cli.parse_flags(argv)
        if flags.FLAGS.workdir is None:
            raise cli.ConfigError("--workdir is required")
        with stop_on_signals() as received:
            try:
                train(exp, flags.FLAGS.workdir, received=received)
            except Interrupted as e:  # preempted or Ctrl-C: saved; exit 128 + signal number
                name = signal.Signals(received()).name
                print(f"{name}: {e}; run the same command to resume", file=sys.stderr)
                sys.exit(128 + received())

    cli.run_main(run)


if __name__ == "__main__":
    cli.define_common_flags()
    main(sys.argv)

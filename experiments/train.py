"""Train a method: `python -m experiments.train --config CONFIG --workdir DIR [--config.a.b=v]`.

Resumes from the newest checkpoint in `DIR/checkpoints`; logs to `DIR/metrics.jsonl` and
TensorBoard (`DIR/tb`); writes sample figures to `DIR/samples/`.

From Python: `train(config_dict, workdir)` returns the final state.
"""

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
from jaxgen.train.loop import TrainPlan, fit


def train(config, workdir: str, *, progress: bool | None = None):
    """Train (or resume) the run in `workdir` (`config`: an experiment ConfigDict or its
    `Experiment`). Returns the final state."""
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
        train(exp, flags.FLAGS.workdir)

    cli.run_main(run)


if __name__ == "__main__":
    cli.define_common_flags()
    main(sys.argv)

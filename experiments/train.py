"""Train a method: `python -m experiments.train --config CONFIG --workdir DIR [--config.a.b=v]`.

Resumes from the newest checkpoint in `DIR/checkpoints`; logs to `DIR/metrics.jsonl` and
TensorBoard (`DIR/tb`); writes sample figures to `DIR/samples/`.
"""

import sys
from functools import partial

import jax
import numpy as np
from absl import flags

from experiments import cli
from experiments.sampling import sample_figure
from experiments.selection import selection_hook
from jaxgen.data import sample_toy2d
from jaxgen.data.pipeline import to_unit_range
from jaxgen.methods import get_recipe
from jaxgen.parallel import initialize_distributed, make_mesh
from jaxgen.train.checkpoint import CheckpointError, Checkpoints
from jaxgen.train.logging import MetricsWriter
from jaxgen.train.loop import NonFiniteError, Schedule, fit


def train(c, workdir: str, *, progress: bool | None = None):
    """Train (or resume) the run in `workdir`. Returns the final state."""
    if c.train.multihost:
        initialize_distributed()
    recipe, rc = get_recipe(c.recipe), cli.recipe_config(c)
    paths = cli.workdir_paths(workdir)
    cli.save_config(c, workdir)
    stream = cli.stream_for(c)
    first = stream.batch(0)
    state = recipe.init(rc, first, key=jax.random.PRNGKey(c.seed), **_init_extras(rc, stream))
    store = Checkpoints(paths["ckpt"], max_to_keep=c.train.keep)
    cursor = 0
    if store.latest_step() is not None:
        state, meta = store.restore(state)
        cursor = int(meta["cursor"])
        print(f"resuming from {paths['ckpt']} at step {int(state.step)}")
    schedule = Schedule(
        c.train.num_steps,
        c.train.log_every,
        c.train.ckpt_every,
        c.train.sample_every,
        c.train.nonfinite,
        c.train.steps_per_call,
    )
    writer = MetricsWriter(workdir)
    try:
        state, _ = fit(
            partial(recipe.train_step, config=rc),
            state,
            stream,
            make_mesh(c.train.num_devices or None),
            schedule,
            cursor=cursor,
            checkpoints=store,
            meta={"recipe": c.recipe},
            writer=writer,
            on_sample=sample_figure(c, workdir, first["x"].shape[1:]),
            hooks=tuple(h for h in [selection_hook(c, workdir, first["x"].shape[1:])] if h),
            progress=progress,
        )
    finally:
        writer.close()
        store.close()
    return state


def _init_extras(rc, stream) -> dict:
    """A data-dependent prior (FDRL's `ddp`) is fitted on the whole training set, unaugmented
    (spec fdrl.md §1.8); for 2-D sets, on 100k draws."""
    if getattr(rc, "prior", None) != "ddp":
        return {}
    if stream.source is None:
        return {"prior_data": np.asarray(sample_toy2d(stream.name, 100_000, jax.random.PRNGKey(1)))}
    return {"prior_data": to_unit_range(stream.source.images, stream.source.max_value)}


def main(argv):
    c = cli.parse_flags(argv)
    if flags.FLAGS.workdir is None:
        cli._die("--workdir is required")
    try:
        train(c, flags.FLAGS.workdir)
    except (CheckpointError, NonFiniteError) as e:
        cli._die(str(e))


if __name__ == "__main__":
    cli.define_common_flags()
    main(sys.argv)

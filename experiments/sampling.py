"""The sample figures written during training (scatter plots or image grids)."""

import jax
import numpy as np

from experiments.experiment import Experiment, workdir_paths
from jaxgen.data import sample_toy2d
from jaxgen.parallel import is_primary
from jaxgen.train.figures import save_image_grid, save_scatter


def sample_figure(exp: Experiment, workdir: str):
    """A callback `(state, step)` writing `samples/step_XXXXXXX.png` (scatter or image grid);
    the sampler is compiled on the first call and reused after."""
    out = workdir_paths(workdir)["samples"]
    reference = None
    if exp.toy2d:
        key = jax.random.PRNGKey(10_000 + exp.c.seed)
        reference = np.asarray(sample_toy2d(exp.c.data.name, 2000, key))

    def callback(state, step: int):
        n = 1000 if reference is not None else exp.c.train.get("sample_grid", 64)
        x, st = exp.draw(state, n, seed=exp.c.seed + 1)  # every process draws (collective)
        if not is_primary():
            return
        path = out / f"step_{step:07d}.png"
        if reference is not None:
            lim = float(np.abs(reference).max()) * 1.3
            nfe = f", NFE {st['nfe_mean']:.0f}" if "nfe_mean" in st else ""
            save_scatter(path, x, reference, title=f"step {step}{nfe}", bounds=(-lim, lim))
        else:
            save_image_grid(path, x, scale=max(1, 64 // exp.shape[0]))

    return callback

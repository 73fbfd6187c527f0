"""Sampling a trained state in chunks, and the figures written during training."""

import inspect
from functools import partial

import jax
import numpy as np

from experiments import cli
from jaxgen.data import sample_toy2d
from jaxgen.methods import get_recipe
from jaxgen.parallel import batch_sharding, make_mesh, replicated
from jaxgen.train.figures import save_image_grid, save_scatter


def draw(c, state, num: int, *, seed: int, shape, use_ema: bool = True):
    """`num` samples as float32 numpy `[num, ...]`, and the sampler's stats (mean/max per key)."""
    recipe, rc = get_recipe(c.recipe), cli.recipe_config(c)
    chunk = min(num, c.eval.batch_size)
    kwargs = dict(config=rc, shape=shape, use_ema=use_ema)
    n_dev = jax.device_count()
    can_shard = "sharding" in inspect.signature(recipe.sample).parameters
    if can_shard and n_dev > 1 and chunk % n_dev == 0:  # split each chunk over all devices
        mesh = make_mesh()
        state = jax.device_put(state, replicated(mesh))
        kwargs["sharding"] = batch_sharding(mesh)
    fn = jax.jit(partial(recipe.sample, **kwargs), static_argnums=1)
    outs, stats = [], []
    for i, start in enumerate(range(0, num, chunk)):
        x, st = fn(state, chunk, key=jax.random.fold_in(jax.random.PRNGKey(seed), i))
        outs.append(np.asarray(x)[: num - start])
        stats.append(jax.device_get(st))
    failed = sum(int(np.size(s["success"]) - np.sum(s["success"])) for s in stats if "success" in s)
    if failed:
        raise RuntimeError(
            f"the ODE solver stopped early (max_steps reached) on {failed} solve(s); raise "
            "config.sample.max_steps or the tolerances (sample.rtol/atol)"
        )
    summary = {}
    for k in stats[0]:
        v = np.concatenate([np.ravel(s[k]) for s in stats]).astype(np.float64)
        summary[f"{k}_mean"], summary[f"{k}_max"] = float(v.mean()), float(v.max())
    return np.concatenate(outs).astype(np.float32), summary


def sample_figure(c, workdir: str, shape):
    """A callback `(state, step)` writing `samples/step_XXXXXXX.png` (scatter or image grid)."""
    out = cli.workdir_paths(workdir)["samples"]
    reference = None
    if cli.is_toy2d(c):
        reference = np.asarray(sample_toy2d(c.data.name, 2000, jax.random.PRNGKey(10_000 + c.seed)))

    def callback(state, step: int):
        n = 1000 if reference is not None else 64
        x, st = draw(c, state, n, seed=c.seed + 1, shape=shape)
        path = out / f"step_{step:07d}.png"
        if reference is not None:
            lim = float(np.abs(reference).max()) * 1.3
            save_scatter(
                path,
                x,
                reference,
                title=f"step {step}, NFE {st.get('nfe_mean', 0):.0f}",
                bounds=(-lim, lim),
            )
        else:
            save_image_grid(path, x, scale=max(1, 64 // shape[0]))

    return callback

"""Every recipe's compiled train step and sampler run on each device's rows only.

On 8 simulated devices with a global batch of 96, no activation-sized matmul or convolution of
the compiled program (read from its HLO) may see the global batch: each sees 96 / 8 = 12 rows
(24 where a recipe stacks real and generated examples). An array a recipe draws
inside the step from the replicated key and leaves unconstrained makes XLA compute it, and all
that follows from it, whole on every device: before `batch_normal` the short-run EBM's K
Langevin steps ran on the whole global batch on every device (docs/results.md, "Recipe kit").
A new recipe is covered by adding its small config to `SMALL`.
"""

import re
from functools import partial

import jax
import numpy as np
import pytest

from jaxgen.methods import RECIPES, fdrl, get_recipe
from jaxgen.methods.common import replace_fields
from jaxgen.parallel import make_mesh, replicated, state_shardings
from jaxgen.train.step import make_sharded_sampler, make_sharded_step

# WIDTH: a hidden width no other axis has; BATCH / DEVICES = 12 divides no weight's input width
BATCH, DEVICES, WIDTH = 96, 8, 40
PER_DEVICE = BATCH // DEVICES

SMALL = {
    "ddgan": {"model.network": "mlp", "model.hidden": (WIDTH,), "model.latent_dim": 2},
    "vapo": {"model.hidden": (WIDTH,)},
    "fdrl": {"model.hidden": (WIDTH,), "method.flow_steps": 2},
    "gan2d": {"model.gen_hidden": (WIDTH,), "model.disc_hidden": (WIDTH,), "model.latent": 2},
    "glf": {"model.latent": 4, "model.ae_width": 4, "model.flow_hidden": WIDTH},
    "shortrun_ebm": {"model.hidden": (WIDTH,), "method.num_steps": 3},  # fresh chains (ch. 5)
}
IMAGE_SHAPES = {"glf": (8, 8, 1)}


def _setup(name):
    recipe = get_recipe(name)
    cfg = replace_fields(recipe.Config(), SMALL[name])
    shape = IMAGE_SHAPES.get(name, (2,))
    rng = np.random.default_rng(0)
    x = rng.uniform(-1, 1, size=(BATCH, *shape)).astype(np.float32)
    kw = {}
    if name == "fdrl":
        kw["fitted"] = fdrl.fit_data(cfg, x) if cfg.method.prior == "ddp" else None
    state = recipe.init(cfg, {"x": x}, key=jax.random.PRNGKey(0), **kw)
    return recipe, cfg, state, {"x": x}, shape


def activation_rows(hlo: str) -> set[int]:
    """Leading dimensions of the activation-sized results in an HLO module: `[rows, WIDTH]`
    dots and `[rows, H, W, C]` convolutions with rows a multiple of 12 (weight gradients have
    the layers' input widths as rows, none of them a multiple of 12)."""
    dots = re.findall(rf"= f32\[(\d+),{WIDTH}\]\{{[^}}]*\}} dot\(", hlo)
    convs = re.findall(r"= f32\[(\d+),\d+,\d+,\d+\]\{[^}]*\} convolution\(", hlo)
    return {int(r) for r in dots + convs if int(r) % PER_DEVICE == 0 and int(r) != WIDTH}


def step_rows(name: str, devices: int) -> set[int]:
    recipe, cfg, state, batch, _ = _setup(name)
    mesh = make_mesh(devices)
    abstract = jax.eval_shape(lambda s: s, state)
    sharding = state_shardings(abstract, mesh, recipe.CAPABILITIES.batch_state)
    step = make_sharded_step(
        partial(recipe.train_step, config=cfg), mesh, state_sharding=sharding, donate=False
    )
    state = jax.device_put(state, sharding)
    return activation_rows(step.lower(state, batch).compile().as_text())


def sampler_rows(name: str, devices: int) -> set[int]:
    recipe, cfg, state, _, shape = _setup(name)
    mesh = make_mesh(devices)
    fn = make_sharded_sampler(partial(recipe.sample, config=cfg, shape=shape), mesh)
    state = jax.device_put(state, replicated(mesh))
    return activation_rows(fn.lower(state, BATCH, jax.random.PRNGKey(1)).compile().as_text())


def test_every_recipe_is_covered():
    assert sorted(SMALL) == sorted(RECIPES)  # a new recipe needs its small config here


@pytest.mark.parametrize("name", sorted(RECIPES))
def test_train_step_runs_each_devices_rows(name):
    rows = step_rows(name, DEVICES)
    assert rows and max(rows) <= 2 * PER_DEVICE, rows


@pytest.mark.parametrize("name", ["shortrun_ebm", "glf"])  # an MLP and a conv recipe
def test_the_reading_sees_the_whole_batch_on_one_device(name):
    assert BATCH in step_rows(name, 1)


@pytest.mark.parametrize("name", sorted(RECIPES))
def test_sampler_runs_each_devices_rows(name):
    rows = sampler_rows(name, DEVICES)
    assert rows and max(rows) <= 2 * PER_DEVICE, rows


def test_an_unconstrained_draw_is_caught(monkeypatch):
    """The defect this guards against, put back: the short-run EBM's chain starts drawn without
    `batch_normal` make every device run the K Langevin steps on the global batch."""
    from jaxgen.methods import shortrun_ebm

    monkeypatch.setattr(shortrun_ebm, "batch_normal", jax.random.normal)
    assert BATCH in step_rows("shortrun_ebm", DEVICES)


def test_the_sharded_sampler_compiles_once():
    """Drawing chunk after chunk (new keys, same count) traces the recipe's `sample` once: the
    CLI's sampler never recompiles per chunk (chex counts the traces)."""
    import chex

    recipe, cfg, state, _, shape = _setup("vapo")
    mesh = make_mesh(DEVICES)
    counted = chex.assert_max_traces(recipe.sample, n=1)
    fn = make_sharded_sampler(partial(counted, config=cfg, shape=shape), mesh)
    state = jax.device_put(state, replicated(mesh))
    try:
        for i in range(3):
            x, _ = fn(state, BATCH, jax.random.PRNGKey(i))
        assert x.sharding.spec[0] == "data"  # the samples stay split over the devices
    finally:
        chex.clear_trace_counter()

"""Rows per device of a recipe's compiled train step and sampler, read from the HLO: shared by
`tests/test_sharding_rows.py` (the check) and `benchmarks/sharding_rows.py` (the table in
docs/results.md, "Recipe kit").

Each recipe is built at a small size (`SMALL`) whose hidden width `WIDTH` = 40 no other axis
has, on a global batch of `BATCH` = 96 random examples (`[96, 2]` points, `[96, 8, 8, 1]` images
for GLF). Compiled on `DEVICES` = 8 devices (simulated on CPU with
`XLA_FLAGS=--xla_force_host_platform_device_count=8`, set before jax is imported), a program
that splits its work shows `PER_DEVICE` = 12 rows (24 where real and generated examples are
stacked) in every activation-sized matmul or convolution; one that computes the global batch on
every device shows 96. It lives here, not in `jaxgen.parallel`, because it builds recipes
(`jaxgen.methods`) and the trainer's step (`jaxgen.train`), which sit above `jaxgen.parallel`.
"""

import re
from functools import partial

import jax
import numpy as np

from jaxgen.methods import fdrl, get_recipe
from jaxgen.methods.common import replace_fields
from jaxgen.parallel import make_mesh, replicated, state_shardings
from jaxgen.train.step import make_sharded_sampler, make_sharded_step

# WIDTH: a hidden width no other axis has; BATCH / DEVICES = 12 divides no weight's input width
BATCH, DEVICES, WIDTH = 96, 8, 40
PER_DEVICE = BATCH // DEVICES

# config overrides (`replace_fields`) that make each recipe small; a new recipe needs one here
SMALL = {
    "ddgan": {"model.network": "mlp", "model.hidden": (WIDTH,), "model.latent_dim": 2},
    "vapo": {"model.hidden": (WIDTH,)},
    "fdrl": {"model.hidden": (WIDTH,), "method.flow_steps": 2},
    "gan2d": {"model.gen_hidden": (WIDTH,), "model.disc_hidden": (WIDTH,), "model.latent": 2},
    "glf": {"model.latent": 4, "model.ae_width": 4, "model.flow_hidden": WIDTH},
    "shortrun_ebm": {"model.hidden": (WIDTH,), "method.langevin_steps": 3},  # fresh chains (ch. 5)
    "vae": {"model.hidden": (WIDTH,)},
    # the energy and the frozen base both WIDTH wide: every row of either is checked
    "vaebm": {"model.hidden": (WIDTH,), "model.base.hidden": (WIDTH,), "method.langevin_steps": 2},
}
IMAGE_SHAPES = {"glf": (8, 8, 1)}  # example shape per recipe; (2,) for the others


def setup(name: str):
    """`(recipe, config, state, batch, shape)` of recipe `name` at its `SMALL` size: `batch` is
    `{"x": [BATCH, *shape]}` float32 uniform in [-1, 1] (numpy seed 0), `shape` the example
    shape (`IMAGE_SHAPES`, else `(2,)`), `state` initialised from `PRNGKey(0)` on that batch."""
    recipe = get_recipe(name)
    cfg = replace_fields(recipe.Config(), SMALL[name])
    shape = IMAGE_SHAPES.get(name, (2,))
    rng = np.random.default_rng(0)
    x = rng.uniform(-1, 1, size=(BATCH, *shape)).astype(np.float32)
    kw = {}
    if name == "fdrl":
        kw["fitted"] = fdrl.fit_data(cfg, x) if cfg.method.prior == "ddp" else None
    stage = recipe.CAPABILITIES.base_stage
    if stage is not None:  # a freshly initialised base of the stage's default config
        kw["base"] = stage.init_default_base(cfg, {"x": x}, key=jax.random.PRNGKey(3))[2]
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
    """`activation_rows` of recipe `name`'s train step (the trainer's `make_sharded_step`, state
    laid out by `state_shardings`, not donated) compiled on the first `devices` devices for the
    `[BATCH, ...]` batch of `setup(name)`."""
    recipe, cfg, state, batch, _ = setup(name)
    mesh = make_mesh(devices)
    abstract = jax.eval_shape(lambda s: s, state)
    sharding = state_shardings(abstract, mesh, recipe.CAPABILITIES.batch_state)
    step = make_sharded_step(
        partial(recipe.train_step, config=cfg), mesh, state_sharding=sharding, donate=False
    )
    state = jax.device_put(state, sharding)
    return activation_rows(step.lower(state, batch).compile().as_text())


def sampler_rows(name: str, devices: int) -> set[int]:
    """`activation_rows` of recipe `name`'s sampler (`make_sharded_sampler`, the CLI's path, state
    replicated) drawing `BATCH` samples of its example shape, compiled on `devices` devices."""
    recipe, cfg, state, _, shape = setup(name)
    mesh = make_mesh(devices)
    fn = make_sharded_sampler(partial(recipe.sample, config=cfg, shape=shape), mesh)
    state = jax.device_put(state, replicated(mesh))
    return activation_rows(fn.lower(state, BATCH, jax.random.PRNGKey(1)).compile().as_text())

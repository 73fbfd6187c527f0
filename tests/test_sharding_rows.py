"""Every recipe's compiled train step and sampler run on each device's rows only.

On 8 simulated devices with a global batch of 96, no activation-sized matmul or convolution of
the compiled program (read from its HLO) may see the global batch: each sees 96 / 8 = 12 rows
(24 where a recipe stacks real and generated examples). An array a recipe draws
inside the step from the replicated key and leaves unconstrained makes XLA compute it, and all
that follows from it, whole on every device: before `batch_normal` the short-run EBM's K
Langevin steps ran on the whole global batch on every device (docs/results.md, "Recipe kit").
The compiling and reading is `tools.hlo_rows`; a new recipe is covered by adding its small
config to `tools.hlo_rows.SMALL`.
"""

from functools import partial

import jax
import pytest

from jaxgen.methods import RECIPES
from jaxgen.parallel import make_mesh, replicated
from jaxgen.train.step import make_sharded_sampler
from tools.hlo_rows import BATCH, DEVICES, PER_DEVICE, SMALL, sampler_rows, setup, step_rows


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

    recipe, cfg, state, _, shape = setup("vapo")
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

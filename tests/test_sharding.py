"""Shardings by rule and arrays a step creates: FDRL's training flow runs on each device's slice
of the batch (read from the compiled HLO), with the same result as on one device."""

import re
from functools import partial

import jax
import numpy as np
import pytest

from jaxgen.methods import fdrl
from jaxgen.methods.common import replace_fields
from jaxgen.parallel import make_mesh, shard_over_batch, state_shardings
from jaxgen.train.step import make_sharded_step

# a global batch of 64 and a hidden width of 24, so activations [rows, 24] (rows = examples per
# device) and weight gradients ([24, 24], [2, 24]) have distinguishable shapes
BATCH, WIDTH = 64, 24


def _fdrl(prior: str):
    cfg = replace_fields(
        fdrl.Config(),
        {
            "model.hidden": (WIDTH, WIDTH),
            "method.prior": prior,
            "method.flow_steps": 3,
            "method.loss": "lr",
            "method.divergence": "kl",
        },
    )
    x = np.asarray(jax.random.normal(jax.random.PRNGKey(0), (BATCH, 2)))
    fitted = fdrl.fit_data(cfg, x) if prior == "ddp" else None
    state = fdrl.init(cfg, {"x": x}, key=jax.random.PRNGKey(1), fitted=fitted)
    return cfg, state, {"x": x}


def _dot_rows(hlo: str) -> set[int]:
    """The leading dimension of every `f32[rows, WIDTH]` dot result in an HLO module, less the
    weight and bias gradients' (rows = 2, WIDTH, or 1 for a sum over the batch)."""
    rows = {int(m) for m in re.findall(rf"= f32\[(\d+),{WIDTH}\]\{{[^}}]*\}} dot\(", hlo)}
    return rows - {1, 2, WIDTH}


def flow_rows_per_device(cfg, state, batch, mesh) -> set[int]:
    """Rows of the hidden-layer activations' matmuls in the compiled sharded FDRL step."""
    step = make_sharded_step(partial(fdrl.train_step, config=cfg), mesh, donate=False)
    return _dot_rows(step.lower(state, batch).compile().as_text())


@pytest.mark.parametrize("prior", ["normal", "ddp"])
def test_fdrl_training_flow_runs_on_each_devices_slice(prior):
    """On 8 devices every activation matmul of the step (data side and the K-step flow of the
    prior draws) has 64 / 8 = 8 rows; before `shard_over_batch` the flow's had 64."""
    cfg, state, batch = _fdrl(prior)
    assert flow_rows_per_device(cfg, state, batch, make_mesh(8)) == {BATCH // 8}
    assert flow_rows_per_device(cfg, state, batch, make_mesh(1)) == {BATCH}


def test_without_the_constraint_the_flow_runs_the_whole_batch_per_device(monkeypatch):
    """The failure this guards against: the prior draw from the replicated key, left
    unconstrained, makes every device flow all 64 particles (the data side stays at 8)."""
    monkeypatch.setattr(fdrl, "shard_over_batch", lambda x: x)
    cfg, state, batch = _fdrl("normal")
    assert flow_rows_per_device(cfg, state, batch, make_mesh(8)) == {BATCH // 8, BATCH}


def test_fdrl_sharded_step_equals_single_device():
    cfg, state, batch = _fdrl("ddp")
    out = {}
    for n in (1, 8):
        step = make_sharded_step(partial(fdrl.train_step, config=cfg), make_mesh(n), donate=False)
        out[n] = jax.block_until_ready(step(state, batch))
    for a, b in zip(jax.tree.leaves(out[1]), jax.tree.leaves(out[8]), strict=True):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-5, atol=1e-6)


def test_shard_over_batch_is_a_no_op_outside_a_mesh():
    x = np.arange(6.0).reshape(3, 2)
    np.testing.assert_array_equal(shard_over_batch(x), x)


def test_state_shardings_by_rule():
    """Leaves under the named fields split over `data`; everything else replicated."""
    abstract = {
        "params": jax.ShapeDtypeStruct((3, 5), np.float32),
        "chains": {"x": jax.ShapeDtypeStruct((16, 2), np.float32)},
        "step": jax.ShapeDtypeStruct((), np.int32),
    }
    sh = state_shardings(abstract, make_mesh(8), ("chains",))
    assert sh["params"].is_fully_replicated and sh["step"].is_fully_replicated
    assert sh["chains"]["x"].spec == jax.sharding.PartitionSpec("data")
    with pytest.raises(ValueError, match=r"state\['params'\] has shape \(3, 5\)"):
        state_shardings(abstract, make_mesh(8), ("chains", "params"))  # 3 rows: not divisible

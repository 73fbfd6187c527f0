"""The DRL/VAPO energy ResNet: parameter counts of the paper configurations
(docs/methods/vapo.md §4), per-sample independence, weight-norm layers."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxgen.nn.energy import EnergyResNet
from jaxgen.nn.weight_norm import WNConv, WNDense


def _count(model, shape):
    params = jax.eval_shape(lambda: model.init(jax.random.PRNGKey(0), jnp.zeros(shape)))
    return sum(int(np.prod(x.shape)) for x in jax.tree.leaves(params))


@pytest.mark.parametrize(
    "ch_mult, blocks, res, expected",
    [((1, 2, 2, 2), 8, 32, 30.7e6), ((1, 2, 2, 2, 4), 6, 64, 51.4e6)],
    ids=["cifar10", "celeba64"],
)
def test_paper_parameter_counts(ch_mult, blocks, res, expected):
    n = _count(EnergyResNet(128, ch_mult, blocks), (1, res, res, 3))
    assert abs(n / expected - 1) < 0.02, f"{n / 1e6:.2f}M parameters, spec table {expected / 1e6}M"


def test_output_of_one_example_does_not_depend_on_the_batch():
    net = EnergyResNet(8, (1, 2), 1)
    x = jax.random.uniform(jax.random.PRNGKey(1), (5, 8, 8, 3), minval=-1, maxval=1)
    params = net.init(jax.random.PRNGKey(0), x)
    full = net.apply(params, x)
    assert full.shape == (5,)
    for i in range(5):
        np.testing.assert_allclose(
            net.apply(params, x[i : i + 1])[0], full[i], rtol=1e-5, atol=1e-6
        )
    other = x.at[1:].set(0.3)  # change the rest of the batch
    np.testing.assert_allclose(net.apply(params, other)[0], full[0], rtol=1e-5, atol=1e-6)


def test_weight_norm_layers_start_at_init_scale_times_the_raw_weight():
    x = jax.random.normal(jax.random.PRNGKey(2), (2, 6, 6, 4))
    conv = WNConv(5, init_scale=1e-3)
    p = conv.init(jax.random.PRNGKey(0), x)["params"]
    np.testing.assert_allclose(
        p["g"], 1e-3 * np.linalg.norm(p["v"].reshape(-1, 5), axis=0), rtol=1e-6
    )
    raw = jax.lax.conv_general_dilated(
        x, 1e-3 * p["v"], (1, 1), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC")
    )
    np.testing.assert_allclose(conv.apply({"params": p}, x), raw, rtol=1e-4, atol=1e-7)
    # the output is invariant to the scale of v (only its direction matters)
    p2 = {**p, "v": 7.0 * p["v"]}
    np.testing.assert_allclose(
        conv.apply({"params": p2}, x), conv.apply({"params": p}, x), rtol=1e-5, atol=1e-8
    )
    dense = WNDense(3)
    h = jax.random.normal(jax.random.PRNGKey(3), (4, 7))
    q = dense.init(jax.random.PRNGKey(0), h)["params"]
    np.testing.assert_allclose(dense.apply({"params": q}, h), h @ q["v"], rtol=1e-5, atol=1e-6)


def test_data_dependent_init_normalises_each_unit_on_the_batch():
    x = jax.random.uniform(jax.random.PRNGKey(0), (16, 8, 8, 3), minval=-1.0, maxval=1.0)
    for layer, inp, axes in (
        (WNConv(5, init_scale=0.5, data_init=True), x, (0, 1, 2)),
        (WNDense(4, init_scale=2.0, data_init=True), x.reshape(16, -1), (0,)),
    ):
        params = layer.init(jax.random.PRNGKey(1), inp)
        y = layer.apply(params, inp)
        np.testing.assert_allclose(y.mean(axes), 0.0, atol=1e-5)
        np.testing.assert_allclose(y.std(axes), layer.init_scale, rtol=1e-4)
    net = EnergyResNet(ch=8, ch_mult=(1, 2), num_res_blocks=1, data_init=True)
    params = net.init(jax.random.PRNGKey(2), x)
    default = EnergyResNet(ch=8, ch_mult=(1, 2), num_res_blocks=1).init(jax.random.PRNGKey(2), x)
    assert jax.tree.structure(params) == jax.tree.structure(default)  # same checkpoints
    assert np.isfinite(np.asarray(net.apply(params, x))).all()

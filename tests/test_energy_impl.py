"""The fast formulations of the energy ResNet agree with the reference one: the erf GELU with
hand-written derivatives vs `nn.gelu(approximate=False)`, the im2col convolution vs XLA's, the
batch run in slices vs whole, on Φ(x), ∇ₓΦ(x) and the parameter gradient of the VAPO loss."""

from functools import partial

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxgen.nn.activations import gelu_exact
from jaxgen.nn.energy import EnergyResNet
from jaxgen.nn.weight_norm import conv_same
from jaxgen.objectives.vapo import potential_flow_loss


def _close(a, b, rtol):
    """Leafwise max |a − b| ≤ rtol · max |b| (+ a float32 floor)."""
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
        x, y = np.asarray(x), np.asarray(y)
        assert x.shape == y.shape
        scale = np.max(np.abs(y)) + 1e-30
        assert np.max(np.abs(x - y)) <= rtol * scale + 1e-7, np.max(np.abs(x - y)) / scale


def test_gelu_and_its_first_two_derivatives_match_nn_gelu():
    x = jnp.concatenate([jnp.linspace(-12.0, 12.0, 24001), jnp.array([-1e-3, 1e-3, 40.0])])
    ref = lambda z: nn.gelu(z, approximate=False)
    derivatives = {
        "gelu": lambda f: f,
        "gelu'": lambda f: jax.vmap(jax.grad(f)),
        "gelu''": lambda f: jax.vmap(jax.grad(jax.grad(f))),
    }
    for name, d in derivatives.items():
        err = np.abs(np.asarray(d(gelu_exact)(x)) - np.asarray(d(ref)(x)))
        bound = 3e-7 * np.maximum(1.0, np.abs(np.asarray(x)))  # a few float32 ulps
        assert np.all(err <= bound), (name, float(np.max(err / bound)))
    # closed forms: gelu'(0) = 1/2, gelu''(0) = 2 φ(0)
    np.testing.assert_allclose(derivatives["gelu'"](gelu_exact)(jnp.zeros(1)), 0.5, rtol=1e-7)
    want = 2 / np.sqrt(2 * np.pi)
    np.testing.assert_allclose(derivatives["gelu''"](gelu_exact)(jnp.zeros(1)), want, rtol=1e-6)


@pytest.mark.parametrize("c_in, c_out, k", [(3, 8, 3), (8, 8, 3), (4, 5, 1)])
def test_im2col_convolution_matches_xla(c_in, c_out, k):
    kx, kw = jax.random.split(jax.random.PRNGKey(0))
    x = jax.random.normal(kx, (2, 7, 6, c_in))
    w = jax.random.normal(kw, (k, k, c_in, c_out))
    with jax.default_matmul_precision("float32"):
        _close(conv_same(x, w, "im2col"), conv_same(x, w, "xla"), 1e-5)


def _vapo_quantities(net, params, x, w):
    """Φ(x) `[B]`, ∇ₓΦ `[B, ...]` and ∂/∂params of the batch-mean VAPO loss (eq. 20)."""
    phi_fn = lambda p, z: net.apply({"params": p}, z)

    def loss(p):
        terms, _, _ = potential_flow_loss(partial(phi_fn, p), x, w, lam=1e-4)
        return jnp.mean(terms)

    with jax.default_matmul_precision("float32"):
        phi = phi_fn(params, x)
        grad_x = jax.grad(lambda z: jnp.sum(phi_fn(params, z)))(x)
        grad_p = jax.grad(loss)(params)
    return phi, grad_x, grad_p


FAST_FIELDS = [
    {"gelu_impl": "erf"},
    {"conv_impl": "im2col"},
    {"batch_splits": 2},
    {"batch_splits": 4},
]


@pytest.mark.parametrize("fields", FAST_FIELDS, ids=str)
def test_network_value_input_gradient_and_vapo_parameter_gradient_match_reference(fields):
    ref_net = EnergyResNet(8, (1, 2), 2, zero_init_scale=0.3, gelu_impl="flax", conv_impl="xla")
    net = ref_net.clone(**fields)
    kx, kw, kp = jax.random.split(jax.random.PRNGKey(1), 3)
    x = jax.random.uniform(kx, (5, 8, 8, 3), minval=-1.5, maxval=1.5)  # 5: uneven slices
    w = jax.random.normal(kw, (5,))
    params = jax.jit(ref_net.init)(kp, x)["params"]  # jitted: one compile, not one per op
    same_init = jax.jit(net.init)(kp, x)["params"]  # the same names, shapes and values
    assert jax.tree.structure(same_init) == jax.tree.structure(params)
    _close(same_init, params, 0.0)
    # random g so that the residual branches and the read-out are not near zero
    params = jax.tree_util.tree_map_with_path(
        lambda path, p: p * 3.0 if path[-1].key == "g" else p, params
    )
    got = jax.jit(partial(_vapo_quantities, net))(params, x, w)
    want = jax.jit(partial(_vapo_quantities, ref_net))(params, x, w)
    # float32 summation-order differences, amplified by the double backward
    names, rtols = ("phi", "grad_x", "grad_params"), (1e-5, 2e-5, 1e-4)
    for name, a, b, rtol in zip(names, got, want, rtols, strict=True):
        try:
            _close(a, b, rtol)
        except AssertionError as e:
            raise AssertionError(f"{name} differs: {e}") from None

"""Glow's layers and the multi-scale model (docs/methods/glow.md): inverses, log-determinants
against `jax.jacfwd` (with every parameter perturbed, so that the zero-initialised couplings and
priors are not the identity), actnorm's data-dependent init, the LU parameterisation, and
log p(x) = log N(ε; 0, I) + log|det ∂ε/∂x| checked on a model small enough to integrate."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxgen.flows import standard_normal_log_prob
from jaxgen.flows.glow import (
    ConvAffineCoupling,
    Glow,
    ImageActNorm,
    InvConv1x1,
    flow_step,
    random_rotation,
    squeeze,
    unsqueeze,
)

SHAPE = (4, 4, 2)  # H, W, C: 32 dimensions, a jacfwd of 32 × 32


def _perturbed(variables, key, scale=0.3):
    """Every parameter plus scale·N(0, 1): zero-initialised convs stop being the identity."""
    leaves, treedef = jax.tree_util.tree_flatten(variables)
    keys = jax.random.split(key, len(leaves))
    moved = [x + scale * jax.random.normal(k, x.shape) for x, k in zip(leaves, keys, strict=True)]
    return jax.tree_util.tree_unflatten(treedef, moved)


def _batch(key, shape=SHAPE, n=3):
    return jax.random.normal(key, (n, *shape))


def _jacobian_log_dets(fn, x):
    """log|det ∂fn/∂x| `[B]` of each example of `x` `[B, H, W, C]` by jacfwd on the flattened
    one-example map (one compiled program for the batch)."""
    flat = lambda v: fn(v.reshape(1, *x.shape[1:]))[0].reshape(-1)
    log_det = jax.jit(jax.vmap(lambda v: jnp.linalg.slogdet(jax.jacfwd(flat)(v))[1]))
    return np.asarray(log_det(x.reshape(x.shape[0], -1)))


LAYERS = {
    "actnorm": lambda: ImageActNorm(SHAPE[2]),
    "invconv_lu": lambda: InvConv1x1(SHAPE[2], seed=3, lu=True),
    "invconv_full": lambda: InvConv1x1(SHAPE[2], seed=3, lu=False),
    "coupling": lambda: ConvAffineCoupling(hidden=4, depth=2),
    "step": lambda: flow_step(SHAPE[2], hidden=4, depth=1, seed=1),
}


@pytest.mark.parametrize("name", sorted(LAYERS))
def test_layer_inverse_and_log_det_match_jacfwd(name):
    layer = LAYERS[name]()
    x = _batch(jax.random.PRNGKey(0))
    variables = _perturbed(layer.init(jax.random.PRNGKey(1), x), jax.random.PRNGKey(2))
    forward = lambda v: layer.apply(variables, v, method="forward")
    y, log_det = forward(x)
    back, log_det_inv = layer.apply(variables, y, method="inverse")
    np.testing.assert_allclose(back, x, atol=1e-4)
    np.testing.assert_allclose(log_det_inv, -log_det, rtol=1e-5, atol=1e-4)
    want = _jacobian_log_dets(lambda v: forward(v)[0], x)
    np.testing.assert_allclose(log_det, want, rtol=1e-4, atol=1e-3)


def test_squeeze_puts_each_2x2_patch_into_channels_and_unsqueeze_undoes_it():
    x = jnp.arange(2 * 4 * 4 * 3, dtype=jnp.float32).reshape(2, 4, 4, 3)
    s = squeeze(x)
    assert s.shape == (2, 2, 2, 12)
    # the patch at (0, 0): its 4 pixels' channels, in the order channel-major, then row, column
    patch = x[0, :2, :2, :]  # [2, 2, C]
    np.testing.assert_array_equal(s[0, 0, 0], patch.transpose(2, 0, 1).reshape(-1))
    np.testing.assert_array_equal(unsqueeze(s), x)


def test_actnorm_starts_at_zero_mean_unit_variance_per_channel():
    x = 3.0 + 2.0 * _batch(jax.random.PRNGKey(4), n=64)
    layer = ImageActNorm(2)
    y, log_det = layer.apply(layer.init(jax.random.PRNGKey(0), x), x)
    np.testing.assert_allclose(y.mean((0, 1, 2)), 0.0, atol=1e-5)
    np.testing.assert_allclose(y.std((0, 1, 2)), 1.0, atol=1e-4)
    # log|det| = H·W·Σ_c log(1/std_c)
    want = -16 * np.log(np.asarray(x).reshape(-1, 2).std(0) + 1e-6).sum()
    np.testing.assert_allclose(log_det, want, rtol=1e-5)


def test_lu_invconv_starts_at_the_rotation_it_was_decomposed_from():
    layer = InvConv1x1(6, seed=9, lu=True)
    x = _batch(jax.random.PRNGKey(0), (2, 2, 6), n=2)
    variables = layer.init(jax.random.PRNGKey(1), x)
    w = random_rotation(6, 9)
    y, log_det = layer.apply(variables, x)
    np.testing.assert_allclose(y, jnp.einsum("bhwc,cd->bhwd", x, w), atol=1e-5)
    np.testing.assert_allclose(log_det, 0.0, atol=1e-4)  # |det| of a rotation is 1


@pytest.mark.parametrize("learn_top", [False, True])
def test_glow_maps_to_eps_and_back_with_the_jacobian_log_det(learn_top):
    glow = Glow(SHAPE, levels=2, steps=2, hidden=4, depth=1, learn_top=learn_top)
    x = _batch(jax.random.PRNGKey(5))
    variables = _perturbed(glow.init(jax.random.PRNGKey(6), x), jax.random.PRNGKey(7), 0.1)
    eps, log_det = glow.apply(variables, x)
    assert eps.shape == x.shape
    back, log_det_inv = glow.apply(variables, eps, method="inverse")
    np.testing.assert_allclose(back, x, atol=2e-4)
    np.testing.assert_allclose(log_det_inv, -log_det, rtol=1e-4, atol=1e-3)
    forward = lambda v: glow.apply(variables, v)[0]
    np.testing.assert_allclose(log_det, _jacobian_log_dets(forward, x), rtol=1e-4, atol=2e-3)
    jitted = jax.jit(lambda v: glow.apply(variables, v))(x)
    np.testing.assert_allclose(jitted[0], eps, atol=1e-5)
    np.testing.assert_allclose(jitted[1], log_det, rtol=1e-5, atol=1e-4)


def test_glow_density_integrates_to_one_in_one_dimension_per_pixel():
    """A 2×2×1 image (4 dimensions): p(x) = N(ε(x)) |det ∂ε/∂x| is a density; its Monte-Carlo
    integral by importance sampling from N(0, 4 I) is 1 within the estimate's error."""
    glow = Glow((2, 2, 1), levels=1, steps=2, hidden=4, depth=1)
    init_x = _batch(jax.random.PRNGKey(8), (2, 2, 1), n=16)
    variables = _perturbed(glow.init(jax.random.PRNGKey(9), init_x), jax.random.PRNGKey(10), 0.1)
    n, scale = 200_000, 2.0
    x = scale * jax.random.normal(jax.random.PRNGKey(11), (n, 2, 2, 1))
    eps, log_det = jax.jit(lambda v: glow.apply(variables, v))(x)
    log_p = standard_normal_log_prob(eps.reshape(n, -1)) + log_det
    log_q = standard_normal_log_prob(x.reshape(n, -1) / scale) - 4 * np.log(scale)
    w = np.exp(np.asarray(log_p - log_q, np.float64))
    estimate, error = w.mean(), w.std() / np.sqrt(n)
    assert abs(estimate - 1.0) < max(4 * error, 0.01), (estimate, error)


def test_glow_refuses_sides_that_do_not_halve_and_wrong_shapes():
    with pytest.raises(ValueError, match="multiples of 4"):
        Glow((6, 6, 1), levels=2, steps=1, hidden=4).init(
            jax.random.PRNGKey(0), jnp.zeros((1, 6, 6, 1))
        )
    glow = Glow((4, 4, 1), levels=2, steps=1, hidden=4)
    with pytest.raises(ValueError, match=r"image_shape=\(4, 4, 1\)"):
        glow.init(jax.random.PRNGKey(0), jnp.zeros((1, 8, 8, 1)))

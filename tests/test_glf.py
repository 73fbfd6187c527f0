"""GLF (docs/methods/glf.md): the losses against their closed forms, the stop-gradient that
splits the gradients between the two networks, the sub-pixel deconvolution against PyTorch's
transposed convolution, jit vs no-jit, and one-line errors for bad input."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxgen.methods import glf
from jaxgen.methods.common import ConfigError, config_from_dict
from jaxgen.nn.autoencoder import Deconv4x4
from jaxgen.objectives import glf as obj

SMALL = {"model": {"latent": 4, "ae_width": 4, "flow_hidden": 8, "flow_blocks": 2}}


def _config(**method):
    return config_from_dict(glf.Config, {**SMALL, "method": method})


def _images(n=8, size=8, seed=0):
    return np.random.default_rng(seed).uniform(-1, 1, (n, size, size, 1)).astype(np.float32)


@pytest.fixture(scope="module")
def glf_state():
    c = _config()
    return c, glf.init(c, {"x": _images()}, key=jax.random.PRNGKey(0))


def test_losses_match_their_closed_forms():
    rng = np.random.default_rng(0)
    x, x_hat = (rng.uniform(-1, 1, (3, 4, 4, 1)).astype(np.float32) for _ in range(2))
    a, b = (x + 1) / 2, (x_hat + 1) / 2  # [0, 1] units
    np.testing.assert_allclose(
        obj.reconstruction_sse(x, x_hat), ((a - b) ** 2).sum((1, 2, 3)), 1e-5
    )
    bce = -(a * np.log(b) + (1 - a) * np.log(1 - b)).sum((1, 2, 3))
    np.testing.assert_allclose(obj.reconstruction_bce(x, x_hat), bce, rtol=1e-4)
    u, log_det = rng.normal(size=(3, 5)).astype(np.float32), rng.normal(size=3).astype(np.float32)
    nll = 0.5 * (u**2).sum(1) + 2.5 * np.log(2 * np.pi) - log_det
    np.testing.assert_allclose(obj.latent_nll(u, log_det), nll, rtol=1e-5)
    log_var = rng.normal(size=(3, 5)).astype(np.float32)
    np.testing.assert_allclose(obj.posterior_entropy_term(log_var), -0.5 * log_var.sum(1), 1e-5)
    taps = lambda v: (2 * v, v[:, ::2])
    perc = np.abs(a - b).sum((1, 2, 3)) + 2 * np.abs(x - x_hat).sum((1, 2, 3))
    perc += np.abs(x[:, ::2] - x_hat[:, ::2]).sum((1, 2, 3))
    np.testing.assert_allclose(obj.perceptual_distance(taps, x, x_hat), perc, rtol=1e-5)
    rec, nll_t, ent = (jnp.arange(3.0) + k for k in (1, 2, 3))
    np.testing.assert_allclose(obj.glf_terms(rec, nll_t, variant="glf", beta=7.0), rec + nll_t)
    got = obj.glf_terms(rec, nll_t, variant="vae_flow_prior", beta=7.0, entropy=ent)
    np.testing.assert_allclose(got, 7 * rec + nll_t + ent)


def test_deconvolution_is_pytorchs_transposed_convolution():
    """ConvTranspose2d(k=4, s=2, p=1) is the lhs-dilated convolution with the flipped kernel and
    padding k - 1 - p = 2."""
    x = jax.random.normal(jax.random.PRNGKey(0), (2, 5, 6, 3))
    layer = Deconv4x4(4)
    variables = layer.init(jax.random.PRNGKey(1), x)
    w = variables["params"]["kernel"]
    ref = jax.lax.conv_general_dilated(
        x,
        w[::-1, ::-1],
        (1, 1),
        ((2, 2), (2, 2)),
        lhs_dilation=(2, 2),
        dimension_numbers=("NHWC", "HWIO", "NHWC"),
    )
    np.testing.assert_allclose(layer.apply(variables, x), ref, atol=1e-5)


def _grads(state, c, x):
    fn = jax.jit(
        jax.grad(
            lambda a, f: glf.loss_fn(a, f, state, x, jax.random.PRNGKey(3), config=c)[0],
            argnums=(0, 1),
        )
    )
    return fn(state.ae.params, state.flow.params)


def test_stop_gradient_splits_the_gradient_between_the_networks(glf_state):
    """GLF: the AE's gradient is the reconstruction's alone and the flow's the NLL's; without
    the stop-gradient (regularized, β = 1: the same loss value) the NLL reaches the encoder."""
    c, state = glf_state
    x = _images()
    g_ae, g_flow = _grads(state, c, x)
    reg = dataclasses.replace(c, method=dataclasses.replace(c.method, variant="regularized"))
    r_ae, r_flow = _grads(state, reg, x)
    same = lambda a, b: all(
        jax.tree.leaves(jax.tree.map(lambda p, q: bool(jnp.allclose(p, q, atol=1e-6)), a, b))
    )
    assert same(g_flow, r_flow) and same(g_ae["decoder"], r_ae["decoder"])
    assert not same(g_ae["encoder"], r_ae["encoder"])

    def rec_only(ae_params):  # the reconstruction term by itself
        stats = state.ae.variables["batch_stats"]
        z, _ = glf.encode(ae_params, stats, x, config=c, train=True)
        x_hat, _ = glf.decode(ae_params, stats, z, config=c, shape=x.shape[1:], train=True)
        return jnp.mean(obj.reconstruction_sse(x, x_hat))

    assert same(g_ae, jax.jit(jax.grad(rec_only))(state.ae.params))


def test_train_step_and_the_samplers(glf_state):
    """A step updates both networks and the BatchNorm statistics; sampling, interpolation and
    reconstruction give images in (-1, 1), one decoder pass per sample."""
    c, state = glf_state
    batch = {"x": _images()}
    new, metrics = jax.jit(lambda s, b: glf.train_step(s, b, config=c))(state, batch)
    assert int(new.step) == 1 and all(np.isfinite(float(v)) for v in metrics.values())
    for old, now in ((state.ae, new.ae), (state.flow, new.flow)):
        for tree in ("params", "variables"):
            moved = jax.tree.map(
                lambda a, b: bool(jnp.any(a != b)), getattr(old, tree), getattr(now, tree)
            )
            assert all(jax.tree.leaves(moved)), tree
    x, stats = jax.jit(lambda s, k: glf.sample(s, 6, config=c, key=k))(new, jax.random.PRNGKey(1))
    assert x.shape == (6, 8, 8, 1) and float(jnp.abs(x).max()) < 1
    assert stats["nfe"].tolist() == [1] * 6
    line, _ = jax.jit(lambda s, k: glf.interpolate(s, 5, config=c, key=k))(
        new, jax.random.PRNGKey(2)
    )
    assert line.shape == (5, 8, 8, 1)
    assert jax.jit(lambda s, b: glf.reconstruct(s, b, config=c))(new, batch["x"]).shape == (
        8,
        8,
        8,
        1,
    )


def test_vae_variant_reports_its_posterior(glf_state):
    c = _config(variant="vae_flow_prior", beta=400.0)
    state = glf.init(c, {"x": _images()}, key=jax.random.PRNGKey(0))
    _, metrics = jax.jit(lambda s, b: glf.train_step(s, b, config=c))(state, {"x": _images()})
    assert {"entropy_term", "posterior_var"} <= set(metrics)
    assert all(np.isfinite(float(v)) for v in metrics.values())


def test_bad_input_is_one_clear_error(glf_state):
    c, state = glf_state
    with pytest.raises(ConfigError, match="config.model.latent=1: must be >= 2"):
        config_from_dict(glf.Config, {"model": {"latent": 1}})
    with pytest.raises(ValueError, match="multiple of 4"):
        glf.init(c, {"x": _images(size=6)}, key=jax.random.PRNGKey(0))
    with pytest.raises(ValueError, match="scaled to \\[-1, 1\\]"):
        glf.init(c, {"x": 255 * np.abs(_images())}, key=jax.random.PRNGKey(0))
    perceptual = _config(perceptual="fashion_mnist_vgg_v1")  # a network for 28 × 28 images
    with pytest.raises(ValueError, match=r"takes images \(28, 28, 1\), the data's are \(8, 8, 1\)"):
        glf.init(perceptual, {"x": _images()}, key=jax.random.PRNGKey(0))
    other = config_from_dict(glf.Config, {"model": {**SMALL["model"], "latent": 6}})
    with pytest.raises(
        ValueError, match="model.latent=6, but the state's networks were built for latent 4"
    ):
        glf.sample(state, 4, config=other, key=jax.random.PRNGKey(0))
    with pytest.raises(ValueError, match="glf.train_step: batch\\['x'\\] has shape"):
        glf.train_step(state, {"x": _images(size=12)}, config=c)


class _Images:
    def batch(self, i):
        return {"x": _images(seed=i)}


def test_a_nan_log_det_stops_the_run_and_names_the_flow(glf_state):
    """A flow parameter gone NaN: the guard stops at the first step, and the message names the
    flow's metrics (log_det, grad_norm_flow) but not the AE's gradient, which the stop-gradient
    keeps finite."""
    from jaxgen.parallel import make_mesh
    from jaxgen.train.loop import NonFiniteError, TrainPlan, fit

    c, state = glf_state
    leaves, treedef = jax.tree.flatten(state.flow.params)
    poisoned = jax.tree.unflatten(treedef, [leaves[0] * jnp.nan, *leaves[1:]])
    state = state.replace(flow=state.flow.replace(params=poisoned))
    plan = TrainPlan(3, log_every=1, ckpt_every=0)
    step = lambda s, b: glf.train_step(s, b, config=c)
    with pytest.raises(NonFiniteError, match="at step 0") as err:
        fit(step, state, _Images(), make_mesh(1), plan, progress=False)
    named = str(err.value).split("(non-finite: ")[1].split(")")[0].split(", ")
    assert {"log_det", "grad_norm_flow"} <= set(named) and "grad_norm_ae" not in named

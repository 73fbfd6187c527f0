"""The `vae` recipe (docs/methods/vae.md): the IWAE bound against the exact log p of a linear
Gaussian VAE, the KL term against Monte Carlo, draws against the model's marginal, and the
entry checks."""

from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.stats import multivariate_normal

from jaxgen.methods import vae
from jaxgen.methods.common import replace_fields

LINEAR = {"model.hidden": (), "model.latent": 2, "model.init_log_sigma_x": -0.5}


def _linear_state(dim=3, seed=0):
    """A VAE with a linear encoder and decoder: p(x) = N(b, W Wᵀ + diag σ_x²) exactly."""
    cfg = replace_fields(vae.Config(), LINEAR)
    x = jax.random.normal(jax.random.PRNGKey(seed), (8, dim))
    state = vae.init(cfg, {"x": x}, key=jax.random.PRNGKey(seed + 1))
    return cfg, state


def _exact_log_p(state, x):
    dec = state.vae.params["decoder"]["dense_0"]
    w, b = np.asarray(dec["kernel"]).T, np.asarray(dec["bias"])  # μ_x = W z + b
    sigma2 = np.exp(2 * np.asarray(state.vae.params["log_sigma_x"]))
    cov = w @ w.T + np.diag(sigma2)
    return multivariate_normal(mean=b, cov=cov).logpdf(np.asarray(x))


def _with_exact_posterior(state, latent=1):
    """The linear VAE's encoder set to its exact posterior N(S Wᵀ D⁻¹ (x − b), S), with
    S = (1 + Wᵀ D⁻¹ W)⁻¹ for a one-dimensional latent (a diagonal q can then be exact)."""
    p = state.vae.params
    dec = p["decoder"]["dense_0"]
    w, b = dec["kernel"][0], dec["bias"]  # μ_x = w z + b, w [D]
    d_inv = jnp.exp(-2 * p["log_sigma_x"])
    s = 1.0 / (1.0 + jnp.sum(w * w * d_inv))
    gain = s * w * d_inv  # posterior mean = gain · (x − b)
    kernel = jnp.stack([gain, jnp.zeros_like(gain)], axis=1)  # [D, 2]: mean, log_var
    bias = jnp.array([-jnp.dot(gain, b), jnp.log(s)])
    enc = {"dense_0": {"kernel": kernel, "bias": bias}}
    return {**p, "encoder": enc}


def test_iwae_is_exact_with_the_exact_posterior():
    cfg = replace_fields(vae.Config(), {**LINEAR, "model.latent": 1})
    x = jax.random.normal(jax.random.PRNGKey(0), (8, 3))
    state = vae.init(cfg, {"x": x}, key=jax.random.PRNGKey(1))
    params = _with_exact_posterior(state)
    exact = _exact_log_p(state, x)
    for k, chunk in ((1, 1), (64, 16)):
        got = vae.iwae_log_prob(
            params, x, jax.random.PRNGKey(k), config=cfg, num_samples=k, chunk=chunk
        )
        np.testing.assert_allclose(np.asarray(got), exact, atol=2e-4)


def test_iwae_bound_tightens_with_k_towards_the_exact_log_density():
    cfg, state = _linear_state()
    x = jax.random.normal(jax.random.PRNGKey(5), (16, 3))
    exact = _exact_log_p(state, x)
    iwae = partial(vae.iwae_log_prob, state.vae.params, x, config=cfg)
    key = jax.random.PRNGKey(7)
    k1 = np.asarray(iwae(key, num_samples=1, chunk=1)).mean()
    k100 = np.asarray(iwae(key, num_samples=100, chunk=10)).mean()
    k20k = np.asarray(iwae(key, num_samples=20_000, chunk=1000)).mean()
    # a lower bound in expectation that tightens with K; at K = 20k within MC error of log p
    assert k1 < k100 < k20k < exact.mean() + 0.05, (k1, k100, k20k, exact.mean())
    assert exact.mean() - k20k < 0.1


def test_iwae_chunking_is_a_streaming_log_sum_exp():
    """The log-sum-exp carried across chunks: a chunk's draws repeated n times give exactly
    that chunk's log-mean-exp (chunks of other draws: the exact-posterior test above)."""
    cfg, state = _linear_state()
    x = jax.random.normal(jax.random.PRNGKey(2), (4, 3))
    # log-mean-exp of one chunk repeated n times is that chunk's log-mean-exp
    key = jax.random.PRNGKey(3)
    single = vae.iwae_log_prob(state.vae.params, x, key, config=cfg, num_samples=50, chunk=50)
    first = jax.random.split(key, 1)[0]  # the key `single`'s one chunk drew with
    same_keys = lambda k, n: jnp.stack([first] * n)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(jax.random, "split", same_keys)
        repeated = vae.iwae_log_prob(
            state.vae.params, x, key, config=cfg, num_samples=200, chunk=50
        )
    np.testing.assert_allclose(np.asarray(repeated), np.asarray(single), rtol=1e-5)


def test_kl_term_matches_monte_carlo():
    cfg, state = _linear_state(seed=3)
    params = state.vae.params
    x = jax.random.normal(jax.random.PRNGKey(9), (6, 3))
    _, kl = vae.elbo_terms(params, x, jax.random.PRNGKey(0), config=cfg)
    mean, log_var = vae.encode(params, x, config=cfg)
    z = mean + jnp.exp(0.5 * log_var) * jax.random.normal(
        jax.random.PRNGKey(1), (200_000, *mean.shape)
    )
    log_q = vae.gaussian_log_prob(z, mean, 0.5 * log_var)
    log_p = vae.gaussian_log_prob(z, 0.0, 0.0)
    np.testing.assert_allclose(np.asarray(kl), np.asarray(jnp.mean(log_q - log_p, 0)), atol=0.02)


def test_draws_follow_the_model_marginal():
    """x = μ_x(ε_z) + σ_x ε_x of the linear VAE has mean b and covariance W Wᵀ + diag σ_x²."""
    cfg, state = _linear_state(seed=4)
    x, stats = vae.sample(state, 100_000, config=cfg, key=jax.random.PRNGKey(0), use_ema=False)
    dec = state.vae.params["decoder"]["dense_0"]
    w, b = np.asarray(dec["kernel"]).T, np.asarray(dec["bias"])
    cov = w @ w.T + np.diag(np.exp(2 * np.asarray(state.vae.params["log_sigma_x"])))
    np.testing.assert_allclose(np.asarray(x).mean(0), b, atol=0.02)
    np.testing.assert_allclose(np.cov(np.asarray(x).T), cov, atol=0.03)
    assert stats["nfe"].shape == (100_000,)
    cfg_mean = replace_fields(cfg, {"sample.decoder_mean": True})
    xm, _ = vae.sample(state, 1000, config=cfg_mean, key=jax.random.PRNGKey(0), use_ema=False)
    # decoder means lie on the plane b + W z: no spread off it
    resid = (np.asarray(xm) - b) - (np.asarray(xm) - b) @ np.linalg.pinv(w).T @ w.T
    assert np.abs(resid).max() < 1e-4


def test_train_step_jit_matches_eager_and_lowers_the_loss():
    cfg = replace_fields(vae.Config(), {"model.hidden": (32,)})
    x = jax.random.normal(jax.random.PRNGKey(0), (64, 2)) * jnp.array([2.0, 0.5])
    state = vae.init(cfg, {"x": x}, key=jax.random.PRNGKey(1))
    eager, m_e = vae.train_step(state, {"x": x}, config=cfg)
    jitted, m_j = jax.jit(partial(vae.train_step, config=cfg))(state, {"x": x})
    np.testing.assert_allclose(float(m_e["loss"]), float(m_j["loss"]), rtol=1e-5)
    step = jax.jit(partial(vae.train_step, config=cfg))
    first = float(m_j["loss"])
    for _ in range(300):
        state, m = step(state, {"x": x})
    assert float(m["loss"]) < first - 1.0


def test_bad_input_is_one_clear_error():
    cfg = vae.Config()
    with pytest.raises(ValueError, match=r"vae.init: takes flat data .* shape \(8, 8\)"):
        vae.init(cfg, {"x": np.zeros((4, 8, 8), np.float32)}, key=jax.random.PRNGKey(0))
    _, state = _linear_state()
    with pytest.raises(ValueError, match="vae.sample"):
        vae.sample(state, 0, config=replace_fields(cfg, LINEAR), key=jax.random.PRNGKey(0))


def test_images_are_seen_flattened_and_come_back_in_their_shape():
    """An image VAE (MLPs on the flattened pixels): σ_x per pixel, draws and the joint in the
    image's shape, and log p(x, z) the sum of the flat per-pixel terms."""
    cfg = replace_fields(vae.Config(), {"model.hidden": (16,), "model.latent": 3})
    x = jax.random.uniform(jax.random.PRNGKey(1), (4, 6, 6, 1), minval=-1.0, maxval=1.0)
    state = vae.init(cfg, {"x": x}, key=jax.random.PRNGKey(0))
    params = state.vae.params
    assert params["log_sigma_x"].shape == (6, 6, 1)
    draws, _ = vae.sample(state, 5, config=cfg, key=jax.random.PRNGKey(2))
    assert draws.shape == (5, 6, 6, 1)
    z = jax.random.normal(jax.random.PRNGKey(3), (4, 3))
    mean, log_sigma = vae.decode(params, z, config=cfg)
    flat = vae.gaussian_log_prob(x.reshape(4, -1), mean.reshape(4, -1), log_sigma.reshape(-1))
    expect = vae.gaussian_log_prob(z, 0.0, 0.0) + flat
    np.testing.assert_allclose(vae.log_joint(params, x, z, config=cfg), expect, rtol=1e-6)

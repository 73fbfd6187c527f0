"""The `vae` recipe (docs/methods/vae.md): the IWAE bound against the exact log p of a linear
Gaussian VAE, the KL term against Monte Carlo, draws against the model's marginal, and the
entry checks."""

import functools
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


# ---------------------------------------------------------------- conv networks, Bernoulli decoder

CONV = {"model.network": "conv", "model.width": 2, "model.latent": 3}


@functools.cache
def _conv_states(decoder="gaussian", steps=0):
    """A tiny conv VAE's config, its 8×8 images (the smallest the auto-encoder takes: M = 2) and
    its states after 0..`steps` training steps (after which its BatchNorm running averages are no
    longer the initial 0 and 1). Cached: the tests share one compiled step."""
    cfg = replace_fields(vae.Config(), {**CONV, "model.decoder": decoder})
    x = jax.random.uniform(jax.random.PRNGKey(0), (6, 8, 8, 1), minval=-1.0, maxval=1.0)
    states = [vae.init(cfg, {"x": x}, key=jax.random.PRNGKey(1))]
    step = jax.jit(partial(vae.train_step, config=cfg))
    for _ in range(steps):
        states.append(step(states[-1], {"x": x})[0])
    return cfg, x, states


def _conv_state(decoder="gaussian"):
    """`(config, images, state after 3 steps)` (Bernoulli: the fresh state)."""
    cfg, x, states = _conv_states(decoder, 3 if decoder == "gaussian" else 0)
    return cfg, states[-1], x


def _logsig(a):
    return -np.logaddexp(0.0, -a)  # log σ(a), float64


def test_bernoulli_log_likelihood_is_the_closed_form():
    """Σ y log σ(ℓ) + (1 − y) log(1 − σ(ℓ)), y = (x + 1)/2, on hand-made logits (saturated ones
    included), and the Bernoulli VAE's reconstruction term is that likelihood at the z its key
    draws, through its mean 2σ(ℓ) − 1 (no σ_x anywhere)."""
    logits = np.array([-30.0, -2.0, 0.0, 0.5, 3.0, 40.0, -1.0, 7.0]).reshape(2, 2, 2, 1)
    x = np.array([-1.0, -0.5, 0.0, 1.0, 0.2, 1.0, -1.0, -1.0]).reshape(2, 2, 2, 1)
    y = (x + 1) / 2
    want = np.sum((y * _logsig(logits) + (1 - y) * _logsig(-logits)).reshape(2, -1), -1)
    got = vae.bernoulli_log_prob(jnp.asarray(x, jnp.float32), jnp.asarray(logits, jnp.float32))
    np.testing.assert_allclose(np.asarray(got), want, rtol=1e-6)

    cfg, state, xs = _conv_state("bernoulli")
    params = vae.frozen_params(state)
    assert "log_sigma_x" not in params
    key = jax.random.PRNGKey(5)
    rec, _ = vae.elbo_terms(params, xs, key, config=cfg)
    mean, log_var = vae.encode(params, xs, config=cfg)
    z = mean + jnp.exp(0.5 * log_var) * jax.random.normal(key, mean.shape)
    x_mean, log_sigma = vae.decode(params, z, config=cfg, shape=xs.shape[1:])
    assert log_sigma is None
    p = np.clip((np.asarray(x_mean, np.float64) + 1) / 2, 1e-12, 1 - 1e-12)  # mean 2σ(ℓ) − 1
    yy = (np.asarray(xs, np.float64) + 1) / 2
    want_rec = np.sum((yy * np.log(p) + (1 - yy) * np.log1p(-p)).reshape(6, -1), -1)
    np.testing.assert_allclose(np.asarray(rec), want_rec, rtol=1e-5)


def test_conv_evaluation_uses_the_running_averages():
    """Reconstructions, decoder draws and the IWAE bound of one example do not depend on the
    other examples of its batch (BatchNorm on running averages; in training mode they do)."""
    cfg, state, x = _conv_state()
    params = vae.frozen_params(state)
    others = jax.random.uniform(jax.random.PRNGKey(9), (5, 8, 8, 1), minval=-1.0, maxval=1.0)
    x2 = x.at[1:].set(others)
    first = lambda a: np.asarray(a)[0]
    rec = lambda v: vae.reconstruct(state, v, config=cfg)
    np.testing.assert_allclose(first(rec(x)), first(rec(x2)), atol=1e-6)
    iwae = lambda v: vae.iwae_log_prob(
        params, v, jax.random.PRNGKey(2), config=cfg, num_samples=8, chunk=4
    )
    np.testing.assert_allclose(first(iwae(x)), first(iwae(x2)), rtol=1e-6)
    eps_z = jax.random.normal(jax.random.PRNGKey(3), (6, 3))
    eps_z2 = eps_z.at[1:].set(jax.random.normal(jax.random.PRNGKey(4), (5, 3)))
    gen = lambda e: vae.generate(params, e, None, config=cfg, mean=True)
    np.testing.assert_allclose(first(gen(eps_z)), first(gen(eps_z2)), atol=1e-6)
    # the check has teeth: with batch statistics the first row moves with the others
    train_dec = lambda e: vae.nets.apply_decoder(
        cfg.model, params, params["batch_stats"], e, (8, 8, 1), train=True
    )[0]
    assert np.abs(first(train_dec(eps_z)) - first(train_dec(eps_z2))).max() > 1e-3


def test_conv_train_step_updates_stats_and_params_and_the_loss_jits():
    cfg, x, (state, after, *_) = _conv_states("gaussian", 3)
    stats = state.vae.variables["batch_stats"]
    key = jax.random.PRNGKey(6)
    loss, (metrics, new_stats) = vae.loss_fn(state.vae.params, stats, x, key, config=cfg)
    loss_j, (_, new_stats_j) = jax.jit(partial(vae.loss_fn, config=cfg))(
        state.vae.params, stats, x, key
    )
    np.testing.assert_allclose(float(loss), float(loss_j), rtol=1e-5)
    for a, b in zip(jax.tree.leaves(new_stats), jax.tree.leaves(new_stats_j), strict=True):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-4, atol=1e-6)

    def changed(a, b):
        pairs = zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True)
        return [not np.allclose(u, v) for u, v in pairs]

    assert all(changed(stats, after.vae.variables["batch_stats"]))  # every mean and var
    assert all(changed(state.vae.params, after.vae.params))
    assert np.isfinite(float(loss)) and "log_sigma_x" in metrics


def _log_weights_by_hand(cfg, params, x, keys):
    """log p(z) + log N(x; μ_x(z), σ_x²) − log q(z | x) `[K, B]` in float64, z = μ + σ ε with
    ε the first row of `normal(k, (1, B, d))` for each key k (IWAE's draws at chunk 1)."""
    mean, log_var = vae.encode(params, x, config=cfg)
    m, lv = np.asarray(mean, np.float64), np.asarray(log_var, np.float64)
    out = []
    for k in keys:
        eps = np.asarray(jax.random.normal(k, (1, *mean.shape)))[0].astype(np.float64)
        z = m + np.exp(0.5 * lv) * eps
        x_mean, log_sigma = vae.decode(params, jnp.asarray(z, jnp.float32), config=cfg)
        ls = np.asarray(log_sigma, np.float64).reshape(-1)
        r = (np.asarray(x, np.float64) - np.asarray(x_mean, np.float64)).reshape(len(z), -1)
        log_px = np.sum(-0.5 * (r / np.exp(ls)) ** 2 - ls - 0.5 * np.log(2 * np.pi), -1)
        log_pz = np.sum(-0.5 * z**2 - 0.5 * np.log(2 * np.pi), -1)
        log_q = np.sum(-0.5 * eps**2 - 0.5 * lv - 0.5 * np.log(2 * np.pi), -1)
        out.append(log_pz + log_px - log_q)
    return np.stack(out)


def test_conv_iwae_is_the_log_mean_of_the_weights_by_hand():
    """On the conv Gaussian VAE: L_1 is the one-sample ELBO of its draw, and L_8 (chunks of 1)
    is log-mean-exp of the same 8 draws' weights, so ≥ their mean ELBO (Jensen, exactly)."""
    cfg, state, x = _conv_state()
    params = vae.frozen_params(state)
    iwae = partial(vae.iwae_log_prob, params, x, config=cfg, chunk=1)
    key = jax.random.PRNGKey(8)
    w1 = _log_weights_by_hand(cfg, params, x, jax.random.split(key, 1))[0]
    np.testing.assert_allclose(np.asarray(iwae(key, num_samples=1)), w1, rtol=1e-4)
    w = _log_weights_by_hand(cfg, params, x, jax.random.split(key, 8))
    l8 = np.logaddexp.reduce(w, axis=0) - np.log(8)
    np.testing.assert_allclose(np.asarray(iwae(key, num_samples=8)), l8, rtol=1e-4)
    assert np.all(l8 >= w.mean(0))


def test_conv_and_bernoulli_bad_inputs_are_one_line_errors():
    def error(fn, match):
        with pytest.raises(ValueError, match=match) as e:
            fn()
        assert "\n" not in str(e.value)

    key = jax.random.PRNGKey(0)
    flat = {"x": np.zeros((4, 2), np.float32)}
    conv = replace_fields(vae.Config(), CONV)
    bern = replace_fields(vae.Config(), {"model.decoder": "bernoulli"})
    error(lambda: vae.init(conv, flat, key=key), r"model.network='conv' takes images")
    odd = {"x": np.zeros((4, 6, 8, 1), np.float32)}
    error(lambda: vae.init(conv, odd, key=key), r"model.network='conv': .* square images")
    error(lambda: vae.init(bern, flat, key=key), r"model.decoder='bernoulli' .* takes images")
    cfg, state, x = _conv_state("bernoulli")
    error(
        lambda: vae.log_density(state, x, config=cfg, key=key),
        r"vae.log_density: a Bernoulli decoder .* no density of continuous pixels",
    )
    eps_z, eps_x = jnp.zeros((2, 3)), jnp.zeros((2, 8, 8, 1))
    params = vae.frozen_params(state)
    gen = lambda: vae.generate(params, eps_z, eps_x, config=cfg, shape=(8, 8, 1))
    error(gen, "a Bernoulli decoder has no ε_x")
    error(lambda: vae.encode(state.vae.params, x, config=cfg), "needs its BatchNorm running")


def test_tilt_base_of_a_bernoulli_vae_has_no_eps_x_and_no_density():
    from jaxgen.methods.tilt_base import vae_base

    cfg, state, _ = _conv_state("bernoulli")
    base = vae_base(cfg, state.example_shape)
    assert base.eps_shapes(3) == {"z": (3, 3)}
    assert base.log_joint is None and base.log_prob is None
    frozen = base.frozen_from(state)
    eps_z = jax.random.normal(jax.random.PRNGKey(1), (3, 3))
    x, z = base.generate(frozen, {"z": eps_z})
    want, _ = vae.decode(frozen, eps_z, config=cfg, shape=(8, 8, 1))  # 2σ(ℓ) − 1, running avgs
    np.testing.assert_allclose(np.asarray(x), np.asarray(want), rtol=1e-6)
    assert x.shape == (3, 8, 8, 1) and np.abs(np.asarray(x)).max() < 1
    draws, _ = vae.sample(state, 3, config=cfg, key=jax.random.PRNGKey(1))  # means: no ε_x
    assert draws.shape == (3, 8, 8, 1)
    gauss_cfg, gauss_state, _ = _conv_state()
    assert vae_base(gauss_cfg, gauss_state.example_shape).eps_shapes(3)["x"] == (3, 8, 8, 1)

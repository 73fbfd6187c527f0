"""Mathematical checks of jaxgen.samplers.diffusion (DDGAN, thesis ch. 6; docs/methods/ddgan.md).

* The schedule: the printed table of β_t, ᾱ_t and the code variant's β̃_t for T = 1, 2, 4, 8 to
  the printed digits; 1 − ᾱ_t = σ²(t/T) (eq. 6.14) and eq. 6.15 in float64; the same variance
  path for every T; ᾱ = cumprod(1 − β) including the dummy β₀.
* The forward process: q_step after q_sample (and q_pair) has the marginal q(x_t | x₀) and the
  pair covariance √α_t(1 − ᾱ_{t−1}) of the joint, within Monte Carlo standard errors.
* The posterior against Gaussian conditioning of the joint of (x_{t−1}, x_t) given x₀ (float64),
  β̃₁ = 0 exactly; posterior draws from x_t ~ q(x_t | x₀) have the marginal q(x_{t−1} | x₀); ε-to-x₀
  (eq. 6.9) inverts q_sample and turns the posterior mean into the DDPM mean (eq. 6.7, 6.11).
* The chain with the exact x₀-posterior of a 1-D two-Gaussian mixture reproduces the data at
  T = 2 and 4 (thesis Fig. 6.3): mode proportions, centres and widths, no mass in between, KS.
  The unimodal denoiser x̂₀ = E[x₀ | x_t] at T = 2 does not (its samples fill the gap).
* The chain equals a hand-written loop over t = T..1 (same documented keys), jit equals no-jit,
  image-shaped x, latent_dim = 0, the last step returns x̂₀ exactly; one-line ValueErrors.

Tolerances: float32 round-off, or Z Monte Carlo standard errors.
"""

import decimal
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.scipy.special import ndtr
from scipy import stats

from jaxgen.samplers.diffusion import (
    VPSchedule,
    ddgan_chain,
    eps_to_x0,
    posterior_mean_var,
    posterior_sample,
    q_pair,
    q_sample,
    q_step,
    vp_schedule,
)

Z = 5.0  # Monte Carlo checks: |estimate − truth| < Z standard errors (two-sided p ≈ 6e-7)
BMIN, BMAX = 0.1, 20.0


def _sigma2(s):
    """σ²(t') of the VP-SDE (eq. 6.14), float64."""
    return -np.expm1(-BMIN * s - 0.5 * (BMAX - BMIN) * s**2)


def _ref_alphas_bar(num, offset):
    """ᾱ_k, k = 0..T, float64: 1 − σ² at t'_k = ε + (1 − ε)k/T, normalised so that ᾱ₀ = 1."""
    s = offset + (1 - offset) * np.arange(num + 1) / num
    ab = 1.0 - _sigma2(s)
    return ab / ab[0]


# ---------------------------------------------------------------------------------------------
# The schedule
# ---------------------------------------------------------------------------------------------

# the spec's table (β_min = 0.1, β_max = 20); "" = not printed
TABLE = {
    1: {
        "beta": ["0.99996"],
        "abar": ["4.3e-5"],
        "beta_code": ["0.99996"],
        "var_code": ["0"],
    },
    2: {
        "beta": ["0.92094", "0.99945"],
        "abar": ["0.0791", "4.3e-5"],
        "beta_code": ["0.92132", "0.99945"],
        "var_code": ["0", "0.9209"],
    },
    4: {
        "beta": ["0.47632", "0.84902", "0.95647", "0.98745"],
        "abar": ["0.5237", "0.0791", "3.44e-3", "4.3e-5"],
        "beta_code": ["0.47826", "0.84921", "0.95642", "0.98740"],
        "var_code": ["0", "0.4408", "0.8842", "0.9841"],
    },
    8: {
        "beta": ["0.1546", "0.3805", "0.5461", "0.6674", "0.7563", "0.8214", "0.8691", "0.9041"],
        "abar": ["0.845", "", "", "", "", "", "", "4.3e-5"],
        "beta_code": [""] * 8,  # printed as "≈ same"; checked below to 2e-3
        "var_code": ["0", "0.125", "0.342", "0.553", "0.710", "0.808", "0.866", "0.904"],
    },
}


def _assert_printed(values, printed, what):
    """Each value rounds to its printed string: within half a unit of the last printed digit
    (plus float32 round-off); a printed "0" must be exactly 0."""
    for t, (v, p) in enumerate(zip(np.asarray(values, np.float64), printed, strict=True), 1):
        if not p:
            continue
        if p == "0":
            assert v == 0.0, f"{what}[t={t}] = {v!r}, printed 0"
            continue
        half_unit = 0.5 * 10.0 ** decimal.Decimal(p).as_tuple().exponent
        assert abs(v - float(p)) <= half_unit + 1e-7 * abs(v), f"{what}[t={t}] = {v}, printed {p}"


@pytest.mark.parametrize("num", [1, 2, 4, 8])
def test_schedule_table(num):
    row = TABLE[num]
    thesis, code = vp_schedule(num), vp_schedule(num, offset=1e-3)
    for s in (thesis, code):
        assert isinstance(s, VPSchedule) and s.num_steps == num
        assert s.betas.dtype == jnp.float32 and s.betas.shape == (num + 1,)
        assert float(s.alphas_bar[0]) == 1.0 and float(s.betas[0]) == np.float32(1e-8)
    _assert_printed(thesis.betas[1:], row["beta"], "beta")
    _assert_printed(thesis.alphas_bar[1:], row["abar"], "abar")
    _assert_printed(code.betas[1:], row["beta_code"], "beta_code")
    _assert_printed(code.posterior_var[1:], row["var_code"], "var_code")
    # "≈ same": the ε shift moves β_t by < 2e-3 (most at t = 1 of T = 8: 0.15645 vs 0.15462)
    np.testing.assert_allclose(code.betas[1:], thesis.betas[1:], atol=2e-3)


def _assert_cumprod(s):
    """ᾱ = cumprod(1 − β) over the stored float32 β, dummy β₀ included (1 − 1e-8 = 1 in float32).
    Absolute tolerance: 1 − β of a float32 β ≈ 1 loses ≈ 6e-8 absolutely (at T = 1, 1 − β₁ ≈
    4.3e-5 keeps only ≈ 3 digits, which is why ᾱ is stored, not recomputed)."""
    np.testing.assert_allclose(jnp.cumprod(1.0 - s.betas), s.alphas_bar, rtol=1e-5, atol=1e-7)
    assert float(jnp.cumprod(1.0 - s.betas)[0]) == 1.0


@pytest.mark.parametrize("num", [1, 2, 3, 4, 8, 16])
def test_thesis_schedule_is_the_vp_sde_variance_path(num):
    """1 − ᾱ_t = σ²(t/T) (eq. 6.14), β_t by eq. 6.15, and ᾱ = cumprod(1 − β) with the dummy β₀
    (1 − 1e-8 = 1 in float32). The variance path does not depend on T."""
    s = vp_schedule(num)
    t = np.arange(num + 1)
    np.testing.assert_allclose(1.0 - np.asarray(s.alphas_bar, np.float64), _sigma2(t / num),
                               rtol=1e-6)  # fmt: skip
    tt = t[1:]
    beta_615 = -np.expm1(-BMIN / num - (BMAX - BMIN) * (2 * tt - 1) / (2 * num**2))
    np.testing.assert_allclose(s.betas[1:], beta_615, rtol=1e-6)
    _assert_cumprod(s)
    # the same point t/T = 1/2 of the path at T = 2, 4, 8 (and 1 at every T)
    if num % 2 == 0:
        np.testing.assert_allclose(float(s.alphas_bar[num // 2]), 1.0 - _sigma2(0.5), rtol=1e-6)
    np.testing.assert_allclose(float(s.alphas_bar[num]), 1.0 - _sigma2(1.0), rtol=1e-6)


@pytest.mark.parametrize("num", [2, 4, 8])
def test_code_schedule_ratios(num):
    """Code variant: β_k = 1 − ᾱ(t'_k)/ᾱ(t'_{k−1}) on the shifted grid, ᾱ_k relative to t'_0."""
    s = vp_schedule(num, offset=1e-3)
    ab = _ref_alphas_bar(num, 1e-3)
    np.testing.assert_allclose(s.alphas_bar, ab, rtol=1e-6)
    np.testing.assert_allclose(s.betas[1:], 1.0 - ab[1:] / ab[:-1], rtol=1e-6)
    _assert_cumprod(s)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"num_steps": 0}, "num_steps \\(T\\) must be an int >= 1, got 0"),
        ({"num_steps": -3}, "got -3"),
        ({"num_steps": 2.5}, "got 2.5"),
        ({"num_steps": True}, "got True"),
        ({"num_steps": 4, "beta_min": 0.0}, "beta_min must be finite and > 0, got 0.0"),
        ({"num_steps": 4, "beta_min": -0.1}, "beta_min .* got -0.1"),
        ({"num_steps": 4, "beta_min": float("nan")}, "beta_min .* got nan"),
        ({"num_steps": 4, "beta_max": 0.05}, "beta_max must be finite and >= beta_min=0.1, got"),
        ({"num_steps": 4, "beta_max": float("inf")}, "beta_max .* got inf"),
        ({"num_steps": 4, "offset": -1e-3}, "offset \\(ε\\) must be in \\[0, 1\\), got -0.001"),
        ({"num_steps": 4, "offset": 1.0}, "offset .* got 1.0"),
    ],
)
def test_schedule_errors(kwargs, match):
    with pytest.raises(ValueError, match=match) as err:
        vp_schedule(**kwargs)
    assert "\n" not in str(err.value)


def test_constant_beta_range_is_allowed():
    s = vp_schedule(4, beta_min=1.0, beta_max=1.0)  # constant β(t') of the SDE
    np.testing.assert_allclose(s.betas[1:], -np.expm1(-0.25), rtol=1e-6)


# ---------------------------------------------------------------------------------------------
# The forward process
# ---------------------------------------------------------------------------------------------


def _check_moments(x, mean, var, what):
    """Sample mean and variance of a 1-D Gaussian sample against the truth (SE √(v/n) and
    v√(2/(n−1)))."""
    x = np.asarray(x, np.float64).ravel()
    n = x.size
    assert abs(x.mean() - mean) < Z * math.sqrt(var / n), f"{what}: mean {x.mean()} vs {mean}"
    assert abs(x.var(ddof=1) - var) < Z * var * math.sqrt(2.0 / (n - 1)), (
        f"{what}: var {x.var(ddof=1)} vs {var}"
    )


@pytest.mark.parametrize("offset", [0.0, 1e-3])
def test_forward_step_after_marginal_is_the_marginal(offset):
    """x_{t−1} ~ q(· | x₀) then one q_step is x_t ~ q(x_t | x₀); q_pair's pair has the joint's
    covariance √α_t (1 − ᾱ_{t−1}) (SE of a sample covariance: √((v₁v₂ + c²)/n))."""
    num, n, x0_value = 4, 200_000, 0.7
    s = vp_schedule(num, offset=offset)
    ab = _ref_alphas_bar(num, offset)
    x0 = jnp.full((n, 1), x0_value, jnp.float32)
    for t in range(1, num + 1):
        k1, k2, k3 = jax.random.split(jax.random.key(t), 3)
        tb = jnp.full((n,), t, jnp.int32)
        x_prev = q_sample(s, x0, tb - 1, jax.random.normal(k1, x0.shape))
        x_t = q_step(s, x_prev, tb, jax.random.normal(k2, x0.shape))
        _check_moments(x_t, math.sqrt(ab[t]) * x0_value, 1.0 - ab[t], f"q_step∘q_sample t={t}")

        p_prev, p_t = (np.asarray(v, np.float64).ravel() for v in q_pair(s, x0, tb, k3))
        v1, v2 = 1.0 - ab[t - 1], 1.0 - ab[t]
        _check_moments(p_t, math.sqrt(ab[t]) * x0_value, v2, f"q_pair x_t t={t}")
        if t == 1:
            assert np.all(p_prev == np.float32(x0_value))  # x₀ itself
            continue
        _check_moments(p_prev, math.sqrt(ab[t - 1]) * x0_value, v1, f"q_pair x_t-1 t={t}")
        cov = math.sqrt(ab[t] / ab[t - 1]) * v1
        c_hat = np.cov(p_prev, p_t)[0, 1]
        assert abs(c_hat - cov) < Z * math.sqrt((v1 * v2 + cov**2) / n), f"cov {c_hat} vs {cov}"


def test_forward_shapes_and_step_checks():
    s = vp_schedule(4)
    x0 = jnp.ones((3, 4, 4, 2))
    noise = jnp.zeros_like(x0)
    t = jnp.array([0, 2, 4])
    out = q_sample(s, x0, t, noise)
    assert out.shape == x0.shape
    np.testing.assert_allclose(out[:, 0, 0, 0], np.sqrt(np.asarray(s.alphas_bar)[[0, 2, 4]]))
    np.testing.assert_array_equal(q_sample(s, x0, 0, noise), x0)  # a scalar t is broadcast
    xp, xt = q_pair(s, x0, jnp.array([1, 2, 4]), jax.random.key(0))
    assert xp.shape == xt.shape == x0.shape
    np.testing.assert_array_equal(xp[0], x0[0])  # t = 1: x_{t−1} = x₀
    with pytest.raises(ValueError, match="q_step: t must be in 1..4, got values in 0..2"):
        q_step(s, x0, jnp.array([0, 1, 2]), noise)
    with pytest.raises(ValueError, match="q_sample: t must be in 0..4, got values in 0..5"):
        q_sample(s, x0, jnp.array([0, 1, 5]), noise)
    with pytest.raises(ValueError, match="t must have shape \\[B\\]=\\(3,\\), got \\(2,\\)"):
        q_sample(s, x0, jnp.array([1, 2]), noise)
    with pytest.raises(ValueError, match="t must hold integer steps, got dtype float32"):
        q_sample(s, x0, jnp.array([1.0, 2.0, 3.0]), noise)


# ---------------------------------------------------------------------------------------------
# The posterior
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("offset", [0.0, 1e-3])
@pytest.mark.parametrize("num", [1, 2, 4, 8])
def test_posterior_is_gaussian_conditioning(num, offset):
    """q(x_{t−1} | x_t, x₀) from the joint Gaussian of (x_{t−1}, x_t) | x₀ (float64):
    variances 1 − ᾱ_{t−1}, 1 − ᾱ_t, covariance √α_t (1 − ᾱ_{t−1}); conditional mean
    m₁ + c/v₂ (x_t − m₂) and variance v₁ − c²/v₂."""
    s = vp_schedule(num, offset=offset)
    ab = _ref_alphas_bar(num, offset)
    rng = np.random.default_rng(num)
    b = 2 * num
    t = np.tile(np.arange(1, num + 1), 2)
    x0 = rng.standard_normal((b, 3, 2))
    x_t = rng.standard_normal((b, 3, 2)) * 1.5
    a_prev, a_t = ab[t - 1][:, None, None], ab[t][:, None, None]
    v1, v2 = 1.0 - a_prev, 1.0 - a_t
    c = np.sqrt(a_t / a_prev) * v1
    mean_ref = np.sqrt(a_prev) * x0 + c / v2 * (x_t - np.sqrt(a_t) * x0)
    var_ref = (v1 - c**2 / v2)[:, 0, 0]

    f32 = lambda v: jnp.asarray(v, jnp.float32)
    mean, var = posterior_mean_var(s, f32(x0), f32(x_t), jnp.asarray(t))
    assert mean.shape == x0.shape and var.shape == (b,)
    np.testing.assert_allclose(mean, mean_ref, rtol=2e-6, atol=2e-6)
    np.testing.assert_allclose(var, var_ref, rtol=2e-6, atol=1e-7)
    # step 1: variance exactly 0, mean exactly x₀ (coefficients 1 and 0)
    assert float(s.posterior_var[1]) == 0.0 and not np.signbit(s.posterior_var[1])
    assert float(s.posterior_coef_x0[1]) == 1.0 and float(s.posterior_coef_xt[1]) == 0.0
    assert float(s.posterior_log_var[1]) == np.float32(math.log(1e-20))
    np.testing.assert_allclose(s.posterior_log_var[2:], np.log(var_ref[1:num]), rtol=1e-5)
    noise = f32(rng.standard_normal(x0.shape))
    draw = posterior_sample(s, f32(x0), f32(x_t), jnp.asarray(t), noise)
    np.testing.assert_allclose(draw, mean + jnp.sqrt(var)[:, None, None] * noise, rtol=1e-6)
    step1 = t == 1
    np.testing.assert_array_equal(np.asarray(draw)[step1], f32(x0)[step1])


def test_posterior_draws_have_the_marginal():
    """x_t ~ q(x_t | x₀), then x_{t−1} ~ q(x_{t−1} | x_t, x₀): x_{t−1} ~ q(x_{t−1} | x₀)."""
    num, n, x0_value = 4, 200_000, -0.4
    s = vp_schedule(num, offset=1e-3)
    ab = np.asarray(s.alphas_bar, np.float64)
    x0 = jnp.full((n, 1), x0_value, jnp.float32)
    for t in range(2, num + 1):
        k1, k2 = jax.random.split(jax.random.key(10 + t))
        tb = jnp.full((n,), t, jnp.int32)
        x_t = q_sample(s, x0, tb, jax.random.normal(k1, x0.shape))
        x_prev = posterior_sample(s, x0, x_t, tb, jax.random.normal(k2, x0.shape))
        mean, var = math.sqrt(ab[t - 1]) * x0_value, 1.0 - ab[t - 1]
        _check_moments(x_prev, mean, var, f"posterior draw t={t}")


def test_eps_to_x0_inverts_q_sample_and_gives_the_ddpm_mean():
    """x̂₀(x_t, ε) of eq. 6.9 recovers x₀; with it, μ̃_t = (x_t − β_t/√(1 − ᾱ_t) ε)/√α_t, the DDPM
    sampling mean (eq. 6.7, 6.11)."""
    num = 4
    s = vp_schedule(num)
    rng = np.random.default_rng(0)
    x0 = jnp.asarray(rng.uniform(-1, 1, (8, 5)), jnp.float32)
    eps = jnp.asarray(rng.standard_normal((8, 5)), jnp.float32)
    t = jnp.array([1, 2, 3, 4, 1, 2, 3, 4])
    x_t = q_sample(s, x0, t, eps)
    ab = np.asarray(s.alphas_bar, np.float64)[np.asarray(t)][:, None]
    x0_hat = eps_to_x0(s, x_t, eps, t)
    # 1/√ᾱ_T ≈ 152 magnifies the float32 round-off of x_t
    np.testing.assert_allclose(x0_hat, x0, atol=2e-7 / np.sqrt(ab).min() * 4)
    beta = np.asarray(s.betas, np.float64)[np.asarray(t)][:, None]
    x_t64 = np.asarray(x_t, np.float64)
    ddpm = (x_t64 - beta / np.sqrt(1.0 - ab) * np.asarray(eps, np.float64)) / np.sqrt(1.0 - beta)
    mean, _ = posterior_mean_var(s, x0_hat, x_t, t)
    np.testing.assert_allclose(mean, ddpm, rtol=1e-5, atol=2e-5)


# ---------------------------------------------------------------------------------------------
# The chain on a 1-D two-Gaussian mixture (thesis Fig. 6.3)
# ---------------------------------------------------------------------------------------------

W1, MU, SD = 0.7, 1.0, 0.05  # data: 0.3 N(−1, 0.05²) + 0.7 N(1, 0.05²)


def _x0_posterior(s: VPSchedule, x_t, t):
    """x₀ | x_t for the mixture, exactly: component k has x_t | k ~ N(√ᾱ μ_k, ᾱ SD² + 1 − ᾱ), so
    P(k = +1 | x_t) = sigmoid(log(W1/(1 − W1)) + 2√ᾱ μ x_t / v), and x₀ | x_t, k is Gaussian
    with mean μ_k + √ᾱ SD²/v (x_t − √ᾱ μ_k) and variance SD²(1 − ᾱ)/v. `x_t` `[B, 1]`."""
    ab = s.alphas_bar[t][:, None]
    v = ab * SD**2 + 1.0 - ab
    p_plus = jax.nn.sigmoid(math.log(W1 / (1 - W1)) + 2.0 * jnp.sqrt(ab) * MU * x_t / v)
    gain = jnp.sqrt(ab) * SD**2 / v
    m_plus = MU + gain * (x_t - jnp.sqrt(ab) * MU)
    m_minus = -MU + gain * (x_t + jnp.sqrt(ab) * MU)
    return p_plus, m_plus, m_minus, SD * jnp.sqrt((1.0 - ab) / v)


def _exact_denoiser(s):
    """Draws x₀ ~ q(x₀ | x_t) from z = (z_sel, z_val): component +1 iff Φ(z_sel) < P(+1 | x_t)."""

    def denoiser(x_t, z, t):
        assert z.shape == (x_t.shape[0], 2) and t.dtype == jnp.int32 and t.shape == x_t.shape[:1]
        p_plus, m_plus, m_minus, sd = _x0_posterior(s, x_t, t)
        mean = jnp.where(ndtr(z[:, :1]) < p_plus, m_plus, m_minus)
        return mean + sd * z[:, 1:]

    return denoiser


def _mean_denoiser(s):
    """The unimodal x̂₀ = E[x₀ | x_t], no latent."""

    def denoiser(x_t, z, t):
        assert z.shape == (x_t.shape[0], 0)
        p_plus, m_plus, m_minus, _ = _x0_posterior(s, x_t, t)
        return p_plus * m_plus + (1.0 - p_plus) * m_minus

    return denoiser


def _mixture_cdf(x):
    return (1 - W1) * stats.norm.cdf(x, -MU, SD) + W1 * stats.norm.cdf(x, MU, SD)


def _run(denoiser, s, latent_dim, n=100_000, seed=0):
    k_start, k_chain = jax.random.split(jax.random.key(seed))
    x_T = jax.random.normal(k_start, (n, 1))  # N(0, 1) vs q(x_T): TV ~ √ᾱ_T ≈ 7e-3 · 1e-3
    x0, st = ddgan_chain(denoiser, s, x_T, k_chain, latent_dim=latent_dim)
    np.testing.assert_array_equal(st["nfe"], np.full(n, s.num_steps))
    return np.asarray(x0, np.float64).ravel()


@pytest.mark.parametrize(("num", "offset"), [(2, 0.0), (2, 1e-3), (4, 0.0), (4, 1e-3)])
def test_chain_with_exact_posterior_reproduces_the_mixture(num, offset):
    """p_θ(x_{t−1} | x_t) = ∫ q(x_{t−1} | x_t, x₀) q(x₀ | x_t) dx₀ = q(x_{t−1} | x_t): the chain is
    exact at any T. Mode weight (SE √(w(1 − w)/n)), centres (SE SD/√n_k), widths (SE
    SD/√(2n_k)); nothing between the modes (10 SD from both); KS against the mixture CDF."""
    s = vp_schedule(num, offset=offset)
    x = _run(_exact_denoiser(s), s, latent_dim=2)
    n = x.size
    plus = x > 0
    w_hat = plus.mean()
    assert abs(w_hat - W1) < Z * math.sqrt(W1 * (1 - W1) / n), w_hat
    for side, centre in ((x[plus], MU), (x[~plus], -MU)):
        assert abs(side.mean() - centre) < Z * SD / math.sqrt(side.size), side.mean()
        assert abs(side.std(ddof=1) - SD) < Z * SD / math.sqrt(2 * side.size), side.std()
    assert np.sum(np.abs(x) < 0.5) == 0
    assert stats.kstest(x, _mixture_cdf).pvalue > 1e-4


def test_unimodal_denoiser_fails_at_two_steps():
    """x̂₀ = E[x₀ | x_t] (no latent) at T = 2: the last step is deterministic, x₀ = E[x₀ | x₁], a
    smooth function of a wide x₁, so its samples fill the gap between the modes (measured: 62%
    within |x| < 0.5, 6% on the minor side instead of 30%, KS distance 0.70). The same
    denoiser with small steps (T = 32) nearly empties the gap: the failure is the step size."""
    s = vp_schedule(2)
    x = _run(_mean_denoiser(s), s, latent_dim=0)
    between = np.mean(np.abs(x) < 0.5)  # the data: 2Φ(−10) ≈ 1.5e-23
    assert between > 0.4, between
    assert abs(np.mean(x > 0) - W1) > 0.15, np.mean(x > 0)
    assert stats.kstest(x, _mixture_cdf).statistic > 0.5
    s32 = vp_schedule(32)
    x32 = _run(_mean_denoiser(s32), s32, latent_dim=0, n=20_000)
    assert np.mean(np.abs(x32) < 0.5) < 1e-3


# ---------------------------------------------------------------------------------------------
# The chain's mechanics
# ---------------------------------------------------------------------------------------------

_W = jnp.asarray(np.random.default_rng(1).standard_normal((5, 48)) * 0.3, jnp.float32)


def _image_denoiser(x_t, z, t):
    """A fixed smooth x̂₀(x_t, z, t) for `[B, 4, 4, 3]` with a latent of dim 5."""
    assert t.dtype == jnp.int32 and t.shape == x_t.shape[:1] and z.shape == (x_t.shape[0], 5)
    zt = (z @ _W).reshape(x_t.shape)
    return jnp.tanh(0.6 * x_t + zt + 0.1 * t[:, None, None, None].astype(x_t.dtype))


@pytest.mark.parametrize("offset", [0.0, 1e-3])
def test_chain_equals_a_hand_written_loop_and_jit(offset):
    num, b = 4, 6
    s = vp_schedule(num, offset=offset)
    key = jax.random.key(3)
    x_T = jax.random.normal(jax.random.key(4), (b, 4, 4, 3))
    x0, st = ddgan_chain(_image_denoiser, s, x_T, key, latent_dim=5)
    assert x0.shape == (b, 4, 4, 3) and x0.dtype == jnp.float32
    np.testing.assert_array_equal(st["nfe"], np.full(b, num))
    # the documented draws: step t uses split(fold_in(key, t)) = (latent key, noise key)
    x = x_T
    for t in range(num, 0, -1):
        k_z, k_noise = jax.random.split(jax.random.fold_in(key, t))
        tb = jnp.full((b,), t, jnp.int32)
        x0_hat = _image_denoiser(x, jax.random.normal(k_z, (b, 5)), tb)
        x = posterior_sample(s, x0_hat, x, tb, jax.random.normal(k_noise, x.shape))
        if t == 1:
            np.testing.assert_array_equal(x, x0_hat)  # no noise at the last step
    np.testing.assert_allclose(x0, x, rtol=1e-6, atol=1e-6)
    jitted = jax.jit(lambda sch, xT, k: ddgan_chain(_image_denoiser, sch, xT, k, latent_dim=5))
    x0_jit, st_jit = jitted(s, x_T, key)
    np.testing.assert_allclose(x0_jit, x0, rtol=1e-6, atol=1e-6)
    np.testing.assert_array_equal(st_jit["nfe"], st["nfe"])


def test_chain_at_one_step_is_the_denoiser():
    """T = 1: x₀ = x̂₀(x₁, z, 1) exactly (an unconditional generator)."""
    s = vp_schedule(1)
    x_T = jnp.linspace(-2, 2, 8).reshape(8, 1)
    x0, _ = ddgan_chain(lambda x, z, t: 0.5 * x + z[:, :1] * 0.0 + 0.25, s, x_T,
                        jax.random.key(0), latent_dim=1)  # fmt: skip
    np.testing.assert_array_equal(x0, 0.5 * x_T + 0.25)


def test_chain_errors():
    s = vp_schedule(2)
    x_T = jnp.zeros((4, 3))
    with pytest.raises(ValueError, match="latent_dim must be an int >= 0, got -1") as err:
        ddgan_chain(lambda x, z, t: x, s, x_T, jax.random.key(0), latent_dim=-1)
    assert "\n" not in str(err.value)
    with pytest.raises(ValueError, match="must return x̂₀ of shape \\(4, 3\\), got \\(4, 1\\)"):
        ddgan_chain(lambda x, z, t: x[:, :1], s, x_T, jax.random.key(0), latent_dim=0)


def test_the_direct_chain_is_the_denoiser_applied_t_times():
    """`posterior=False` (DDGAN's direct-denoising ablation): x_{t−1} = G(x_t, z, t), no
    posterior noise, with the same per-step latents as the posterior chain."""
    sched = vp_schedule(3)

    def denoiser(x, z, t):
        return 0.5 * x + z[:, :1]

    x_T = jnp.ones((4, 1))
    key = jax.random.PRNGKey(0)
    out, stats = ddgan_chain(denoiser, sched, x_T, key, latent_dim=1, posterior=False)
    want = x_T
    for t in (3, 2, 1):
        k_z, _ = jax.random.split(jax.random.fold_in(key, t))
        want = 0.5 * want + jax.random.normal(k_z, (4, 1))
    np.testing.assert_allclose(out, want, rtol=1e-6)
    assert stats["nfe"].tolist() == [3] * 4

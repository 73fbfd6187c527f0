"""Mathematical checks of jaxgen.samplers.langevin (docs/methods/shortrun_ebm.md eq. 1.3).

* Gaussian energy: the moments of many chains after K steps of `thesis_setting(η)` equal the
  exact moments of the Euler–Maruyama recursion (whose stationary variance s²/(1 − η/(4s²)) is
  derived below), within Monte Carlo standard errors.
* Two-mode mixture: independent chains started in either mode end on each side in the target's
  proportions; the reference is the K-step law of the same discrete chain, computed by a
  transfer matrix on a grid (float64).
* Pure noise (E ≡ 0): each leaf's increment is N(0, K·noise_std²), independent across leaves.
* jit equals no-jit; pytree chains and step schedules equal hand-written loops with analytic
  gradients; noise_std = 0 ignores the key; argument validation.
* `differentiable=True`: d/dθ of the unrolled noise-free dynamics of E_θ = ½θ‖x‖² in closed form,
  0 with `differentiable=False`, the same with `checkpoint=True`.
* `unroll`: the unrolled scan gives the rolled one's chains, trace and gradient.
* The trace: batch means of E(x_k) and of ‖∇E(x_k)‖ at each step's start.

Tolerances: float32 round-off (≈1.2e-7 relative per operation, growing at most linearly with the
number of steps for these contracting maps) or Z Monte Carlo standard errors.
"""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.special import logsumexp
from scipy.stats import norm

from jaxgen.samplers.langevin import langevin, thesis_setting

Z = 5.0  # Monte Carlo checks: |estimate − truth| < Z standard errors (two-sided p ≈ 6e-7)


def _rand(shape, seed=0):
    return jnp.asarray(np.random.default_rng(seed).standard_normal(shape), jnp.float32)


def _gaussian_energy(mu, s2):
    """E(x) = ½ Σ_d (x_d − μ_d)² / s²_d per chain: `[B, D] -> [B]`."""
    mu, s2 = jnp.asarray(mu, jnp.float32), jnp.asarray(s2, jnp.float32)
    return lambda x: 0.5 * jnp.sum((x - mu) ** 2 / s2, axis=1)


# ---------------------------------------------------------------------------------------------
# Stationary laws
# ---------------------------------------------------------------------------------------------


def test_thesis_setting():
    assert thesis_setting(0.01) == {"step": 0.005, "noise_std": math.sqrt(0.01)}
    with pytest.raises(ValueError, match="eta must be > 0"):
        thesis_setting(0.0)


def test_gaussian_moments_match_discrete_stationary_law():
    """x ← x − (η/2)(x − μ)/s² + √η ω, i.e. x − μ ← (1 − a)(x − μ) + √η ω with a = η/(2s²).
    From x₀ = 0: E x_K = μ(1 − (1 − a)^K) and Var x_K = v∞(1 − (1 − a)^{2K}), where
    v∞ = (1 − a)² v∞ + η gives v∞ = η/(a(2 − a)) = s²/(1 − η/(4s²)). x_K is exactly Gaussian,
    so the sample mean has SE √(v/n) and the sample variance SE v√(2/(n − 1))."""
    mu = np.array([1.0, -0.5, 2.0])
    s2 = np.array([0.25, 0.5, 1.0])  # unequal: a wrong per-dimension scaling shows
    eta, n, k = 0.01, 4000, 2000
    x_k, _ = langevin(
        _gaussian_energy(mu, s2),
        jnp.zeros((n, 3), jnp.float32),
        jax.random.key(0),
        num_steps=k,
        **thesis_setting(eta),
    )
    x_k = np.asarray(x_k, np.float64)

    a = eta / (2.0 * s2)
    v_inf = s2 / (1.0 - eta / (4.0 * s2))
    np.testing.assert_allclose(v_inf, eta / (a * (2.0 - a)), rtol=1e-12)
    mean_k = mu * (1.0 - (1.0 - a) ** k)
    var_k = v_inf * (1.0 - (1.0 - a) ** (2 * k))
    # K·a ≥ 10: the K-step moments are the stationary ones to < 1e-2 standard errors
    assert np.all(np.abs(mean_k - mu) < 0.01 * np.sqrt(v_inf / n))
    assert np.all(np.abs(var_k - v_inf) < 0.01 * v_inf * math.sqrt(2.0 / (n - 1)))

    mean, var = x_k.mean(0), x_k.var(0, ddof=1)
    assert np.all(np.abs(mean - mean_k) < Z * np.sqrt(var_k / n)), (mean, mean_k)
    assert np.all(np.abs(var - var_k) < Z * var_k * math.sqrt(2.0 / (n - 1))), (var, var_k)
    # independent noise across dimensions: sample covariance ≈ 0 with SE √(v_i v_j / n)
    cov = np.cov(x_k, rowvar=False)
    for i, j in [(0, 1), (0, 2), (1, 2)]:
        assert abs(cov[i, j]) < Z * math.sqrt(var_k[i] * var_k[j] / n), (i, j, cov[i, j])


_W = np.array([0.3, 0.7])  # mixture weights
_M = np.array([-1.5, 1.5])  # mode centres on axis 0 (axis 1: 0)
_S = 0.5  # per-mode standard deviation


def _mixture_energy(x):
    """E(x) = −log Σ_i w_i N(x; (m_i, 0), s² I) up to a constant: `[B, 2] -> [B]`."""
    logits = jnp.log(jnp.asarray(_W, jnp.float32)) - (
        (x[:, :1] - jnp.asarray(_M, jnp.float32)) ** 2 + x[:, 1:] ** 2
    ) / (2.0 * _S**2)
    return -jax.nn.logsumexp(logits, axis=1)


def _grid_side_fractions(starts, eta, k, n_grid=400, lim=4.5):
    """P(x_K[0] < 0 | x_0[0] = start) for each start, for the discrete chain
    x ← x − (η/2)∇E + √η ω, in float64.

    The energy separates (the axis-1 term is common to both modes), so axis 0 is a 1-D Markov
    chain with kernel N(x − (η/2)E₀'(x), η); K steps of its transfer matrix on a grid (rows
    renormalised; mass beyond ±4.5 is < 1e-7). An even `n_grid` puts no node at 0."""
    x = np.linspace(-lim, lim, n_grid)
    logits = np.log(_W) - (x[:, None] - _M) ** 2 / (2.0 * _S**2)
    resp = np.exp(logits - logsumexp(logits, axis=1, keepdims=True))
    de0 = np.sum(resp * (x[:, None] - _M), axis=1) / _S**2
    kernel = np.exp(-((x[None, :] - (x - 0.5 * eta * de0)[:, None]) ** 2) / (2.0 * eta))
    kernel /= kernel.sum(axis=1, keepdims=True)
    side = np.linalg.matrix_power(kernel, k)[:, x < 0].sum(axis=1)
    return [float(side[np.argmin(np.abs(x - start))]) for start in starts]


def test_mixture_chains_visit_both_modes_in_proportion():
    """Chains started all in one mode or all in the other end on the weight-0.3 side (x[0] < 0)
    with the target's probability p = 0.3 Φ(3) + 0.7 Φ(−3) = 0.3005.

    The barrier is ΔE ≈ 3.3 (from the 0.3 mode) and 4.1 (from the 0.7 mode); at η = 0.02 the
    chain's slowest relaxation time is ≈ 1640 steps (second eigenvalue of the transfer matrix),
    so after K = 12000 steps the initial-mode bias is ≈ 0.7 e^{-7.3} ≈ 5e-4, and the
    discretisation shifts the stationary side mass by ≈ 4e-4: both well under the Monte Carlo SE
    √(p(1−p)/n) ≈ 0.01. The reference `ref` is the exact K-step probability of the discrete
    chain (grid), so the comparison is a pure MC bound; `ref` vs p checks that this reference is
    the target's proportion to a fraction of one SE (an unmixed chain would give ≈ 1 or ≈ 0)."""
    eta, k, n = 0.02, 12000, 2000
    p = 0.3 * norm.cdf(1.5 / _S) + 0.7 * norm.cdf(-1.5 / _S)
    se = math.sqrt(p * (1.0 - p) / n)
    x0 = jnp.concatenate(
        [
            jnp.tile(jnp.array([[_M[0], 0.0]], jnp.float32), (n, 1)),
            jnp.tile(jnp.array([[_M[1], 0.0]], jnp.float32), (n, 1)),
        ]
    )
    x_k, _ = jax.jit(
        lambda x, key: langevin(_mixture_energy, x, key, num_steps=k, **thesis_setting(eta))
    )(x0, jax.random.key(1))
    left = np.asarray(x_k[:, 0] < 0)
    refs = _grid_side_fractions(_M, eta, k)
    for start, frac, ref in zip(_M, (left[:n].mean(), left[n:].mean()), refs, strict=True):
        assert abs(ref - p) < 0.2 * se, (start, ref, p)
        assert abs(frac - ref) < Z * se, (start, frac, ref)


def test_pure_noise_increments_per_leaf():
    """E ≡ 0: x_K − x_0 = noise_std Σ_k ω_k ~ N(0, K noise_std² I) for every leaf; fresh noise
    each step (a reused key would give variance K² noise_std²) and each leaf (a shared key would
    correlate the two leaves' draws). Sample variance SE v√(2/(m−1)), correlation SE 1/√m."""
    n, k, sigma = 4000, 16, 0.3
    x0 = {"a": _rand((n, 2), 1), "b": _rand((n, 3), 2)}
    zero = lambda x: 0.0 * (jnp.sum(x["a"], axis=1) + jnp.sum(x["b"], axis=1))
    x_k, _ = langevin(zero, x0, jax.random.key(2), num_steps=k, noise_std=sigma)
    v = k * sigma**2
    for name in ("a", "b"):
        d = np.asarray(x_k[name] - x0[name], np.float64).ravel()
        assert abs(d.mean()) < Z * math.sqrt(v / d.size), name
        assert abs(d.var(ddof=1) - v) < Z * v * math.sqrt(2.0 / (d.size - 1)), name
    # the first 2n draws of each leaf, in memory order (where a shared key's streams coincide)
    da = np.asarray(x_k["a"] - x0["a"]).ravel()
    db = np.asarray(x_k["b"] - x0["b"]).ravel()[: da.size]
    assert abs(np.corrcoef(da, db)[0, 1]) < Z / math.sqrt(da.size)


# ---------------------------------------------------------------------------------------------
# Exact recursions
# ---------------------------------------------------------------------------------------------


def _double_well(x):
    return jnp.sum(0.25 * x**4 - 0.5 * x**2, axis=1)


def test_jit_equals_no_jit_noisy():
    x0, key = _rand((16, 3)), jax.random.key(3)
    kw = dict(num_steps=25, step=0.05, noise_std=0.2)
    eager, eager_trace = langevin(_double_well, x0, key, **kw)
    jitted, jit_trace = jax.jit(lambda x, k: langevin(_double_well, x, k, **kw))(x0, key)
    # the scan body is compiled in both; only the ops around it may fuse differently
    np.testing.assert_allclose(jitted, eager, rtol=1e-6, atol=1e-6)
    for name in ("energy", "grad_norm"):
        np.testing.assert_allclose(jit_trace[name], eager_trace[name], rtol=1e-6)
    noise_free, _ = langevin(_double_well, x0, key, num_steps=25, step=0.05)
    assert np.max(np.abs(np.asarray(eager - noise_free))) > 0.1  # the noise was drawn


_CA = np.array([0.5, -1.0])
_GAMMA = 0.1


def _pytree_energy(x):
    """E(a, b) = ½‖a − c‖² + ¼ Σ b⁴ + γ (Σ a)(Σ b), coupling the two leaves."""
    a, b = x["a"], x["b"]
    return (
        0.5 * jnp.sum((a - jnp.asarray(_CA, jnp.float32)) ** 2, axis=1)
        + 0.25 * jnp.sum(b**4, axis=1)
        + _GAMMA * jnp.sum(a, axis=1) * jnp.sum(b, axis=1)
    )


def test_pytree_chains_noise_free_equal_hand_loop():
    """∂E/∂a = a − c + γ Σb, ∂E/∂b = b³ + γ Σa, stepped by hand in float64."""
    x0 = {"a": _rand((8, 2), 4), "b": 0.5 * _rand((8, 3), 5)}
    k, step = 20, 0.1
    x_k, _ = langevin(_pytree_energy, x0, jax.random.key(0), num_steps=k, step=step)
    a, b = np.asarray(x0["a"], np.float64), np.asarray(x0["b"], np.float64)
    for _ in range(k):
        ga = a - _CA + _GAMMA * b.sum(1, keepdims=True)
        gb = b**3 + _GAMMA * a.sum(1, keepdims=True)
        a, b = a - step * ga, b - step * gb
    assert set(x_k) == {"a", "b"}
    assert x_k["a"].shape == (8, 2) and x_k["b"].shape == (8, 3)
    np.testing.assert_allclose(x_k["a"], a, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(x_k["b"], b, rtol=1e-5, atol=1e-6)
    for name in ("a", "b"):  # both leaves moved
        assert np.min(np.abs(np.asarray(x_k[name] - x0[name]))) > 1e-3


def test_noise_free_ignores_key():
    x0 = _rand((8, 3))
    kw = dict(num_steps=10, step=0.05)
    x1, t1 = langevin(_double_well, x0, jax.random.key(0), **kw)
    x2, t2 = langevin(_double_well, x0, jax.random.key(12345), **kw)
    np.testing.assert_array_equal(x1, x2)
    np.testing.assert_array_equal(t1["energy"], t2["energy"])
    np.testing.assert_array_equal(t1["grad_norm"], t2["grad_norm"])


def test_step_schedule_equals_hand_loop():
    mu, s2 = np.array([1.0, -2.0, 0.5]), np.array([0.5, 1.0, 2.0])
    k = 12
    steps = np.linspace(0.02, 0.3, k)
    x0 = _rand((6, 3))
    x_k, _ = langevin(_gaussian_energy(mu, s2), x0, jax.random.key(0), num_steps=k, step=steps)
    x = np.asarray(x0, np.float64)
    for s in steps:
        x = x - s * (x - mu) / s2
    np.testing.assert_allclose(x_k, x, rtol=1e-5, atol=1e-6)
    # a constant step would differ: the schedule is really used
    x_const, _ = langevin(_gaussian_energy(mu, s2), x0, jax.random.key(0), num_steps=k, step=0.02)
    assert np.max(np.abs(np.asarray(x_const) - x)) > 0.1


def test_bounds_clamp_every_step_like_a_hand_loop():
    """`bounds=(lo, hi)` clamps after each step (not only at the end): with E = ½‖x − μ‖²/s²
    and μ outside the box, the hand loop clip(x − step ∇E) differs from clipping x_K once."""
    mu, s2 = np.array([3.0, -0.2]), np.array([1.0, 0.05])
    x0 = _rand((16, 2), 7)
    k, step = 15, 0.04
    x_k, _ = langevin(
        _gaussian_energy(mu, s2), x0, jax.random.key(0), num_steps=k, step=step, bounds=(-1, 1)
    )
    x = np.asarray(x0, np.float64)
    for _ in range(k):
        x = np.clip(x - step * (x - mu) / s2, -1, 1)
    np.testing.assert_allclose(x_k, x, rtol=1e-5, atol=1e-6)
    assert np.all(np.abs(np.asarray(x_k)) <= 1)
    free, _ = langevin(_gaussian_energy(mu, s2), x0, jax.random.key(0), num_steps=k, step=step)
    assert np.max(np.abs(np.clip(np.asarray(free), -1, 1) - x)) > 1e-2  # x_0's outliers differ
    with pytest.raises(ValueError, match=r"bounds must be \(lo, hi\) with lo < hi"):
        langevin(_gaussian_energy(mu, s2), x0, jax.random.key(0), num_steps=2, bounds=(1, -1))


def test_validation_errors():
    energy = _gaussian_energy([0.0, 0.0], [1.0, 1.0])
    x0, key = jnp.zeros((4, 2)), jax.random.key(0)
    with pytest.raises(ValueError, match=r"schedule must have shape \(5,\)"):
        langevin(energy, x0, key, num_steps=5, step=jnp.full((4,), 0.1))
    with pytest.raises(ValueError, match=r"schedule must have shape \(5,\)"):
        langevin(energy, x0, key, num_steps=5, step=jnp.full((5, 1), 0.1))
    with pytest.raises(ValueError, match="num_steps"):
        langevin(energy, x0, key, num_steps=0)
    with pytest.raises(ValueError, match="num_steps"):
        langevin(energy, x0, key, num_steps=True)
    for bad in (0.0, -0.1):
        with pytest.raises(ValueError, match="step must be > 0"):
            langevin(energy, x0, key, num_steps=3, step=bad)
    with pytest.raises(ValueError, match="noise_std must be >= 0"):
        langevin(energy, x0, key, num_steps=3, noise_std=-0.1)
    with pytest.raises(ValueError, match="same leading axis B"):
        langevin(_pytree_energy, {"a": jnp.zeros((4, 2)), "b": jnp.zeros((3, 3))}, key, num_steps=3)


# ---------------------------------------------------------------------------------------------
# Differentiating through the dynamics
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("checkpoint", [False, True])
def test_differentiable_unrolled_gradient(checkpoint):
    """E_θ(x) = ½θ‖x‖², ∇ₓE = θx: x_K = (1 − sθ)^K x₀, so
    d/dθ Σ x_K = K (1 − sθ)^{K−1} (−s) Σ x₀."""
    x0 = _rand((5, 3), 6)
    theta, s, k = 0.7, 0.1, 8

    def total(th, differentiable):
        x_k, _ = langevin(
            lambda x: 0.5 * th * jnp.sum(x**2, axis=1),
            x0,
            jax.random.key(0),
            num_steps=k,
            step=s,
            differentiable=differentiable,
            checkpoint=checkpoint,
        )
        return jnp.sum(x_k)

    sum_x0 = float(np.sum(np.asarray(x0, np.float64)))
    np.testing.assert_allclose(total(theta, True), (1 - s * theta) ** k * sum_x0, rtol=1e-5)
    want = k * (1 - s * theta) ** (k - 1) * (-s) * sum_x0
    np.testing.assert_allclose(jax.grad(total)(theta, True), want, rtol=1e-5)
    assert jax.grad(total)(theta, False) == 0.0


def test_checkpoint_gradient_equals_plain():
    """A non-quadratic energy (second-order terms through the dynamics) with noise: the
    recomputed backward pass equals the stored one."""
    x0 = _rand((6, 3), 7)

    def total(th, checkpoint):
        x_k, _ = langevin(
            lambda x: jnp.sum(0.25 * th * x**4 - 0.5 * x**2, axis=1),
            x0,
            jax.random.key(5),
            num_steps=10,
            step=0.05,
            noise_std=0.1,
            differentiable=True,
            checkpoint=checkpoint,
        )
        return jnp.sum(x_k**2)

    g_plain = jax.grad(total)(1.3, False)
    g_ckpt = jax.grad(total)(1.3, True)
    assert abs(float(g_plain)) > 1e-3
    np.testing.assert_allclose(g_ckpt, g_plain, rtol=1e-5)


@pytest.mark.parametrize("unroll", [4, True])
def test_unrolled_scan_equals_rolled(unroll):
    """Noisy, differentiable dynamics of a non-quadratic energy: unrolling the scan (faster for
    conv energies on XLA:CPU) changes neither x_K, nor the trace, nor d/dθ."""
    x0, key = _rand((6, 3), 8), jax.random.key(9)

    def run(th, unroll):
        return langevin(
            lambda x: jnp.sum(0.25 * th * x**4 - 0.5 * x**2, axis=1),
            x0,
            key,
            num_steps=12,
            step=0.05,
            noise_std=0.1,
            differentiable=True,
            unroll=unroll,
        )

    (x_r, tr_r), (x_u, tr_u) = run(1.3, 1), run(1.3, unroll)
    np.testing.assert_allclose(x_u, x_r, rtol=1e-5, atol=1e-6)
    for name in ("energy", "grad_norm"):
        np.testing.assert_allclose(tr_u[name], tr_r[name], rtol=1e-5)
    grad = lambda u: jax.grad(lambda th: jnp.sum(run(th, u)[0] ** 2))(1.3)
    g_rolled = grad(1)
    assert abs(float(g_rolled)) > 1e-3
    np.testing.assert_allclose(grad(unroll), g_rolled, rtol=1e-5)


# ---------------------------------------------------------------------------------------------
# Trace
# ---------------------------------------------------------------------------------------------


def test_trace_energy_and_grad_norm():
    """trace[k]: batch means of E(x_k) and ‖∇E(x_k)‖ (per chain, all coordinates) at the start
    of step k; for the Gaussian energy ∇E = (x − μ)/s², stepped by hand (noise-free)."""
    mu, s2 = np.array([1.0, -2.0, 0.5]), np.array([0.5, 1.0, 2.0])
    x0, k, step = _rand((7, 3), 8), 4, 0.1
    _, trace = langevin(_gaussian_energy(mu, s2), x0, jax.random.key(0), num_steps=k, step=step)
    assert trace["energy"].shape == (k,) and trace["grad_norm"].shape == (k,)
    x = np.asarray(x0, np.float64)
    for i in range(k):
        g = (x - mu) / s2
        np.testing.assert_allclose(trace["energy"][i], np.mean(0.5 * np.sum((x - mu) * g, 1)), 1e-5)
        np.testing.assert_allclose(trace["grad_norm"][i], np.mean(np.linalg.norm(g, axis=1)), 1e-5)
        x = x - step * g
    # with noise, the first entry is still that of x0 (noise enters after the first gradient)
    _, noisy = langevin(
        _gaussian_energy(mu, s2), x0, jax.random.key(1), num_steps=k, step=step, noise_std=0.5
    )
    np.testing.assert_allclose(noisy["energy"][0], trace["energy"][0], rtol=1e-6)
    np.testing.assert_allclose(noisy["grad_norm"][0], trace["grad_norm"][0], rtol=1e-6)


def test_trace_pytree_grad_norm_spans_all_leaves():
    """‖∇E‖ of a pytree chain is the norm over every leaf's coordinates together."""
    x0 = {"a": _rand((5, 2), 9), "b": 0.5 * _rand((5, 3), 10)}
    _, trace = langevin(_pytree_energy, x0, jax.random.key(0), num_steps=1, step=0.1)
    a, b = np.asarray(x0["a"], np.float64), np.asarray(x0["b"], np.float64)
    ga = a - _CA + _GAMMA * b.sum(1, keepdims=True)
    gb = b**3 + _GAMMA * a.sum(1, keepdims=True)
    e = 0.5 * np.sum((a - _CA) ** 2, 1) + 0.25 * np.sum(b**4, 1) + _GAMMA * a.sum(1) * b.sum(1)
    np.testing.assert_allclose(trace["energy"][0], e.mean(), rtol=1e-5)
    want = np.mean(np.sqrt(np.sum(ga**2, 1) + np.sum(gb**2, 1)))
    np.testing.assert_allclose(trace["grad_norm"][0], want, rtol=1e-5)

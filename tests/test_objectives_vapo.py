"""Mathematical checks of the VAPO objective (docs/methods/vapo.md §2, §5.1, §7).

Every tolerance below is either a floating-point bound (float32 ≈ 1.2e-7 relative, float64 for
the re-derivations) or a multiple of a Monte Carlo standard error computed from the samples.
"""

import math
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.integrate import quad
from scipy.stats import norm

from jaxgen.methods import vapo
from jaxgen.methods.common import replace_fields
from jaxgen.nn import ScalarMLP
from jaxgen.objectives.vapo import (
    Schedule,
    homotopy_schedule,
    innovation_weight,
    perturb,
    point_mass_loss,
    potential_flow_loss,
)

# Paper constants (docs/methods/vapo.md §3.1): σ0 = 1, σ = 0.01, ε = 1e-4 = σ²/σ0².
SIGMA0, SIGMA, EPS = 1.0, 0.01, 1e-4
ELL = math.log1p(1.0 / EPS)  # ℓ = ln(10001) = 9.21044
A = EPS / (1.0 + EPS)  # a = ε / (1 + ε)
PAPER = dict(sigma0=SIGMA0, sigma=SIGMA, eps=EPS)
Z = 5.0  # Monte Carlo checks: |estimate − truth| < Z standard errors (two-sided p ≈ 6e-7)


def _np_schedule(t, sigma0, sigma, eps):
    """float64 re-derivation of docs/methods/vapo.md eqs. (3)-(4): (τ, τ', m, s, κ)."""
    t = np.asarray(t, np.float64)
    tau = eps ** (1.0 - t) * (1.0 + eps) ** t - eps
    dtau = (tau + eps) * math.log1p(1.0 / eps)
    den = sigma**2 + tau * sigma0**2
    return tau, dtau, tau * sigma0**2 / den, np.sqrt(sigma0**2 * sigma**2 / den), sigma0**2 / den


def _log_rho(x, xbar, tau, sigma0, sigma):
    """log N(x; m(τ) x̄, s(τ)² I) in float64 (the conditional homotopy, eq. 19)."""
    den = sigma**2 + tau * sigma0**2
    m, s2 = tau * sigma0**2 / den, sigma0**2 * sigma**2 / den
    d = x.size
    return -0.5 * d * np.log(2 * np.pi * s2) - np.sum((x - m * xbar) ** 2) / (2 * s2)


# ---------------------------------------------------------------------------------------------
# Schedule (docs/methods/vapo.md eqs. (3), (4), (11); §7.5)


def test_schedule_spot_values_paper_constants():
    s = homotopy_schedule(jnp.array([0.0, 0.5, 1.0]), **PAPER)
    m, std = np.asarray(s.mean), np.asarray(s.std)
    # docs/methods/vapo.md §7.5: t=0 → m=0, s=1; t=0.5 → m≈0.99000, s≈0.1000;
    # t=1 → m≈0.99990, s≈0.0099995
    np.testing.assert_allclose(m, [0.0, 0.99000, 0.99990], atol=5e-6)
    np.testing.assert_allclose(std, [1.0, 0.1000, 0.0099995], rtol=5e-5)
    # exact geometric form (ε = σ²/σ0²): s = a^{t/2}, m = 1 − a^t
    np.testing.assert_allclose(m, [0.0, 1 - A**0.5, 1 - A], rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(std, [1.0, A**0.25, A**0.5], rtol=1e-6)
    np.testing.assert_allclose(np.asarray(s.tau)[[0, 2]], [0.0, 1.0], atol=1e-6)  # τ(0)=0, τ(1)=1


def test_schedule_geometric_form_and_constant_jacobian_weight():
    t = np.linspace(0.0, 1.0, 101)
    s = homotopy_schedule(t, **PAPER)
    # τ'(t)κ(τ) ≡ ℓ for every t because ε = σ²/σ0² (docs/methods/vapo.md eq. (11))
    np.testing.assert_allclose(np.asarray(s.dtau * s.kappa), ELL, rtol=2e-6)
    np.testing.assert_allclose(np.asarray(s.std), A ** (t / 2), rtol=2e-6)
    # float32: ln ε carries ~1e-6 relative error into τ + ε, and ∂m/∂τ ≈ 1/ε near t = 0,
    # so m has an absolute error of up to ~1e-6 at small t
    np.testing.assert_allclose(np.asarray(s.mean), 1 - A**t, rtol=2e-6, atol=2e-6)
    np.testing.assert_allclose(np.asarray(s.tau), _np_schedule(t, **PAPER)[0], rtol=2e-6, atol=1e-9)


@pytest.mark.parametrize("consts", [PAPER, dict(sigma0=2.0, sigma=0.1, eps=1e-3)])
def test_schedule_matches_float64_rederivation(consts):
    t = np.linspace(0.0, 1.0, 37)
    s = homotopy_schedule(t, **consts)
    tau, dtau, m, std, kappa = _np_schedule(t, **consts)
    for got, want in zip(
        (s.tau, s.dtau, s.mean, s.std, s.kappa), (tau, dtau, m, std, kappa), strict=True
    ):
        np.testing.assert_allclose(np.asarray(got), want, rtol=5e-6, atol=2e-6)  # see above
    # internal identities of docs/methods/vapo.md eq. (3): s² = σ²κ and 1 − m = σ²κ/σ0²
    s0, sg = consts["sigma0"], consts["sigma"]
    np.testing.assert_allclose(np.asarray(s.std**2), sg**2 * np.asarray(s.kappa), rtol=5e-6)
    np.testing.assert_allclose(1 - np.asarray(s.mean), sg**2 * kappa / s0**2, rtol=2e-4, atol=1e-7)
    # τ' is the derivative of τ (central difference on the library's own τ, h = 1e-3:
    # truncation ≈ ℓ²h²/6 ≈ 1.4e-5 relative)
    h = 1e-3
    tc = np.linspace(0.05, 0.95, 10)
    fd = (
        np.asarray(homotopy_schedule(tc + h, **consts).tau, np.float64)
        - np.asarray(homotopy_schedule(tc - h, **consts).tau, np.float64)
    ) / (2 * h)
    np.testing.assert_allclose(fd, _np_schedule(tc, **consts)[1], rtol=2e-3)


# ---------------------------------------------------------------------------------------------
# Innovation weight: ξ-form == ½(γ − γ̄) == −∂τ log ρ (docs/methods/vapo.md eqs. (5)-(6), §7.1)


@pytest.mark.parametrize("t", [0.05, 0.37, 0.9])
def test_innovation_weight_is_minus_dlogrho(t):
    rng = np.random.default_rng(0)
    d = 5
    xbar = rng.uniform(-1, 1, d)
    xi = rng.standard_normal(d)
    tau, dtau, m, s, kappa = _np_schedule(t, **PAPER)
    x = m * xbar + s * xi

    # brute-force NIS (float64): γ = ‖x̄ − x‖²/σ², γ̄ = ((1−m)²‖x̄‖² + D s²)/σ²
    gamma = np.sum((xbar - x) ** 2) / SIGMA**2
    gamma_bar = ((1 - m) ** 2 * np.sum(xbar**2) + d * s**2) / SIGMA**2
    half_innov = 0.5 * (gamma - gamma_bar)

    # finite difference in τ at fixed x: ∂τ log ρ = −½(γ − γ̄)
    h = 1e-6 * tau
    fd_tau = (
        _log_rho(x, xbar, tau + h, SIGMA0, SIGMA) - _log_rho(x, xbar, tau - h, SIGMA0, SIGMA)
    ) / (2 * h)
    np.testing.assert_allclose(-fd_tau, half_innov, rtol=1e-6)

    # finite difference in flow time t (variant A weight): −∂t log ρ(x|x̄; τ(t)) = ½τ'(γ − γ̄)
    ht = 1e-6
    fd_t = (
        _log_rho(x, xbar, _np_schedule(t + ht, **PAPER)[0], SIGMA0, SIGMA)
        - _log_rho(x, xbar, _np_schedule(t - ht, **PAPER)[0], SIGMA0, SIGMA)
    ) / (2 * ht)
    np.testing.assert_allclose(-fd_t, dtau * half_innov, rtol=1e-6)

    # the library's ξ-form with an exact float64 schedule: identical to ~1e-10
    sched64 = Schedule(*(np.float64(v) for v in (tau, dtau, m, s, kappa)))
    with jax.enable_x64(True):
        w_b = innovation_weight(
            jnp.asarray(xbar), jnp.asarray(xi), sched64, sigma0=SIGMA0, jacobian=False
        )
        w_a = innovation_weight(jnp.asarray(xbar), jnp.asarray(xi), sched64, sigma0=SIGMA0)
        assert w_b.dtype == jnp.float64
        np.testing.assert_allclose(float(w_b), half_innov, rtol=1e-9)
        np.testing.assert_allclose(float(w_a), dtau * half_innov, rtol=1e-9)

    # and the float32 library path end to end (its own schedule, its own ξ via `perturb`)
    key = jax.random.PRNGKey(3)
    xb32 = jnp.asarray(xbar, jnp.float32)
    x32, w32 = perturb(xb32, jnp.float32(t), key, **PAPER)
    xi32 = np.asarray(jax.random.normal(key, (d,), jnp.float32), np.float64)
    tau, dtau, m, s, kappa = _np_schedule(np.float32(t), **PAPER)
    np.testing.assert_allclose(np.asarray(x32), m * xbar + s * xi32, rtol=1e-5, atol=1e-6)
    want = 0.5 * dtau * kappa * ((xi32 @ xi32 - d) - 2 * s / SIGMA0**2 * (xbar @ xi32))
    # float32: the bracket is a difference of O(D) terms, so the error scale is ℓ·D·1e-6
    np.testing.assert_allclose(float(w32), want, rtol=1e-5, atol=ELL * d * 1e-6)


def test_perturb_weight_carries_no_gradient():
    xbar = jnp.array([0.3, -0.7, 1.1])
    key = jax.random.PRNGKey(0)
    g = jax.grad(lambda xb: perturb(xb, 0.4, key, **PAPER)[1])(xbar)
    np.testing.assert_array_equal(np.asarray(g), 0.0)
    # ...whereas the weight itself does depend on x̄ (so the stop-gradient is what zeroes it)
    sched = homotopy_schedule(0.4, **PAPER)
    xi = jax.random.normal(key, (3,))
    g_raw = jax.grad(lambda xb: innovation_weight(xb, xi, sched, sigma0=SIGMA0))(xbar)
    assert float(jnp.max(jnp.abs(g_raw))) > 0.1


# ---------------------------------------------------------------------------------------------
# Moments of w given (x̄, t) (docs/methods/vapo.md §7.5)


@pytest.mark.parametrize("jacobian", [True, False])
@pytest.mark.parametrize("t", [0.15, 0.7])
@pytest.mark.parametrize("d", [8, 16])
def test_weight_conditional_moments(d, t, jacobian):
    n = 200_000
    rng = np.random.default_rng(d)
    xbar = jnp.asarray(rng.uniform(-1, 1, d), jnp.float32)
    keys = jax.random.split(jax.random.PRNGKey(d + int(100 * t)), n)
    kw = dict(PAPER, jacobian=jacobian)
    x, w = jax.vmap(lambda k: perturb(xbar, jnp.float32(t), k, **kw))(keys)
    w = np.asarray(w, np.float64)
    x = np.asarray(x, np.float64)

    tau, dtau, m, s, kappa = _np_schedule(np.float32(t), **PAPER)
    scale = 0.5 * (dtau * kappa if jacobian else kappa)
    if jacobian:
        assert abs(scale - ELL / 2) < 1e-9  # ½τ'κ = ℓ/2 for every t (paper constants)
    xb = np.asarray(xbar, np.float64)
    var_theory = scale**2 * (2 * d + 4 * s**2 * (xb @ xb) / SIGMA0**4)

    # E[w | x̄, t] = 0: z-test with the sample standard error
    assert abs(w.mean()) < Z * w.std() / math.sqrt(n)
    # Var[w | x̄, t]: standard error of the sample variance is sqrt((μ4 − σ⁴)/n)
    c = w - w.mean()
    se_var = math.sqrt((np.mean(c**4) - np.mean(c**2) ** 2) / n)
    assert abs(np.var(w) - var_theory) < Z * se_var, (np.var(w), var_theory, se_var)
    assert Z * se_var < 0.05 * var_theory  # the test has teeth: a 5% error would be caught
    # the particles really are N(m x̄, s² I)
    assert np.all(np.abs(x.mean(0) - m * xb) < Z * s / math.sqrt(n))
    np.testing.assert_allclose(x.std(0), s, rtol=Z * math.sqrt(0.5 / n))


# ---------------------------------------------------------------------------------------------
# Point mass at 0: exact parabola of the loss (docs/methods/vapo.md eq. (15))


@partial(jax.jit, static_argnames=("n", "d", "jacobian"))
def _point_mass_batch(n, d, *, jacobian, seed=0):
    k_t, k_xi = jax.random.split(jax.random.PRNGKey(seed))
    t = jax.random.uniform(k_t, (n,))
    kw = dict(PAPER, jacobian=jacobian)
    return jax.vmap(partial(perturb, **kw))(jnp.zeros((n, d)), t, jax.random.split(k_xi, n))


@jax.jit
def _quadratic_terms(c, x, w):
    """potential_flow_loss terms (λ = 0) of the quadratic "network" Φ_c(x) = −(c/2)‖x‖²."""
    return potential_flow_loss(lambda z: -(c / 2) * jnp.sum(z**2, axis=1), x, w, lam=0.0)[0]


def _parabola_minimiser(x, w):
    """terms(c) = c·A + c²·B per sample for Φ_c; return (c*, its delta-method standard error)."""
    x = np.asarray(x, np.float64)
    r2 = np.sum(x**2, axis=1)
    a_i = -0.5 * np.asarray(w, np.float64) * r2  # w Φ_1
    b_i = 0.5 * r2  # ½‖∇Φ_1‖²
    c_star = -a_i.mean() / (2 * b_i.mean())
    se = (a_i + 2 * c_star * b_i).std() / math.sqrt(len(r2)) / (2 * b_i.mean())
    return c_star, se


def test_point_mass_closed_form_values():
    # docs/methods/vapo.md §7.2 quotes L(2) = −2.348, L(ℓ/2 = 4.605) = −3.454, L(7) = −2.520
    # for D = 3
    got = [float(point_mass_loss(c, 3, eps=EPS)) for c in (2.0, ELL / 2, 7.0)]
    np.testing.assert_allclose(got, [-2.348, -3.454, -2.520], atol=1e-3)
    np.testing.assert_allclose(got[1], -ELL / 8 * 3 * (1 - A), rtol=1e-6)  # L* = −(ℓ/8) D (1−a)


def test_point_mass_loss_parabola_monte_carlo():
    d, n = 3, 1_000_000
    x, w = _point_mass_batch(n, d, jacobian=True)
    cs = np.array([2.0, ELL / 2, 7.0])
    means = []
    for c in cs:
        terms = np.asarray(_quadratic_terms(c, x, w), np.float64)
        want = float(point_mass_loss(c, d, eps=EPS))
        se = terms.std() / math.sqrt(n)
        assert abs(terms.mean() - want) < Z * se, (c, terms.mean(), want, se)
        means.append(terms.mean())
    # a parabola through the three MC losses has its minimum at ℓ/2 = 4.605 (exact for Φ_c,
    # whose loss is c·A + c²·B per sample); compare with the delta-method standard error
    p = np.polyfit(cs, means, 2)
    c_fit = -p[1] / (2 * p[0])
    c_star, se = _parabola_minimiser(x, w)
    np.testing.assert_allclose(c_fit, c_star, rtol=1e-4)
    assert abs(c_star - ELL / 2) < Z * se, (c_star, se)
    assert Z * se < 0.2  # precise enough to tell ℓ/2 from e.g. ℓ/2 ± 5%
    # paired comparison (common random numbers): L(ℓ/2) < L(2) and L(ℓ/2) < L(7)
    assert means[1] < means[0] and means[1] < means[2]


def test_point_mass_variant_b_minimiser_in_the_thousands():
    """Variant B (no τ' factor, docs/methods/vapo.md eq. (12)): the fitted quadratic coefficient
    is O(1/ε).

    Derivation for Φ_c with the code's variant-B weight ½κ[...], σ0=1, σ²=ε: κ s² = a^{2t}/ε and
    s² = a^t, so L_B(c) = D(1−a)/(2ℓ)·[c² − c(1+a)/(2ε)], minimised at c = (1+a)/(4ε) ≈ 2500.
    (An earlier reading quoted (1+a)/(2ε) ≈ 5000, which is the *root* of L_B, not its
    minimiser; docs/methods/vapo.md §7.2.)
    """
    d, n = 3, 1_000_000
    x, w = _point_mass_batch(n, d, jacobian=False, seed=1)
    k = (1 + A) / (2 * EPS)
    for c in (1000.0, 2500.0, 5000.0):
        terms = np.asarray(_quadratic_terms(c, x, w), np.float64)
        want = d * (1 - A) / (2 * ELL) * (c**2 - c * k)
        assert abs(terms.mean() - want) < Z * terms.std() / math.sqrt(n), (c, terms.mean(), want)
    c_star, se = _parabola_minimiser(x, w)
    assert 1000 < c_star < 10_000  # "in the thousands": the stiff, prior-dominated field
    assert abs(c_star - k / 2) < Z * se, (c_star, se)
    # and variant A on the same draws is O(1): a factor > 300 apart
    x_a, w_a = _point_mass_batch(n // 10, d, jacobian=True, seed=1)
    assert _parabola_minimiser(x_a, w_a)[0] < 10


def test_control_variate_keeps_the_expected_loss_and_lowers_its_spread():
    """docs/methods/vapo.md eq. (10a): w (Φ(x) − Φ(m x̄)) has the expectation of w Φ(x) because
    E[w | x̄, t] = 0; on the quadratic Φ_c around a data point away from 0, paired draws."""
    d, n, c = 8, 200_000, ELL / 2
    k_t, k_xi = jax.random.split(jax.random.PRNGKey(3))
    t = jax.random.uniform(k_t, (n,))
    xbar = jnp.full((n, d), 0.7)
    x, w = jax.vmap(partial(perturb, **PAPER))(xbar, t, jax.random.split(k_xi, n))
    phi = lambda z: -(c / 2) * jnp.sum(z**2, axis=1)
    mean = homotopy_schedule(t, **{k: PAPER[k] for k in ("sigma0", "sigma", "eps")}).mean
    plain = np.asarray(potential_flow_loss(phi, x, w, lam=0.0)[0], np.float64)
    cv = potential_flow_loss(phi, x, w, lam=0.0, baseline=phi(mean[:, None] * xbar))[0]
    cv = np.asarray(cv, np.float64)
    diff = cv - plain  # = −w Φ(m x̄): zero mean
    assert abs(diff.mean()) < Z * diff.std() / math.sqrt(n), (diff.mean(), diff.std())
    # the spread falls by a third here (224 -> 150); the t -> 0 draws, where x is mostly noise,
    # keep the rest (the recipe-level figures: docs/results.md, "VAPO ... gradient noise")
    assert cv.std() < 0.8 * plain.std(), (cv.std(), plain.std())


def test_control_variate_removes_the_weight_from_the_constant_direction():
    """With the control variate, a constant added to Φ (the readout bias) gets no gradient from
    the w term: its gradient is the λ term's mean λΦ alone; without it, mean(w) + mean(λΦ)."""
    cfg, xbar, state = _small_recipe()
    key, params = jax.random.PRNGKey(11), state.potential.params
    readout = lambda g: g["mlp"][sorted(g["mlp"])[-1]]["bias"][0]  # the last dense layer
    grads = {}
    for cv in (False, True):
        c = replace_fields(cfg, {"method.control_variate": cv})
        grads[cv], aux = jax.grad(vapo.loss_fn, has_aux=True)(params, xbar, key, config=c)
    lam_part = cfg.method.lam * float(aux["phi_mean"])  # λ mean Φ, same draws both times
    np.testing.assert_allclose(float(readout(grads[True])), lam_part, rtol=1e-4, atol=1e-7)
    k_t, k_xi = jax.random.split(key)
    t = jax.random.uniform(k_t, (32,))
    _, w = jax.vmap(partial(perturb, **PAPER))(xbar, t, jax.random.split(k_xi, 32))
    want = float(jnp.mean(w)) + lam_part
    np.testing.assert_allclose(float(readout(grads[False])), want, rtol=1e-4)


# ---------------------------------------------------------------------------------------------
# The vjp trick: per-example gradients are exact for per-sample networks


def test_potential_flow_loss_gradient_is_per_example_exact():
    net = ScalarMLP(hidden=(16, 16), act="gelu")
    x = jax.random.normal(jax.random.PRNGKey(0), (7, 2, 3))  # trailing dims are flattened
    params = net.init(jax.random.PRNGKey(1), x)["params"]
    phi_fn = lambda z: net.apply({"params": params}, z)
    w = jax.random.normal(jax.random.PRNGKey(2), (7,)) * 5.0
    lam = 0.3
    terms, phi, grad_sq = jax.jit(partial(potential_flow_loss, phi_fn, lam=lam))(x, w)

    def single(z):  # Φ of one example, no batch at all
        return phi_fn(z[None])[0]

    g_ref = jax.jit(jax.vmap(jax.grad(single)))(x)
    g_fwd = jax.jit(jax.vmap(jax.jacfwd(single)))(x)
    np.testing.assert_allclose(np.asarray(g_ref), np.asarray(g_fwd), rtol=1e-5, atol=1e-7)
    gsq_ref = np.sum(np.asarray(g_ref, np.float64).reshape(7, -1) ** 2, axis=1)
    phi_ref = np.asarray(jax.jit(jax.vmap(single))(x), np.float64)
    assert grad_sq.shape == (7,) and phi.shape == (7,) and terms.shape == (7,)
    np.testing.assert_allclose(np.asarray(grad_sq), gsq_ref, rtol=1e-5)
    np.testing.assert_allclose(np.asarray(phi), phi_ref, rtol=1e-5, atol=1e-7)
    want = np.asarray(w) * phi_ref + 0.5 * gsq_ref + 0.5 * lam * phi_ref**2
    np.testing.assert_allclose(np.asarray(terms), want, rtol=1e-5, atol=1e-6)


def test_potential_flow_loss_needs_independent_examples():
    """A potential with batch interaction (centring by the batch mean) breaks the vjp trick."""
    x = jax.random.normal(jax.random.PRNGKey(0), (4, 3))
    coupled = lambda z: -0.5 * jnp.sum((z - jnp.mean(z, axis=0)) ** 2, axis=1)
    _, _, grad_sq = potential_flow_loss(coupled, x, jnp.zeros(4), lam=0.0)
    per_example = jax.vmap(jax.grad(lambda z: coupled(z[None])[0]))(x)  # = 0 for a batch of 1
    assert float(jnp.max(jnp.abs(per_example))) == 0.0
    # the vjp gives Σ_j ∂Φ_j/∂x_i = −(x_i − x̄) + mean_j(x_j − x̄) = −(x_i − x̄) ≠ 0
    xc = np.asarray(x - x.mean(0))
    np.testing.assert_allclose(np.asarray(grad_sq), np.sum(xc**2, axis=1), rtol=1e-5)


# ---------------------------------------------------------------------------------------------
# The recipe: jit equality, loss scaling


def _small_recipe():
    # one hidden layer: eager mode stays fast
    cfg = replace_fields(vapo.Config(), {"model.hidden": (16,), "method.lam": 1e-2})
    xbar = jax.random.normal(jax.random.PRNGKey(0), (32, 3))
    state = vapo.init(cfg, {"x": xbar}, key=jax.random.PRNGKey(1))
    return cfg, xbar, state


def test_loss_fn_jit_matches_eager_and_loss_per_dim():
    cfg, xbar, state = _small_recipe()
    key = jax.random.PRNGKey(5)
    loss_e, aux_e = vapo.loss_fn(state.potential.params, xbar, key, config=cfg)
    loss_j, aux_j = jax.jit(partial(vapo.loss_fn, config=cfg))(state.potential.params, xbar, key)
    for k in aux_e:
        np.testing.assert_allclose(float(aux_j[k]), float(aux_e[k]), rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(float(loss_j), float(loss_e), rtol=1e-6, atol=1e-6)
    # loss_per_dim divides the whole loss (not the terms separately) by D
    cfg_d = replace_fields(cfg, {"method.loss_per_dim": True})
    loss_d, aux_d = vapo.loss_fn(state.potential.params, xbar, key, config=cfg_d)
    np.testing.assert_allclose(float(loss_d), float(loss_e) / 3, rtol=1e-6)
    np.testing.assert_allclose(float(aux_d["grad_sq"]), float(aux_e["grad_sq"]), rtol=1e-6)


def test_loss_fn_matches_manual_recomputation():
    """loss_fn = mean over the batch of w Φ(x) + ½‖∇Φ‖² + ½λΦ², rebuilt from the primitives."""
    cfg, xbar, state = _small_recipe()
    key = jax.random.PRNGKey(7)
    loss, aux = vapo.loss_fn(state.potential.params, xbar, key, config=cfg)
    k_t, k_xi = jax.random.split(key)
    t = jax.random.uniform(k_t, (32,))
    x, w = jax.vmap(partial(perturb, **PAPER))(xbar, t, jax.random.split(k_xi, 32))
    phi = vapo.potential(state.potential.params, x, config=cfg)
    g = vapo.velocity(state.potential.params, x, config=cfg)
    want = jnp.mean(w * phi + 0.5 * jnp.sum(g**2, axis=1) + 0.5 * cfg.method.lam * phi**2)
    np.testing.assert_allclose(float(loss), float(want), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(float(aux["phi_mean"]), float(jnp.mean(phi)), rtol=1e-5)


def test_train_step_jit_matches_eager():
    cfg, xbar, state = _small_recipe()
    s_e, m_e = vapo.train_step(state, {"x": xbar}, config=cfg)
    s_j, m_j = jax.jit(partial(vapo.train_step, config=cfg))(state, {"x": xbar})
    assert int(s_j.step) == int(s_e.step) == 1
    for k in m_e:
        np.testing.assert_allclose(float(m_j[k]), float(m_e[k]), rtol=1e-5, atol=1e-6)
    for a, b in zip(jax.tree.leaves(s_e), jax.tree.leaves(s_j), strict=True):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-5, atol=1e-7)
    # the step did something
    moved = jax.tree.map(
        lambda p, q: float(jnp.max(jnp.abs(p - q))), state.potential.params, s_j.potential.params
    )
    assert max(jax.tree.leaves(moved)) > 0


# ---------------------------------------------------------------------------------------------
# 1-D two-point mixture p = 0.3 δ_{−2} + 0.7 δ_{+2}: train, compare with theory, sample


MIX_W, MIX_MU = np.array([0.3, 0.7]), np.array([-2.0, 2.0])
# Optimal loss (λ = 0), −½∫ρ̂ (Φ*')² dx = −3.2975 (docs/methods/vapo.md §7.3; reproduced with
# nested scipy quad, 25 s, so not re-run here).
MIX_LOSS_OPT = -3.2975


def _mixture_field_reference(x):
    """Φ*'(x) = (F0 − F1)/ρ̂ of docs/methods/vapo.md eq. (13), with ρ̂ = ∫0^1 ρ̄_t dt by adaptive
    quadrature."""

    def rho_t(t):
        m, s = 1 - A**t, A ** (t / 2)
        return sum(wk * norm.pdf(x, m * mu, s) for wk, mu in zip(MIX_W, MIX_MU, strict=True))

    rho_hat = quad(rho_t, 0.0, 1.0, limit=200, epsabs=1e-12, epsrel=1e-10)[0]
    f1 = sum(wk * norm.cdf(x, (1 - A) * mu, A**0.5) for wk, mu in zip(MIX_W, MIX_MU, strict=True))
    return (norm.cdf(x) - f1) / rho_hat


MIX_CFG = replace_fields(
    vapo.Config(),
    {
        "model.hidden": (64, 64, 64),
        "optim.potential.lr": 2e-3,
        "optim.potential.decay": "cosine",
        "optim.potential.total_steps": 2000,
        "sample.t_end": 1.0,
    },
)
MIX_BATCH = 2048


@pytest.fixture(scope="module")
def mixture_model():
    """Train Φ on the mixture with the VAPO loss (about 10 s on 2 cores)."""
    cfg = MIX_CFG
    state = vapo.init(cfg, {"x": jnp.zeros((MIX_BATCH, 1))}, key=jax.random.PRNGKey(0))

    @jax.jit
    def run(state, key):
        def body(st, k):
            xb = jnp.where(jax.random.uniform(k, (MIX_BATCH, 1)) < MIX_W[0], -2.0, 2.0)
            st, metrics = vapo.train_step(st, {"x": xb}, config=cfg)
            return st, metrics["loss"]

        return jax.lax.scan(body, state, jax.random.split(key, cfg.optim.potential.total_steps))

    state, losses = run(state, jax.random.PRNGKey(100))
    return state, np.asarray(losses, np.float64)


def test_mixture_reference_field_matches_spec():
    xs = [-1.5, 0.0, 0.5, 1.0]
    ref = [_mixture_field_reference(x) for x in xs]
    # reference values: docs/methods/vapo.md §7.3
    np.testing.assert_allclose(ref, [-3.548, 6.198, 8.741, 7.542], atol=2e-3)
    # the split point of the field is the standard-normal quantile Φ_N^{-1}(0.3)
    xs_split = norm.ppf(0.3)
    assert _mixture_field_reference(xs_split - 0.02) < 0 < _mixture_field_reference(xs_split + 0.02)


def test_mixture_trained_loss_and_field(mixture_model):
    state, losses = mixture_model
    assert np.all(np.isfinite(losses))
    # the last 500 single-batch losses against the theoretical optimum (≥ it in expectation;
    # SE from the batch-to-batch spread; 5 SE ≈ 0.37)
    tail = losses[-500:]
    se = tail.std() / math.sqrt(len(tail))
    assert abs(tail.mean() - MIX_LOSS_OPT) < Z * se, (tail.mean(), se)
    # learned Φ' against the quadrature field: measured worst relative error 5.1% (this seed, at
    # x = −1.5; ≤ 5.1% over 5 seeds at 2000 steps, batch 2048); 10% leaves room for seed
    # variation but catches a wrong weight (a missing ½ changes Φ' by 2×, variant B by ~500×)
    xs = np.array([-1.5, 0.0, 0.5, 1.0])
    ref = np.array([_mixture_field_reference(x) for x in xs])
    got = np.asarray(
        vapo.velocity(state.potential.params, jnp.asarray(xs)[:, None], config=MIX_CFG)
    )[:, 0]
    np.testing.assert_allclose(got, ref, rtol=0.10)
    # the learned field changes sign at the split point Φ_N^{-1}(0.3) = −0.524 (measured −0.517;
    # the slope there is ≈ 20, so a ±0.05 window tolerates a Φ' error of ≈ 1)
    split = norm.ppf(0.3)
    v = vapo.velocity(
        state.potential.params, jnp.array([[split - 0.05], [split + 0.05]]), config=MIX_CFG
    )
    assert float(v[0, 0]) < 0 < float(v[1, 0])
    # Φ is high on data: Φ(+2) > Φ(0) and Φ(−2) > Φ(split point)
    phi = vapo.potential(
        state.potential.params, jnp.array([[-2.0], [-0.52], [0.0], [2.0]]), config=MIX_CFG
    )
    assert phi[3] > phi[2] and phi[0] > phi[1]


def test_mixture_sampling_mode_split_and_direction(mixture_model):
    state, _ = mixture_model
    n = 4000
    key = jax.random.PRNGKey(7)
    x0 = np.asarray(jax.random.normal(key, (n, 1)))[:, 0]  # what `sample` starts from
    x, stats = vapo.sample(state, n, config=MIX_CFG, key=key, shape=(1,), use_ema=False)
    x = np.asarray(x)[:, 0]
    assert x.shape == (n,) and np.all(np.isfinite(x)) and bool(stats["success"])
    # fraction of prior mass sent to the left mode = 0.30 (exact in 1-D, docs/methods/vapo.md
    # §7.3); binomial SE is 0.007; measured 0.297–0.316 over 10 runs (0.309 here); tolerance
    # 0.05 as specified
    frac_left = float(np.mean(x < 0))
    assert abs(frac_left - 0.30) < 0.05, frac_left
    # samples end near a mode: the exact field gives 0.015 at T = 1, measured 0.040–0.048
    dist = lambda z: np.minimum(np.abs(z - 2.0), np.abs(z + 2.0))
    assert dist(x).mean() < 0.1, dist(x).mean()
    # the flow runs towards the data (+∇Φ): the prior's mean distance (≈ 1.2) shrinks > 10×
    assert dist(x).mean() < 0.1 * dist(x0).mean()
    # particles keep their side of the split point Φ_N^{-1}(0.3) = −0.524 (a 1-D flow cannot
    # cross a stationary point), except those within ~0.1 of it (model error)
    away = np.abs(x0 - norm.ppf(0.3)) > 0.15
    np.testing.assert_array_equal((x < 0)[away], (x0 < norm.ppf(0.3))[away])
    # NFE of RK45 at rtol = atol = 1e-3 is O(50) (docs/methods/vapo.md §7.4: 44); measured 43
    assert 20 <= int(stats["nfe"]) <= 200


def test_loss_fn_with_the_drawn_times_given_is_the_same_loss():
    """`loss_fn(..., t=t)` with the times the key would draw is the training loss exactly; a
    scalar t applies to every example (benchmarks/vapo_loss_by_t.py evaluates it by bin)."""
    cfg, xbar, state = _small_recipe()
    key, params = jax.random.PRNGKey(5), state.potential.params
    t = jax.random.uniform(jax.random.split(key)[0], (xbar.shape[0],))
    drawn, _ = vapo.loss_fn(params, xbar, key, config=cfg)
    given, _ = vapo.loss_fn(params, xbar, key, config=cfg, t=t)
    assert float(given) == float(drawn)
    at_one, _ = vapo.loss_fn(params, xbar, key, config=cfg, t=1.0)
    at_ones, _ = vapo.loss_fn(params, xbar, key, config=cfg, t=jnp.ones(xbar.shape[0]))
    assert float(at_one) == float(at_ones) and float(at_one) != float(drawn)

"""Checks of jaxgen.samplers.likelihood (the instantaneous change of variables,
docs/methods/shortrun_ebm.md eq. 1.7) against closed forms.

* Linear flows dx/dt = −A x (quadratic energy E = ½ xᵀAx, v = −∇E) carry N(0, I) to
  N(0, M Mᵀ), M = expm(−A T): the exact trace (dopri5, tsit5, rk4) reproduces that Gaussian
  log-density; a time-dependent v = −(1+t) x with a base of std 2; a non-commuting
  rotating-frame flow whose flow map is known, which pins the direction of the clock (t = t1 − s);
  VAPO's sign convention v = +∇Φ.
* Hutchinson: for a linear flow the integrand εᵀ(∂v/∂x)ε is constant in time, so the error of
  the log-density is exactly −(mean_m εₘᵀBεₘ − tr B), B = −A T. It is reproduced from the probes
  `draw_probes` gives, its mean is zero and its variance is the closed form (Rademacher
  2 Σ_{i≠j} B_ij², Gaussian 2‖B‖_F², / num_probes).
* A nonlinear 2-D flow: exp(log p) sums to one on a grid.
* One Euler step: the trace integral is T·tr jacfwd(v)(t1, x).
* jit = no-jit; gradients with respect to a parameter of the velocity (dopri5 and rk4) against
  the closed form and central differences; argument errors and the reported (not raised)
  exhaustion of the step budget; bits per dimension.

Error bounds: the adaptive solves use rtol = atol = 1e-6 (the ODE error of a log-density of
size ~5 is then ~1e-5), float32 round-off is ~1e-6 relative, so closed forms are matched to 1e-4.
"""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.linalg
import scipy.stats

from jaxgen.samplers.likelihood import (
    bits_per_dim,
    draw_probes,
    flow_log_likelihood,
    standard_normal_log_prob,
)

# a fixed symmetric positive-definite, non-diagonal matrix (diagonally dominant)
A = np.array([[1.5, 0.4, -0.3], [0.4, 1.0, 0.2], [-0.3, 0.2, 0.8]])
TOL = {"rtol": 1e-6, "atol": 1e-6}


def _quadratic_velocity(a=A, scale=1.0):
    """v = −∇E for E(x) = ½ xᵀAx, written as the gradient (so the sign is the EBM's)."""
    a = jnp.asarray(a, jnp.float32)
    energy = lambda x: 0.5 * jnp.sum((x @ a) * x)
    return lambda t, x: -scale * jax.grad(energy)(x)


def _gaussian_log_prob(x, cov):
    x = np.asarray(x, np.float64)
    return scipy.stats.multivariate_normal(mean=np.zeros(cov.shape[0]), cov=cov).logpdf(x)


def _linear_flow_log_prob(x, a, duration):
    """log-density at t1 of x(t1) = expm(−A T) x0, x0 ~ N(0, I)."""
    m = scipy.linalg.expm(-np.asarray(a, np.float64) * duration)
    return _gaussian_log_prob(x, m @ m.T)


def _points(n=8, d=3, seed=0, scale=0.6):
    """Points of the size of the linear flow's output (std ~0.3-0.7), a few farther out."""
    x = np.random.default_rng(seed).standard_normal((n, d)) * scale
    x[0] *= 4.0
    return jnp.asarray(x, jnp.float32)


# ---------------------------------------------------------------------------------------------
# Exact trace against closed-form Gaussians


@pytest.mark.parametrize("solver", ["dopri5", "tsit5"])
def test_exact_trace_quadratic_energy_closed_form(solver):
    x = _points()
    t0, t1 = 0.0, 1.0
    log_p, stats = flow_log_likelihood(_quadratic_velocity(), x, t0=t0, t1=t1, solver=solver, **TOL)
    assert log_p.shape == (8,)
    assert bool(stats["success"])
    np.testing.assert_allclose(np.asarray(log_p), _linear_flow_log_prob(x, A, t1 - t0), atol=1e-4)
    # the pieces: x0 = expm(A T) x, ∫ tr ∂v/∂x dt = −T tr A, log p0 = N(x0; 0, I)
    x0 = np.asarray(x, np.float64) @ scipy.linalg.expm(A * (t1 - t0)).T
    np.testing.assert_allclose(np.asarray(stats["x0"]), x0, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(np.asarray(stats["trace_integral"]), -np.trace(A), rtol=1e-5)
    np.testing.assert_allclose(
        np.asarray(stats["log_p0"]), _gaussian_log_prob(x0, np.eye(3)), rtol=1e-5, atol=1e-4
    )
    nfe = int(stats["nfe"])
    assert nfe > 7 and (nfe - 1) % 6 == 0  # 6 evaluations per attempted step, +1


def test_time_dependent_velocity_and_wide_base():
    """v = −(1+t) x from t0 = 0.5 to t1 = 1.5: x(t1) = c x0 with c = exp(−∫a) = e^{−2};
    with x0 ~ N(0, 4 I), x(t1) ~ N(0, 4c² I)."""
    d, t0, t1, std0 = 3, 0.5, 1.5, 2.0
    integral_a = (t1 - t0) + 0.5 * (t1**2 - t0**2)  # = 2
    c = math.exp(-integral_a)
    log_p0 = lambda z: jnp.sum(
        -0.5 * (z / std0) ** 2 - math.log(std0) - 0.5 * math.log(2 * math.pi), axis=1
    )
    v = lambda t, x: -(1.0 + t) * x
    x = _points(scale=2.0 * c)
    log_p, stats = flow_log_likelihood(v, x, t0=t0, t1=t1, log_p0=log_p0, **TOL)
    want = _gaussian_log_prob(x, (std0 * c) ** 2 * np.eye(d))
    np.testing.assert_allclose(np.asarray(log_p), want, atol=1e-4)
    np.testing.assert_allclose(np.asarray(stats["x0"]), np.asarray(x) / c, rtol=1e-4)
    np.testing.assert_allclose(np.asarray(stats["trace_integral"]), -d * integral_a, rtol=1e-5)
    # the base density is the one passed in (std 2, not the standard normal)
    np.testing.assert_allclose(
        np.asarray(stats["log_p0"]), np.asarray(log_p0(stats["x0"])), rtol=1e-6
    )


def test_rotating_frame_flow_pins_the_direction_of_time():
    """x = R(t) y with R(t) = expm(tJ), J skew, and dy/dt = C y (C constant, not normal) gives
    v(t, x) = (J + R(t) C R(t)ᵀ) x, flow map Φ = R(t1) expm(C T) R(t0)ᵀ. The field's matrices
    at different times do not commute, so reading the clock backwards (t = t0 + s instead of
    t1 − s) would give another x0 and another density."""
    omega, t0, t1 = 2.0, 0.25, 1.25
    j = np.array([[0.0, -omega], [omega, 0.0]])
    cmat = np.array([[-0.2, 0.9], [0.0, -1.1]])
    rot = lambda t: np.array(
        [[math.cos(omega * t), -math.sin(omega * t)], [math.sin(omega * t), math.cos(omega * t)]]
    )
    jj, cc = jnp.asarray(j, jnp.float32), jnp.asarray(cmat, jnp.float32)

    def v(t, x):
        r = jnp.array(
            [[jnp.cos(omega * t), -jnp.sin(omega * t)], [jnp.sin(omega * t), jnp.cos(omega * t)]]
        )
        return x @ (jj + r @ cc @ r.T).T

    phi = rot(t1) @ scipy.linalg.expm(cmat * (t1 - t0)) @ rot(t0).T
    x = _points(d=2, scale=0.5)
    log_p, stats = flow_log_likelihood(v, x, t0=t0, t1=t1, **TOL)
    x0 = np.asarray(x, np.float64) @ np.linalg.inv(phi).T
    np.testing.assert_allclose(np.asarray(stats["x0"]), x0, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(np.asarray(log_p), _gaussian_log_prob(x, phi @ phi.T), atol=1e-4)
    np.testing.assert_allclose(
        np.asarray(stats["trace_integral"]), np.trace(cmat) * (t1 - t0), rtol=1e-5
    )
    # the wrong clock would be detectable: its flow map differs
    phi_wrong = rot(t0) @ scipy.linalg.expm(cmat * (t1 - t0)) @ rot(t1).T
    assert np.max(np.abs(np.linalg.inv(phi_wrong) - np.linalg.inv(phi))) > 0.1


def test_vapo_sign_convention_contracting_potential():
    """VAPO's v = +∇Φ with Φ = −½ c‖x‖²: v = −c x, the linear case with A = c I; the flow
    contracts, so ∫ tr ∂v/∂x dt = −c D T < 0 and the density rises by c D T nats."""
    c, d, t1 = 0.7, 3, 1.0
    phi = lambda x: -0.5 * c * jnp.sum(x**2)
    v = lambda t, x: jax.grad(phi)(x)
    x = _points(scale=math.exp(-c * t1))
    log_p, stats = flow_log_likelihood(v, x, t1=t1, **TOL)
    np.testing.assert_allclose(
        np.asarray(log_p), _linear_flow_log_prob(x, c * np.eye(d), t1), atol=1e-4
    )
    np.testing.assert_allclose(np.asarray(stats["trace_integral"]), -c * d * t1, rtol=1e-5)
    np.testing.assert_allclose(
        np.asarray(log_p - stats["log_p0"]), c * d * t1, rtol=1e-5
    )  # log p = log p0 − ∫ tr ∂v/∂x = log p0 + ∫ tr ∇²(−Φ)
    # and the EBM's v = −∇E: log p = log p0 + ∫ tr ∇²E = log p0 + T tr A
    _, stats = flow_log_likelihood(_quadratic_velocity(), x, t1=t1, **TOL)
    np.testing.assert_allclose(np.asarray(stats["trace_integral"]), -t1 * np.trace(A), rtol=1e-5)


def test_image_shaped_inputs():
    """x `[B, 2, 2, 1]`: the flow acts on the flattened 4-vector; exact and Hutchinson agree on
    the shapes and the exact trace matches the closed form."""
    rng = np.random.default_rng(3)
    q = rng.standard_normal((4, 4))
    a4 = q @ q.T / 8 + 0.5 * np.eye(4)
    a4j = jnp.asarray(a4, jnp.float32)
    v = lambda t, x: -(x.reshape(x.shape[0], -1) @ a4j).reshape(x.shape)
    z = rng.standard_normal((5, 4)) @ scipy.linalg.expm(-a4).T  # samples of the flow at t1
    x = jnp.asarray(z.reshape(5, 2, 2, 1), jnp.float32)
    log_p, stats = flow_log_likelihood(v, x, **TOL)
    assert stats["x0"].shape == x.shape and log_p.shape == (5,)
    np.testing.assert_allclose(
        np.asarray(log_p), _linear_flow_log_prob(np.asarray(x).reshape(5, 4), a4, 1.0), atol=1e-4
    )
    log_h, stats_h = flow_log_likelihood(
        v, x, trace="hutchinson", key=jax.random.key(0), solver="rk4", num_steps=4
    )
    assert log_h.shape == (5,) and stats_h["x0"].shape == x.shape
    assert np.all(np.isfinite(np.asarray(log_h)))


# ---------------------------------------------------------------------------------------------
# Hutchinson's estimate on the linear flow


B_MAT = -A * 1.0  # B = −A T for T = 1: the trace integral of one probe is εᵀBε


def _rademacher_moments(b):
    """Exact variance and 4th cumulant of εᵀBε − tr B over the 2^D sign vectors."""
    d = b.shape[0]
    signs = np.array(np.meshgrid(*[[-1.0, 1.0]] * d, indexing="ij")).reshape(d, -1).T
    q = np.einsum("ni,ij,nj->n", signs, b, signs) - np.trace(b)
    var = np.mean(q**2)
    return var, np.mean(q**4) - 3 * var**2


def _gaussian_moments(b):
    """εᵀBε = Σ λᵢ zᵢ²: cumulants κₙ = 2^{n−1}(n−1)! tr Bⁿ, so κ₂ = 2‖B‖_F², κ₄ = 48 tr B⁴."""
    return 2 * np.sum(b**2), 48 * np.trace(np.linalg.matrix_power(b, 4))


@pytest.mark.parametrize("probe", ["rademacher", "gaussian"])
@pytest.mark.parametrize("num_probes", [1, 3])
def test_hutchinson_reproduces_its_probes(probe, num_probes):
    """The integrand is constant in time, so trace_integral = mean_m εₘᵀBεₘ for the probes
    `draw_probes(key, x, ...)` returns, to float32 round-off (any solver integrates a constant
    exactly; RK4 with 16 steps keeps the x-part's error ~1e-6)."""
    x, key = _points(), jax.random.key(7)
    log_p, stats = flow_log_likelihood(
        _quadratic_velocity(), x, trace="hutchinson", key=key, num_probes=num_probes,
        probe=probe, solver="rk4", num_steps=16,
    )  # fmt: skip
    eps = np.asarray(draw_probes(key, x, num_probes=num_probes, probe=probe), np.float64)
    assert eps.shape == (num_probes, *x.shape)
    if probe == "rademacher":
        assert set(np.unique(eps)) == {-1.0, 1.0}
    want = np.mean(np.einsum("mbi,ij,mbj->mb", eps, B_MAT, eps), axis=0)
    np.testing.assert_allclose(np.asarray(stats["trace_integral"]), want, rtol=1e-5, atol=1e-5)
    exact = _linear_flow_log_prob(x, A, 1.0)
    np.testing.assert_allclose(np.asarray(log_p), exact - (want - np.trace(B_MAT)), atol=1e-4)


@pytest.mark.parametrize("probe", ["rademacher", "gaussian"])
@pytest.mark.parametrize("num_probes", [1, 4])
def test_hutchinson_unbiased_with_closed_form_variance(probe, num_probes):
    """200 keys × 8 examples = N = 1600 independent errors e = log p̂ − log p (the probes of
    different examples are independent).

    (a) |mean e| < 3 SE with SE = s/√N from the sample.
    (b) The sample variance s² against σ² = Var(εᵀBε)/num_probes. For Gaussian e, (N−1)s²/σ²
    is χ²_{N−1}, i.e. s² has relative SE √(2/(N−1)) ≈ 3.5 %; these e are not Gaussian (a
    weighted χ², or a finite sign distribution), so the SE of s² is √((κ₄ + 2σ⁴)/N) with the
    4th cumulant κ₄ of the mean of num_probes probes (κ₄/num_probes³), computed in closed form
    for both probes. Accept |s² − σ²| < 4 SE. The keys are fixed, so the test is deterministic.
    RK4 with 16 steps (cheaper under vmap than dopri5) adds an ODE error ~1e-6, far below the
    spread of e (s ≈ 1).
    """
    keys = jax.random.split(jax.random.key(123), 200)
    x = _points()
    run = jax.jit(
        jax.vmap(
            lambda k: flow_log_likelihood(
                _quadratic_velocity(), x, trace="hutchinson", key=k, num_probes=num_probes,
                probe=probe, solver="rk4", num_steps=16,
            )[0]
        )
    )  # fmt: skip
    err = (np.asarray(run(keys), np.float64) - _linear_flow_log_prob(x, A, 1.0)[None]).ravel()
    n = err.size
    assert n == 1600
    se_mean = err.std(ddof=1) / math.sqrt(n)
    assert abs(err.mean()) < 3 * se_mean, (err.mean(), se_mean)

    var1, k4_1 = (_rademacher_moments if probe == "rademacher" else _gaussian_moments)(B_MAT)
    if probe == "rademacher":  # the textbook forms
        off = B_MAT - np.diag(np.diag(B_MAT))
        np.testing.assert_allclose(var1, 2 * np.sum(off**2), rtol=1e-12)
    else:
        np.testing.assert_allclose(var1, 2 * np.sum(B_MAT**2), rtol=1e-12)
    var, k4 = var1 / num_probes, k4_1 / num_probes**3
    se_var = math.sqrt((k4 + 2 * var**2) / n)
    s2 = err.var(ddof=1)
    assert abs(s2 - var) < 4 * se_var, (s2, var, se_var)
    # the check has power: Rademacher and Gaussian variances differ by > 4 SE here
    other = (
        2 * np.sum(B_MAT**2)
        if probe == "rademacher"
        else 2 * np.sum((B_MAT - np.diag(np.diag(B_MAT))) ** 2)
    )
    assert abs(other / num_probes - var) > 4 * se_var


# ---------------------------------------------------------------------------------------------
# A nonlinear flow: normalisation and the exact trace against jacfwd


def _mlp_velocity(seed=0, d=2, hidden=16, time_dependent=False):
    rng = np.random.default_rng(seed)
    w1 = jnp.asarray(rng.standard_normal((d, hidden)), jnp.float32)
    b1 = jnp.asarray(rng.standard_normal(hidden) * 0.5, jnp.float32)
    w2 = jnp.asarray(rng.standard_normal((hidden, d)) * 0.25, jnp.float32)
    u = jnp.asarray(rng.standard_normal(hidden), jnp.float32)
    if time_dependent:
        return lambda t, x: jnp.tanh(x @ w1 + b1 + t * u) @ w2
    return lambda t, x: jnp.tanh(x @ w1 + b1) @ w2


def test_nonlinear_flow_density_integrates_to_one():
    """v = tanh(x W1 + b1) W2 in 2-D, T = 1, base N(0, I). |vᵢ| ≤ Σₕ |W2ₕᵢ| < 4, so points
    leave the box [−8, 8]² only from |x0ᵢ| > 4 (mass < 1e-4), and exp(log p) at the box edge
    is < 1e-12. The midpoint sum of a smooth density with spread ~1 on a 0.2 grid is accurate
    far beyond 1e-4 (80² and 120² cells agree to 1e-6); the ODE error of log p is ~1e-5.
    So ∑ p·h² = 1 within 1e-3."""
    v = _mlp_velocity()
    n, half = 80, 8.0
    h = 2 * half / n
    g = -half + h * (np.arange(n) + 0.5)
    gx, gy = np.meshgrid(g, g, indexing="ij")
    pts = jnp.asarray(np.stack([gx.ravel(), gy.ravel()], 1), jnp.float32)
    log_p, stats = jax.jit(lambda p: flow_log_likelihood(v, p))(pts)
    assert bool(stats["success"])
    p = np.exp(np.asarray(log_p, np.float64))
    assert abs(p.sum() * h * h - 1.0) < 1e-3, p.sum() * h * h
    # the flow is really nonlinear/non-trivial: the density is far from the base N(0, I)
    lp_base = np.asarray(standard_normal_log_prob(pts), np.float64)
    inside = p > 1e-3
    assert np.max(np.abs(np.log(p[inside]) - lp_base[inside])) > 0.5


def test_one_euler_step_trace_is_jacfwd_trace():
    """Euler with one step evaluates the augmented field at s = 0, i.e. at (t1, x): the trace
    integral is T·tr ∂v/∂x(t1, x) and x0 = x − T v(t1, x). The time-dependent field checks the
    clock (t = t1 at s = 0)."""
    d, t0, t1 = 3, 0.3, 0.5
    v = _mlp_velocity(seed=1, d=d, time_dependent=True)
    x = _points(n=6, d=d, seed=2, scale=1.0)
    log_p, stats = flow_log_likelihood(v, x, t0=t0, t1=t1, solver="euler", num_steps=1)
    jac = jax.vmap(jax.jacfwd(lambda z: v(t1, z[None])[0]))(x)
    want = (t1 - t0) * np.trace(np.asarray(jac, np.float64), axis1=1, axis2=2)
    np.testing.assert_allclose(np.asarray(stats["trace_integral"]), want, rtol=1e-5, atol=1e-6)
    x0 = np.asarray(x) - (t1 - t0) * np.asarray(v(t1, x))
    np.testing.assert_allclose(np.asarray(stats["x0"]), x0, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(
        np.asarray(log_p), np.asarray(standard_normal_log_prob(jnp.asarray(x0))) - want, atol=1e-5
    )
    assert int(stats["nfe"]) == 1
    # the trace at t0 differs, so evaluating at the wrong end would be caught
    jac0 = jax.vmap(jax.jacfwd(lambda z: v(t0, z[None])[0]))(x)
    assert np.max(np.abs(np.trace(np.asarray(jac0), axis1=1, axis2=2) * (t1 - t0) - want)) > 1e-3


# ---------------------------------------------------------------------------------------------
# Fixed solvers, jit, gradients


def test_rk4_agrees_with_dopri5():
    x = _points()
    lp_dopri, _ = flow_log_likelihood(_quadratic_velocity(), x, **TOL)
    lp_rk4, stats = flow_log_likelihood(_quadratic_velocity(), x, solver="rk4", num_steps=32)
    assert int(stats["nfe"]) == 4 * 32 and bool(stats["success"])
    # RK4's global error ~ T (‖A‖h)⁵/120 / h ≈ 1e-7 at h = 1/32, ‖A‖ ≈ 1.9
    np.testing.assert_allclose(np.asarray(lp_rk4), np.asarray(lp_dopri), atol=1e-4)
    np.testing.assert_allclose(np.asarray(lp_rk4), _linear_flow_log_prob(x, A, 1.0), atol=1e-4)
    # Euler with 32 steps is first order: visibly off (a sanity check of the comparison)
    lp_euler, _ = flow_log_likelihood(_quadratic_velocity(), x, solver="euler", num_steps=32)
    assert np.max(np.abs(np.asarray(lp_euler) - np.asarray(lp_dopri))) > 1e-3


@pytest.mark.parametrize("trace,solver", [("exact", "rk4"), ("hutchinson", "dopri5")])
def test_jit_equals_no_jit(trace, solver):
    x, key = _points(), jax.random.key(1)
    kw = dict(trace=trace, key=key, num_probes=2, solver=solver, num_steps=16, **TOL)
    lp_eager, st_eager = flow_log_likelihood(_quadratic_velocity(), x, **kw)
    lp_jit, st_jit = jax.jit(lambda z: flow_log_likelihood(_quadratic_velocity(), z, **kw))(x)
    # the same program up to XLA fusion: float32 round-off only
    np.testing.assert_allclose(np.asarray(lp_jit), np.asarray(lp_eager), rtol=1e-6, atol=1e-5)
    np.testing.assert_allclose(np.asarray(st_jit["x0"]), np.asarray(st_eager["x0"]), atol=1e-6)
    assert int(st_jit["nfe"]) == int(st_eager["nfe"])


@pytest.mark.parametrize("solver", ["dopri5", "rk4"])
def test_gradient_with_respect_to_a_velocity_parameter(solver):
    """L(θ) = Σ log p for v = −θ A x. The closed form is ∑ log N(x; 0, expm(−2θA)); jax.grad
    through the solver against the closed-form derivative and a central difference.

    The central difference (h = 1e-2) has truncation error ~h²·L'''/6 ≲ 1e-4·|L| and float32
    round-off ~1e-7·|L|/h (|L| ≈ 40); for dopri5 the step sequence may also change with θ,
    a jump of ~tol·|L| per evaluation. So the difference is matched to 2e-3 relative, the
    closed-form gradient to 1e-4 relative."""
    x = _points()
    a = jnp.asarray(A, jnp.float32)
    kw = dict(solver=solver, num_steps=32, **TOL)

    def loss(theta):
        v = lambda t, z: -theta * (z @ a)
        return jnp.sum(flow_log_likelihood(v, x, **kw)[0])

    # closed form in A's eigenbasis A = U diag(λ) Uᵀ, y = Uᵀx: Σ = U diag(e^{−2θλ}) Uᵀ, so
    # L = Σ_b Σ_k (−½ y²_bk e^{2θλ_k} + θλ_k) − B (D/2) log 2π and
    # dL/dθ = Σ_b Σ_k (−λ_k y²_bk e^{2θλ_k} + λ_k)
    lam, u = np.linalg.eigh(A)
    y2 = (np.asarray(x, np.float64) @ u) ** 2
    closed = lambda th: (
        np.sum(-0.5 * y2 * np.exp(2 * th * lam) + th * lam) - x.size / 2 * math.log(2 * math.pi)
    )
    closed_grad = lambda th: np.sum(-lam * y2 * np.exp(2 * th * lam) + lam)

    theta, h = 1.0, 1e-2
    value_and_grad = jax.jit(jax.value_and_grad(loss))  # one compilation for all three points
    value, g = (float(r) for r in value_and_grad(theta))
    fd = (float(value_and_grad(theta + h)[0]) - float(value_and_grad(theta - h)[0])) / (2 * h)
    assert np.isfinite(g) and abs(g) > 1.0
    np.testing.assert_allclose(value, closed(theta), rtol=1e-5)
    np.testing.assert_allclose(value, _linear_flow_log_prob(x, A, theta).sum(), rtol=1e-5)
    np.testing.assert_allclose(g, closed_grad(theta), rtol=1e-4)
    np.testing.assert_allclose(g, fd, rtol=2e-3)


# ---------------------------------------------------------------------------------------------
# Argument errors


def _v(t, x):
    return -x


def test_errors():
    x, key = _points(n=4), jax.random.key(0)
    with pytest.raises(ValueError, match="trace='bogus'"):
        flow_log_likelihood(_v, x, trace="bogus")
    with pytest.raises(ValueError, match="solver='rk45'"):
        flow_log_likelihood(_v, x, solver="rk45")
    with pytest.raises(ValueError, match="probe='uniform'"):
        flow_log_likelihood(_v, x, trace="hutchinson", key=key, probe="uniform")
    for bad in (0, -1, True, 2.0):
        with pytest.raises(ValueError, match="num_probes must be an int >= 1"):
            flow_log_likelihood(_v, x, trace="hutchinson", key=key, num_probes=bad)
    with pytest.raises(ValueError, match="pass key="):
        flow_log_likelihood(_v, x, trace="hutchinson")
    for t0, t1 in ((1.0, 1.0), (1.0, 0.5)):
        with pytest.raises(ValueError, match="need t1 > t0"):
            flow_log_likelihood(_v, x, t0=t0, t1=t1)


def test_exact_trace_refused_above_the_memory_limit():
    x = _points(n=4)  # [4, 3]: the Jacobians take 4·4·3·3 = 144 bytes
    with pytest.raises(ValueError, match="hutchinson"):
        flow_log_likelihood(_v, x, exact_max_bytes=143)
    one_step = dict(solver="euler", num_steps=1)
    log_p, _ = flow_log_likelihood(_v, x, exact_max_bytes=144, **one_step)  # at the limit: allowed
    assert np.all(np.isfinite(np.asarray(log_p)))
    # the same limit does not apply to Hutchinson's estimate
    log_p, _ = flow_log_likelihood(
        _v, x, trace="hutchinson", key=jax.random.key(0), exact_max_bytes=1, **one_step
    )
    assert np.all(np.isfinite(np.asarray(log_p)))
    # image-shaped: D counts all the features ([2, 2, 2, 1] -> D = 4, 2·4·4·4 = 128 bytes)
    with pytest.raises(ValueError, match="D=4"):
        flow_log_likelihood(_v, jnp.zeros((2, 2, 2, 1)), exact_max_bytes=127)


def test_step_budget_exhaustion_is_reported_not_raised():
    """The adaptive solve runs with throw=False: out of steps, `success` is False (inside jit)."""
    x = _points(n=4)
    _, stats = flow_log_likelihood(_quadratic_velocity(), x, rtol=1e-8, atol=1e-8, max_steps=2)
    assert not bool(stats["success"])


# ---------------------------------------------------------------------------------------------
# Bits per dimension


def test_bits_per_dim():
    d = 12
    # the uniform density on [−1, 1]^D puts mass 1/256 in each of the 256 bins: 8 bits
    uniform = jnp.full((3,), -d * math.log(2.0))
    np.testing.assert_allclose(np.asarray(bits_per_dim(uniform, d)), 8.0, rtol=1e-6)
    # log p = −100 nats, D = 10, bins of width 2/256: (100 + 10·ln 128) / (10 ln 2) = 10/ln 2 + 7
    np.testing.assert_allclose(
        float(bits_per_dim(jnp.array([-100.0]), 10)[0]), 10 / math.log(2) + 7, rtol=1e-6
    )
    # data in [0, 1] (data_range=1) with 4 bins, log p = 0 on D = 2: each bin has mass 1/4: 2 bits
    np.testing.assert_allclose(
        float(bits_per_dim(jnp.array([0.0]), 2, bins=4, data_range=1.0)[0]), 2.0, rtol=1e-6
    )

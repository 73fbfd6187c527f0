"""Checks of jaxgen.samplers.ode against closed-form ODE solutions (docs/methods/vapo.md §5.1,
eq. (15)).

Error bounds: an adaptive step is accepted when the RMS of (local error)/(atol + rtol·|y|) is
≤ 1, so after `n` accepted steps the global error of a non-expanding linear flow is at most
about n·(atol + rtol·|y|) per RMS component. Fixed-step methods are compared with the exact
discrete solution (the stability polynomial of the method applied to a linear ODE).
"""

import math
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxgen.samplers import solve_adaptive, solve_adaptive_per_sample, solve_fixed
from jaxgen.samplers.ode import DT_MIN

ADAPTIVE = ["dopri5", "tsit5"]
FIXED = {"euler": 1, "heun": 2, "rk4": 4}  # method -> order (= stages here)
ELL = math.log1p(1e4)  # ℓ = ln((1+ε)/ε), ε = 1e-4
A = 1e-4 / (1 + 1e-4)


def _x0(shape=(5, 3), seed=0):
    return jnp.asarray(np.random.default_rng(seed).standard_normal(shape), jnp.float32)


def _decay(k):
    return lambda t, x: -k * x


def _rotation(omega):
    gen = jnp.array([[0.0, -omega], [omega, 0.0]], jnp.float32)
    return lambda t, x: x @ gen.T


def _rotate(x0, angle):
    c, s = math.cos(angle), math.sin(angle)
    return np.asarray(x0, np.float64) @ np.array([[c, -s], [s, c]]).T


def _rms_scaled_err(got, want, rtol, atol):
    want = np.asarray(want, np.float64)
    err = (np.asarray(got, np.float64) - want) / (atol + rtol * np.abs(want))
    return float(np.sqrt(np.mean(err**2)))


def _stability_poly(method, z):
    """One step of `method` on dx/dt = λx multiplies x by R(z), z = λh."""
    return {
        "euler": 1 + z,
        "heun": 1 + z + z**2 / 2,
        "rk4": 1 + z + z**2 / 2 + z**3 / 6 + z**4 / 24,
    }[method]


# ---------------------------------------------------------------------------------------------
# Adaptive solvers on linear ODEs


@pytest.mark.parametrize("solver", ADAPTIVE)
@pytest.mark.parametrize("tol", [1e-3, 1e-6])
def test_adaptive_linear_decay(solver, tol):
    k, t1 = 2.0, 1.5
    x0 = _x0()
    x, stats = solve_adaptive(_decay(k), x0, t1=t1, rtol=tol, atol=tol, solver=solver)
    want = np.asarray(x0, np.float64) * math.exp(-k * t1)
    assert bool(stats["success"])
    n_acc = int(stats["num_accepted"])
    assert int(stats["num_steps"]) == n_acc + int(stats["num_rejected"])
    assert _rms_scaled_err(x, want, tol, tol) <= n_acc, (n_acc, _rms_scaled_err(x, want, tol, tol))
    if tol == 1e-6:  # float32 floor ≈ 1e-7·|x|; the 5th-order solution is far below the bound
        np.testing.assert_allclose(np.asarray(x), want, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("solver", ADAPTIVE)
def test_adaptive_rotation(solver):
    omega, t1 = 3.0, 2.0
    x0 = _x0((4, 2), seed=1)
    tol = 1e-6
    x, stats = solve_adaptive(_rotation(omega), x0, t1=t1, rtol=tol, atol=tol, solver=solver)
    want = _rotate(x0, omega * t1)
    assert bool(stats["success"])
    assert _rms_scaled_err(x, want, tol, tol) <= int(stats["num_accepted"])
    np.testing.assert_allclose(np.asarray(x), want, atol=1e-4)
    # a rotation preserves norms
    np.testing.assert_allclose(
        np.linalg.norm(np.asarray(x), axis=1), np.linalg.norm(np.asarray(x0), axis=1), rtol=1e-4
    )


@pytest.mark.parametrize("solver", ADAPTIVE)
def test_adaptive_error_shrinks_with_tolerance(solver):
    x0 = _x0((4, 2), seed=2)
    want = _rotate(x0, 3.0 * 2.0)
    errs, nfes = [], []
    for tol in (1e-2, 1e-4, 1e-6):
        x, stats = solve_adaptive(_rotation(3.0), x0, t1=2.0, rtol=tol, atol=tol, solver=solver)
        errs.append(float(np.max(np.abs(np.asarray(x) - want))))
        nfes.append(int(stats["nfe"]))
    assert errs[0] > errs[1] > errs[2]
    # the global error tracks the tolerance (roughly ∝ tol); 1e4× tighter must gain > 30×
    assert errs[0] > 30 * errs[2]
    assert nfes[0] < nfes[1] < nfes[2]


@pytest.mark.parametrize("solver", ADAPTIVE + ["heun"])
def test_adaptive_time_dependent_field(solver):
    """dx/dt = cos(t) x  ⇒  x(T) = x0 exp(sin T)."""
    t1, tol = 2.0, 1e-6
    x0 = _x0((3, 4), seed=3)
    f = lambda t, x: jnp.cos(t) * x
    x, stats = solve_adaptive(f, x0, t1=t1, rtol=tol, atol=tol, solver=solver)
    want = np.asarray(x0, np.float64) * math.exp(math.sin(t1))
    assert bool(stats["success"])
    # the flow expands by at most e^{1}, so allow that factor on top of the local-error sum
    assert _rms_scaled_err(x, want, tol, tol) <= math.e * int(stats["num_accepted"])
    np.testing.assert_allclose(np.asarray(x), want, rtol=5e-4, atol=1e-5)


def test_adaptive_nonzero_start_time():
    """Integrating over [t0, t1] with t0 ≠ 0 uses the right clock: x0·exp(sin t1 − sin t0)."""
    f = lambda t, x: jnp.cos(t) * x
    x0 = _x0((2, 3), seed=4)
    x, _ = solve_adaptive(f, x0, t0=0.5, t1=2.5, rtol=1e-6, atol=1e-6)
    want = np.asarray(x0, np.float64) * math.exp(math.sin(2.5) - math.sin(0.5))
    np.testing.assert_allclose(np.asarray(x), want, rtol=1e-4, atol=1e-6)
    xf, _ = solve_fixed(f, x0, t0=0.5, t1=2.5, num_steps=50, method="rk4")
    np.testing.assert_allclose(np.asarray(xf), want, rtol=1e-4, atol=1e-6)


# ---------------------------------------------------------------------------------------------
# Fixed-step solvers: exact discrete solution and convergence order


@pytest.mark.parametrize("method", list(FIXED))
def test_fixed_matches_exact_discrete_solution(method):
    k, t1, n = 2.0, 1.0, 10
    x0 = _x0()
    x, stats = solve_fixed(_decay(k), x0, t1=t1, num_steps=n, method=method)
    amp = _stability_poly(method, -k * t1 / n) ** n
    np.testing.assert_allclose(np.asarray(x), np.asarray(x0, np.float64) * amp, rtol=2e-6)
    assert int(stats["nfe"]) == n * FIXED[method]


@pytest.mark.parametrize("method,order", list(FIXED.items()))
def test_fixed_convergence_order(method, order):
    """Halving the step divides the global error by ≈ 2^order (2, 4, 16).

    Run in float64 so that the RK4 error (≈ 1e-8 at 40 steps) is far above round-off.
    """
    k, t1 = 1.0, 1.0
    exact = math.exp(-k * t1)
    n = {"euler": 80, "heun": 40, "rk4": 20}[method]
    with jax.enable_x64(True):
        x0 = jnp.ones((1, 1), jnp.float64)
        run = lambda m: solve_fixed(_decay(k), x0, t1=t1, num_steps=m, method=method)[0]
        assert run(n).dtype == jnp.float64
        e1, e2 = (abs(float(run(m)[0, 0]) - exact) for m in (n, 2 * n))
    ratio = e1 / e2
    # the same ratio from the exact discrete solutions: 2^p up to the O(h) pre-asymptotic term
    d1 = abs(_stability_poly(method, -k * t1 / n) ** n - exact)
    d2 = abs(_stability_poly(method, -k * t1 / (2 * n)) ** (2 * n) - exact)
    np.testing.assert_allclose(ratio, d1 / d2, rtol=1e-4)
    np.testing.assert_allclose(ratio, 2.0**order, rtol=0.05)


@pytest.mark.parametrize("method", list(FIXED))
def test_fixed_rotation_and_time_dependent(method):
    n = 400
    x0 = _x0((4, 2), seed=5)
    x, _ = solve_fixed(_rotation(3.0), x0, t1=2.0, num_steps=n, method=method)
    tol = {"euler": 0.2, "heun": 1e-3, "rk4": 1e-5}[method]  # C·h^p with h = 5e-3
    np.testing.assert_allclose(np.asarray(x), _rotate(x0, 6.0), atol=tol)
    f = lambda t, x: jnp.cos(t) * x
    x, _ = solve_fixed(f, x0, t1=2.0, num_steps=n, method=method)
    want = np.asarray(x0, np.float64) * math.exp(math.sin(2.0))
    np.testing.assert_allclose(
        np.asarray(x), want, atol={"euler": 2e-2, "heun": 1e-4, "rk4": 1e-5}[method]
    )
    # ...and the Euler error really is first order (not accidentally better)
    if method == "euler":
        assert np.max(np.abs(np.asarray(x) - want)) > 1e-3


# ---------------------------------------------------------------------------------------------
# NFE accounting: stats["nfe"] == vector-field calls counted with a callback


def _counting_field():
    calls = []

    def f(t, x):
        jax.debug.callback(lambda t: calls.append(float(t)), t)
        return -3.0 * x + jnp.sin(5.0 * t) * x

    return f, calls


@pytest.mark.parametrize("solver", ["dopri5", "tsit5", "heun"])
@pytest.mark.parametrize("tol", [1e-3, 1e-6])
def test_adaptive_nfe_equals_counted_calls(solver, tol):
    f, calls = _counting_field()
    x, stats = solve_adaptive(f, _x0((4, 3)), t1=1.0, rtol=tol, atol=tol, solver=solver)
    jax.block_until_ready(x)
    jax.effects_barrier()
    assert int(stats["nfe"]) == len(calls), (solver, tol, int(stats["nfe"]), len(calls))
    assert int(stats["num_rejected"]) >= 0 and int(stats["num_steps"]) > 0
    assert min(calls) == 0.0 and max(calls) == pytest.approx(1.0)  # it ran over [0, 1]


@pytest.mark.parametrize("method", list(FIXED))
@pytest.mark.parametrize("n", [7, 13])
def test_fixed_nfe_equals_counted_calls(method, n):
    f, calls = _counting_field()
    x, stats = solve_fixed(f, _x0((4, 3)), t1=1.0, num_steps=n, method=method)
    jax.block_until_ready(x)
    jax.effects_barrier()
    assert int(stats["nfe"]) == len(calls) == n * FIXED[method]
    # evaluation times lie in [0, 1] and include t0 (unordered callbacks may arrive out of order)
    assert min(calls) == 0.0 and max(calls) <= 1.0 + 1e-6


def test_nfe_counted_under_jit():
    f, calls = _counting_field()
    run = jax.jit(lambda x0: solve_adaptive(f, x0, rtol=1e-5, atol=1e-5))
    x, stats = run(_x0((4, 3)))
    jax.block_until_ready(x)
    jax.effects_barrier()
    assert int(stats["nfe"]) == len(calls) > 0


# ---------------------------------------------------------------------------------------------
# Per-sample step-size control


def _rate_field(t, x):
    """State [x, k]: dx/dt = −k x, dk/dt = 0 — each sample carries its own stiffness k."""
    return jnp.stack([-x[:, 1] * x[:, 0], jnp.zeros_like(x[:, 1])], axis=1)


def test_per_sample_solver():
    rates = np.array([0.5, 2.0, 8.0, 32.0], np.float32)
    x0 = jnp.asarray(np.stack([np.array([1.0, -0.5, 2.0, 1.5], np.float32), rates], axis=1))
    tol, t1 = 1e-5, 1.0
    x, stats = solve_adaptive_per_sample(_rate_field, x0, t1=t1, rtol=tol, atol=tol)
    want = np.stack([np.asarray(x0[:, 0], np.float64) * np.exp(-rates * t1), rates], axis=1)
    nfe = np.asarray(stats["nfe"])
    assert nfe.shape == (4,) and np.asarray(stats["success"]).all()
    # stiffer samples need more evaluations
    assert np.all(np.diff(nfe) >= 0) and nfe[-1] > 2 * nfe[0], nfe
    # each sample: within its own accepted-step error bound
    for i in range(4):
        n_acc = int(stats["num_accepted"][i])
        assert _rms_scaled_err(x[i], want[i], tol, tol) <= n_acc
    # the per-sample nfe is what solving that sample alone reports
    for i in (0, 3):
        xi, si = solve_adaptive(_rate_field, x0[i : i + 1], t1=t1, rtol=tol, atol=tol)
        assert int(si["nfe"]) == int(nfe[i])
        np.testing.assert_allclose(np.asarray(xi[0]), np.asarray(x[i]), rtol=1e-6, atol=1e-9)
    # and agrees with the batched solver (shared steps) to the tolerance
    xb, sb = solve_adaptive(_rate_field, x0, t1=t1, rtol=tol, atol=tol)
    assert np.asarray(sb["nfe"]).shape == ()
    # (both solutions carry O(steps · tol) global error; ~10–30 steps here, so 20·tol)
    np.testing.assert_allclose(np.asarray(xb), np.asarray(x), atol=20 * tol)
    np.testing.assert_allclose(np.asarray(xb), want, atol=20 * tol)


def test_max_steps_exhaustion_is_reported():
    """With throw=False a solve that runs out of steps must say so in stats["success"]."""
    rates = np.array([0.5, 400.0], np.float32)
    x0 = jnp.asarray(np.stack([np.ones(2, np.float32), rates], axis=1))
    kw = dict(rtol=1e-7, atol=1e-7, max_steps=24)
    _, stats = solve_adaptive(_rate_field, x0, **kw)
    assert not bool(stats["success"]) and int(stats["num_steps"]) == 24
    x, stats = solve_adaptive_per_sample(_rate_field, x0, **kw)
    np.testing.assert_array_equal(np.asarray(stats["success"]), [True, False])
    np.testing.assert_allclose(float(x[0, 0]), math.exp(-0.5), rtol=1e-5)


def test_a_blown_up_field_ends_the_solve_at_once_with_dt_min():
    """A field that has blown up (every trial step's error NaN) is retried with ever smaller
    steps until max_steps (a diverged short-run EBM's training step took minutes); with
    `dt_min` (what the short-run EBM's training solve passes) it fails within a few dozen."""
    field = lambda t, x: jnp.where(t > 0.05, jnp.nan, -x)  # finite until t = 0.05
    x0 = jnp.ones((4, 2))
    kw = dict(rtol=1e-5, atol=1e-5, max_steps=20_000)
    _, slow = jax.jit(partial(solve_adaptive, field, **kw))(x0)
    _, fast = jax.jit(partial(solve_adaptive, field, dt_min=DT_MIN, **kw))(x0)
    assert not bool(slow["success"]) and not bool(fast["success"])
    assert int(fast["num_steps"]) < 100 < int(slow["num_steps"]), (fast, slow)


def test_per_sample_solver_under_jit_and_shapes():
    x0 = _x0((3, 2, 2), seed=6)  # trailing image-like shape
    run = jax.jit(lambda x: solve_adaptive_per_sample(_decay(1.0), x, rtol=1e-6, atol=1e-6))
    x, stats = run(x0)
    assert x.shape == x0.shape and stats["nfe"].shape == (3,)
    np.testing.assert_allclose(np.asarray(x), np.asarray(x0) * math.exp(-1.0), rtol=1e-4)


# ---------------------------------------------------------------------------------------------
# jit


def test_everything_jits():
    x0 = _x0((4, 2), seed=7)
    f = _rotation(2.0)
    want = _rotate(x0, 2.0)
    for solver in ADAPTIVE:
        kw = dict(rtol=1e-6, atol=1e-6, solver=solver)
        xj, sj = jax.jit(lambda x, kw=kw: solve_adaptive(f, x, **kw))(x0)
        xe, se = solve_adaptive(f, x0, **kw)
        np.testing.assert_allclose(np.asarray(xj), np.asarray(xe), rtol=1e-5, atol=1e-6)
        assert int(sj["nfe"]) == int(se["nfe"])
        np.testing.assert_allclose(np.asarray(xj), want, atol=1e-4)
    for method in FIXED:
        run = partial(solve_fixed, f, num_steps=64, method=method)
        xj, sj = jax.jit(run)(x0)
        xe, se = run(x0)
        np.testing.assert_allclose(np.asarray(xj), np.asarray(xe), rtol=1e-6, atol=1e-7)
        assert int(sj["nfe"]) == int(se["nfe"]) == 64 * FIXED[method]


# ---------------------------------------------------------------------------------------------
# Errors


def test_errors():
    f, x0 = _decay(1.0), _x0((2, 2))
    for t0, t1 in ((0.0, 0.0), (1.0, 0.5)):
        with pytest.raises(ValueError, match="t1 > t0"):
            solve_adaptive(f, x0, t0=t0, t1=t1)
        with pytest.raises(ValueError, match="t1 > t0"):
            solve_adaptive_per_sample(f, x0, t0=t0, t1=t1)
        with pytest.raises(ValueError, match="t1 > t0"):
            solve_fixed(f, x0, t0=t0, t1=t1)
    with pytest.raises(ValueError, match="unknown adaptive solver 'rk45'"):
        solve_adaptive(f, x0, solver="rk45")
    with pytest.raises(ValueError, match="unknown adaptive solver"):
        solve_adaptive_per_sample(f, x0, solver="euler")
    with pytest.raises(ValueError, match="unknown fixed-step method 'midpoint'"):
        solve_fixed(f, x0, method="midpoint")
    for n in (0, -3):
        with pytest.raises(ValueError, match="num_steps must be >= 1"):
            solve_fixed(f, x0, num_steps=n)


# ---------------------------------------------------------------------------------------------
# The point-mass flow of docs/methods/vapo.md eq. (15): ∇Φ* = −(ℓ/2) x, x(t) = x0 a^{t/2}


def test_point_mass_flow():
    x0 = _x0((6, 3), seed=8)
    f = lambda t, x: -(ELL / 2) * x
    for t1 in (1.0, 2.0):
        want = np.asarray(x0, np.float64) * A ** (t1 / 2)
        x, stats = solve_adaptive(f, x0, t1=t1, rtol=1e-6, atol=1e-8)
        np.testing.assert_allclose(np.asarray(x), want, rtol=1e-3)
        # at the VAPO protocol tolerances (rtol = atol = 1e-3) the error is bounded by the
        # accepted-step count times atol (the solution is ≪ 1 so atol dominates)
        x, stats = solve_adaptive(f, x0, t1=t1, rtol=1e-3, atol=1e-3)
        assert np.max(np.abs(np.asarray(x) - want)) <= int(stats["num_accepted"]) * 1e-3
    np.testing.assert_allclose(A**0.5, 0.0099995, rtol=1e-5)

"""Mathematical checks of jaxgen.metrics.toy2d (closed forms, unbiasedness, exact quadrature)."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.special import ive
from scipy.stats import multivariate_normal

from jaxgen.metrics import (
    energy_distance,
    gaussian_mixture_log_density,
    grid_log_likelihood,
    mmd_rbf,
    mode_coverage,
)
from jaxgen.metrics import toy2d as toy2d_metrics

BANDWIDTHS = (0.1, 0.3, 1.0)
EIGHT_CENTERS = 2.0 * np.array(
    [(math.cos(k * math.pi / 4), math.sin(k * math.pi / 4)) for k in range(8)]
)
EIGHT_STD = 0.1


def _mixture_samples(rng, n, centers=EIGHT_CENTERS, std=EIGHT_STD):
    idx = rng.integers(0, len(centers), size=n)
    return centers[idx] + std * rng.standard_normal((n, centers.shape[1]))


def _brute_kernel(a, b, hs=BANDWIDTHS):
    return sum(math.exp(-float(np.sum((a - b) ** 2)) / (2 * h * h)) for h in hs)


def _brute_mmd(x, y):
    n, m = len(x), len(y)
    kxx = sum(_brute_kernel(x[i], x[j]) for i in range(n) for j in range(n) if i != j)
    kyy = sum(_brute_kernel(y[i], y[j]) for i in range(m) for j in range(m) if i != j)
    kxy = sum(_brute_kernel(a, b) for a in x for b in y)
    return kxx / (n * (n - 1)) + kyy / (m * (m - 1)) - 2 * kxy / (n * m)


def _brute_energy(x, y):
    dist = lambda a, b: float(np.linalg.norm(a - b))
    n, m = len(x), len(y)
    exx = sum(dist(x[i], x[j]) for i in range(n) for j in range(n) if i != j) / (n * (n - 1))
    eyy = sum(dist(y[i], y[j]) for i in range(m) for j in range(m) if i != j) / (m * (m - 1))
    exy = sum(dist(a, b) for a in x for b in y) / (n * m)
    return 2 * exy - exx - eyy


def _gaussian_mmd2(s1, s2, shift, dim, hs=BANDWIDTHS):
    """Population MMD^2 between N(0, s1^2 I) and N(shift, s2^2 I) for the summed RBF kernel.

    E exp(-|Z|^2 / 2h^2) for Z ~ N(m, t^2 I_D) is (h^2/(h^2+t^2))^(D/2) exp(-|m|^2/2(h^2+t^2)).
    """
    d2 = float(np.sum(np.square(shift)))

    def ek(t2, m2):
        return sum(
            (h * h / (h * h + t2)) ** (dim / 2) * math.exp(-m2 / (2 * (h * h + t2))) for h in hs
        )

    return ek(2 * s1**2, 0.0) + ek(2 * s2**2, 0.0) - 2 * ek(s1**2 + s2**2, d2)


def _rice_mean(nu, tau):
    """E|Z| for Z ~ N(m, tau^2 I_2) with |m| = nu (the Rice distribution mean)."""
    a = nu * nu / (2 * tau * tau)
    laguerre_half = (1 + a) * ive(0, a / 2) + a * ive(1, a / 2)  # L_{1/2}(-a)
    return tau * math.sqrt(math.pi / 2) * laguerre_half


# --------------------------------------------------------------------------------------- MMD


def test_mmd_matches_brute_force_in_low_and_high_dim():
    rng = np.random.default_rng(0)
    for dim in (3, 10):  # 10 uses the Gram-expansion branch of the distance computation
        x, y = rng.normal(size=(7, dim)) * 0.4, rng.normal(size=(5, dim)) * 0.4 + 0.2
        assert mmd_rbf(x, y) == pytest.approx(_brute_mmd(x, y), rel=1e-10, abs=1e-12)


def test_mmd_point_masses_closed_form():
    a, b = np.array([0.3, -1.0]), np.array([0.5, -0.8])
    x, y = np.tile(a, (6, 1)), np.tile(b, (4, 1))
    d2 = float(np.sum((a - b) ** 2))
    expected = sum(2.0 - 2.0 * math.exp(-d2 / (2 * h * h)) for h in BANDWIDTHS)
    assert mmd_rbf(x, y) == pytest.approx(expected, rel=1e-12)
    assert mmd_rbf(x, np.tile(a, (3, 1))) == pytest.approx(0.0, abs=1e-12)
    # one bandwidth, 1-D
    x1, y1 = np.full((5, 1), 2.0), np.full((3, 1), 0.0)
    assert mmd_rbf(x1, y1, bandwidths=(1.0,)) == pytest.approx(2 - 2 * math.exp(-2.0))


def test_mmd_blocked_equals_unblocked(monkeypatch):
    rng = np.random.default_rng(1)
    x, y = rng.normal(size=(53, 2)), rng.normal(size=(41, 2)) + 0.1
    full = mmd_rbf(x, y)
    monkeypatch.setattr(toy2d_metrics, "_MAX_BLOCK", 100)  # a couple of rows per block
    assert mmd_rbf(x, y) == pytest.approx(full, rel=1e-12, abs=1e-15)


@pytest.mark.parametrize("shift", [0.0, 0.25])
def test_mmd_is_unbiased_for_gaussians(shift):
    """Mean of R independent estimates = population MMD^2 (closed form), within 4 SE."""
    rng = np.random.default_rng(2)
    s, reps = 0.5, 40
    vals = np.array(
        [
            mmd_rbf(
                s * rng.standard_normal((150, 2)), s * rng.standard_normal((220, 2)) + (shift, 0.0)
            )
            for _ in range(reps)
        ]
    )
    truth = _gaussian_mmd2(s, s, (shift, 0.0), dim=2)
    se = vals.std(ddof=1) / math.sqrt(reps)
    assert abs(vals.mean() - truth) < 4 * se
    if shift == 0.0:
        assert truth == 0.0 and (vals < 0).any()  # unbiased => negative values do occur
    else:
        assert truth > 6 * se


def test_mmd_same_distribution_near_zero_shifted_clearly_positive():
    """Compare single estimates with the permutation (null) spread at the same sizes."""
    rng = np.random.default_rng(3)
    x = _mixture_samples(rng, 500)
    y_same = _mixture_samples(rng, 700)  # a different sample size
    y_shift = y_same + np.array([0.2, 0.0])  # two mode stds
    pooled = np.concatenate([x, y_same])
    null = []
    for _ in range(12):
        p = rng.permutation(len(pooled))
        null.append(mmd_rbf(pooled[p[:500]], pooled[p[500:]]))
    null_scale = math.sqrt(np.mean(np.square(null)))
    assert abs(mmd_rbf(x, y_same)) < 4 * null_scale
    assert mmd_rbf(x, y_shift) > 10 * null_scale


# ------------------------------------------------------------------------------ energy distance


def test_energy_distance_matches_brute_force():
    rng = np.random.default_rng(4)
    x, y = rng.normal(size=(8, 2)), rng.normal(size=(6, 2)) + 0.5
    assert energy_distance(x, y) == pytest.approx(_brute_energy(x, y), rel=1e-10)


def test_energy_distance_point_masses():
    a, b = np.array([1.0, 2.0]), np.array([-2.0, 6.0])  # |a - b| = 5
    assert energy_distance(np.tile(a, (5, 1)), np.tile(b, (3, 1))) == pytest.approx(10.0)
    assert energy_distance(np.tile(a, (5, 1)), np.tile(a, (2, 1))) == pytest.approx(0.0)


@pytest.mark.parametrize("shift", [0.0, 0.4])
def test_energy_distance_is_unbiased_for_gaussians(shift):
    """ED between N(0, s^2 I) and N(shift, s^2 I): 2 E|N(shift, 2s^2)| - 2 E|N(0, 2s^2)|."""
    rng = np.random.default_rng(5)
    s, reps = 0.5, 40
    vals = np.array(
        [
            energy_distance(
                s * rng.standard_normal((150, 2)), s * rng.standard_normal((200, 2)) + (shift, 0.0)
            )
            for _ in range(reps)
        ]
    )
    tau = s * math.sqrt(2)
    truth = 2 * _rice_mean(shift, tau) - 2 * _rice_mean(0.0, tau)
    se = vals.std(ddof=1) / math.sqrt(reps)
    assert abs(vals.mean() - truth) < 4 * se
    if shift:
        assert truth > 6 * se


# -------------------------------------------------------------------------------- mode coverage


def test_mode_coverage_on_exact_eight_gaussians():
    rng = np.random.default_rng(6)
    n, k = 20000, 8
    out = mode_coverage(_mixture_samples(rng, n), EIGHT_CENTERS, EIGHT_STD)
    frac_sd = math.sqrt((1 / k) * (1 - 1 / k) / n)
    assert len(out["mode_fractions"]) == k
    assert sum(out["mode_fractions"]) == pytest.approx(1.0)
    np.testing.assert_allclose(out["mode_fractions"], 1 / k, atol=4.5 * frac_sd)
    assert out["max_fraction_error"] < 4.5 * frac_sd
    p_hq = 1 - math.exp(-4.5)  # P(chi2_2 <= 3^2)
    assert out["high_quality_fraction"] == pytest.approx(
        p_hq, abs=4 * math.sqrt(p_hq * (1 - p_hq) / n)
    )
    assert out["modes_hit"] == k
    # 2 N KL ~ chi2_{K-1} under uniform sampling; its 99.99 % quantile is ~ 29.9
    assert 0 <= out["kl_to_uniform"] < 30 / (2 * n * p_hq)


def test_mode_coverage_collapsed_and_exact_counts():
    one = np.tile(EIGHT_CENTERS[3], (50, 1)) + 0.01
    out = mode_coverage(one, EIGHT_CENTERS, EIGHT_STD)
    assert out["modes_hit"] == 1
    assert out["kl_to_uniform"] == pytest.approx(math.log(8))
    assert out["high_quality_fraction"] == 1.0
    assert out["mode_fractions"][3] == 1.0 and out["max_fraction_error"] == pytest.approx(7 / 8)

    centers = np.array([[0.0, 0.0], [10.0, 0.0]])
    samples = np.array([[0.1, 0.0], [0.0, 0.5], [9.8, 0.0], [10.0, -0.2], [4.0, 0.0], [0.0, 0.2]])
    out = mode_coverage(samples, centers, 0.1, num_std=3.0)  # radius 0.3
    assert out["mode_fractions"] == pytest.approx([4 / 6, 2 / 6])
    assert out["high_quality_fraction"] == pytest.approx(4 / 6)  # [0, .5] and [4, 0] are not
    assert out["modes_hit"] == 2
    assert out["kl_to_uniform"] == pytest.approx(0.0, abs=1e-15)  # 2 high-quality at each
    assert out["max_fraction_error"] == pytest.approx(1 / 6)


def test_mode_coverage_without_high_quality_samples():
    out = mode_coverage(np.full((10, 2), 50.0), EIGHT_CENTERS, EIGHT_STD)
    assert out["modes_hit"] == 0 and out["high_quality_fraction"] == 0.0
    assert math.isinf(out["kl_to_uniform"])


# -------------------------------------------------------------------------- grid log-likelihood


def _true_log_density(x):
    return gaussian_mixture_log_density(x, EIGHT_CENTERS, EIGHT_STD)


def test_grid_log_likelihood_normalised_and_shifted_density():
    rng = np.random.default_rng(7)
    test = _mixture_samples(rng, 2000)
    bounds = ((-3.0, 3.0), (-3.0, 3.0))
    out = grid_log_likelihood(_true_log_density, test, bounds=bounds, num_points=512)
    assert abs(out["log_z"]) < 1e-6
    exact = float(np.mean(_true_log_density(test)))
    assert out["mean_log_likelihood"] == pytest.approx(exact, abs=1e-6)

    shifted = grid_log_likelihood(
        lambda x: _true_log_density(x) + 5.0, test, bounds=bounds, num_points=512
    )
    assert shifted["log_z"] == pytest.approx(5.0, abs=1e-6)
    assert shifted["mean_log_likelihood"] == pytest.approx(exact, abs=1e-6)


def test_grid_log_likelihood_half_plane_and_uniform():
    # x >= 0 holds 3 whole modes (angles 0, ±pi/4) and half of 2 (angles ±pi/2): mass 1/2
    half = grid_log_likelihood(
        _true_log_density, EIGHT_CENTERS[:1], bounds=((0.0, 3.0), (-3.0, 3.0)), num_points=256
    )
    assert half["log_z"] == pytest.approx(math.log(0.5), abs=1e-6)
    bounds = ((-1.0, 3.0), (0.5, 3.0))
    flat = grid_log_likelihood(
        lambda x: np.zeros(len(x)), np.zeros((3, 2)), bounds=bounds, num_points=7
    )
    assert flat["log_z"] == pytest.approx(math.log(4.0 * 2.5), rel=1e-12)
    assert flat["mean_log_likelihood"] == pytest.approx(-math.log(10.0), rel=1e-12)


def test_grid_log_likelihood_jitted_jax_fn_and_chunking():
    centers = jnp.asarray(EIGHT_CENTERS, jnp.float32)

    @jax.jit
    def log_density(x):  # unnormalised, float32
        d2 = jnp.sum((x[:, None, :] - centers[None]) ** 2, -1)
        return jax.nn.logsumexp(-d2 / (2 * EIGHT_STD**2), axis=1)

    rng = np.random.default_rng(8)
    test = _mixture_samples(rng, 300)
    bounds = ((-3.0, 3.0), (-3.0, 3.0))
    a = grid_log_likelihood(log_density, test, bounds=bounds, num_points=128)
    b = grid_log_likelihood(log_density, test, bounds=bounds, num_points=128, chunk_size=1000)
    # exact: log Z = log(K * 2 pi std^2) for the unnormalised mixture
    assert a["log_z"] == pytest.approx(math.log(8 * 2 * math.pi * EIGHT_STD**2), abs=1e-3)
    assert b["log_z"] == pytest.approx(a["log_z"], abs=1e-5)
    assert b["mean_log_likelihood"] == pytest.approx(a["mean_log_likelihood"], abs=1e-5)
    exact = float(np.mean(_true_log_density(test)))
    assert a["mean_log_likelihood"] == pytest.approx(exact, abs=1e-3)


# ----------------------------------------------------------------------- mixture log-density


def test_gaussian_mixture_log_density_matches_scipy():
    rng = np.random.default_rng(9)
    for dim in (1, 2, 3):
        c, x = rng.normal(size=(1, dim)), rng.normal(size=(20, dim))
        ref = multivariate_normal(mean=c[0], cov=0.7**2 * np.eye(dim)).logpdf(x)
        np.testing.assert_allclose(
            gaussian_mixture_log_density(x, c, 0.7), np.atleast_1d(ref), rtol=1e-12
        )
    c, x = rng.normal(size=(2, 2)), rng.normal(size=(20, 2))
    comps = [multivariate_normal(mean=ci, cov=0.3**2 * np.eye(2)).pdf(x) for ci in c]
    ref = np.log(0.25 * comps[0] + 0.75 * comps[1])
    np.testing.assert_allclose(gaussian_mixture_log_density(x, c, 0.3, [2.0, 6.0]), ref, rtol=1e-10)
    np.testing.assert_allclose(
        gaussian_mixture_log_density(x, c, 0.3, [0.0, 1.0]),
        multivariate_normal(mean=c[1], cov=0.09 * np.eye(2)).logpdf(x),
        rtol=1e-12,
    )


# ------------------------------------------------------------------------------------ errors

_X, _Y = np.zeros((4, 2)), np.ones((5, 2))
_OK_BOUNDS = ((-1.0, 1.0), (-1.0, 1.0))


@pytest.mark.parametrize(
    "call, match",
    [
        (lambda: mmd_rbf(np.zeros(4), _Y), r"x must be a 2-D array \[N, D\], got shape \(4,\)"),
        (lambda: mmd_rbf(_X, np.zeros((5, 3))), "feature dims differ: x has 2 columns, y has 3"),
        (lambda: mmd_rbf(_X[:1], _Y), "x needs at least 2 rows, got 1"),
        (lambda: mmd_rbf(_X, _Y, bandwidths=(0.1, 0.0)), "bandwidths must be"),
        (lambda: mmd_rbf(_X, _Y, bandwidths=()), "bandwidths must be"),
        (lambda: mmd_rbf(np.full((3, 2), np.nan), _Y), "x contains non-finite values"),
        (lambda: energy_distance(_X, _Y[:1]), "y needs at least 2 rows, got 1"),
        (lambda: energy_distance(_X, np.zeros((2, 2, 2))), "y must be a 2-D array"),
        (lambda: mode_coverage(_X, EIGHT_CENTERS, 0.0), "std must be a finite number > 0"),
        (lambda: mode_coverage(_X, EIGHT_CENTERS, -1.0), "std must be a finite number > 0"),
        (lambda: mode_coverage(_X, EIGHT_CENTERS, 0.1, num_std=0), "num_std must be"),
        (lambda: mode_coverage(_X, EIGHT_CENTERS[:, :1], 0.1), "feature dims differ"),
        (lambda: mode_coverage(_X[:0], EIGHT_CENTERS, 0.1), "samples needs at least 1 rows"),
        (
            lambda: gaussian_mixture_log_density(_X, EIGHT_CENTERS, 0.1, np.ones(3)),
            r"weights must have shape \(8,\)",
        ),
        (
            lambda: gaussian_mixture_log_density(_X, _Y[:2], 0.1, [1.0, -1.0]),
            "weights must be finite, non-negative",
        ),
        (
            lambda: grid_log_likelihood(lambda x: x[:, 0], _X, bounds=((1.0, -1.0), (0.0, 1.0))),
            "xmin < xmax",
        ),
        (
            lambda: grid_log_likelihood(lambda x: x[:, 0], _X, bounds=(-1.0, 1.0)),
            r"bounds must be \(\(xmin, xmax\), \(ymin, ymax\)\)",
        ),
        (
            lambda: grid_log_likelihood(lambda x: x[:, 0], _X, bounds=_OK_BOUNDS, num_points=1),
            "num_points must be an integer >= 2",
        ),
        (
            lambda: grid_log_likelihood(lambda x: x[:, 0], np.zeros((4, 3)), bounds=_OK_BOUNDS),
            r"test_points must be \[N, 2\]",
        ),
        (
            lambda: grid_log_likelihood(lambda x: x, _X, bounds=_OK_BOUNDS, num_points=4),
            r"log_density_fn must map \[n, 2\] -> \[n\]",
        ),
        (
            lambda: grid_log_likelihood(
                lambda x: np.full(len(x), np.nan), _X, bounds=_OK_BOUNDS, num_points=4
            ),
            "log_density_fn returned nan",
        ),
    ],
)
def test_bad_inputs_raise_clear_value_errors(call, match):
    with pytest.raises(ValueError, match=match):
        call()

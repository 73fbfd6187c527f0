"""Mathematical checks of jaxgen.metrics.frechet (closed forms, streaming stats, KID, P/R, IS)."""

import math

import numpy as np
import pytest
import scipy.linalg

from jaxgen.metrics import (
    FeatureStats,
    feature_statistics,
    frechet_distance,
    inception_score,
    kernel_inception_distance,
    load_stats,
    precision_recall,
    save_stats,
)


def _random_cov(rng, d, scale=1.0):
    a = rng.standard_normal((d, d))
    return scale * (a @ a.T / d + 0.1 * np.eye(d))


def test_fd_diagonal_closed_form():
    rng = np.random.default_rng(0)
    d = 16
    mu1, mu2 = rng.standard_normal(d), rng.standard_normal(d)
    v1, v2 = rng.uniform(0.1, 3.0, d), rng.uniform(0.1, 3.0, d)
    expected = np.sum((mu1 - mu2) ** 2) + np.sum(v1 + v2 - 2.0 * np.sqrt(v1 * v2))
    got = frechet_distance(mu1, np.diag(v1), mu2, np.diag(v2))
    assert got == pytest.approx(expected, rel=1e-12, abs=1e-12)


def test_fd_matches_scipy_sqrtm_on_full_covariances():
    rng = np.random.default_rng(1)
    d = 32
    mu1, mu2 = rng.standard_normal(d), 0.5 * rng.standard_normal(d)
    s1, s2 = _random_cov(rng, d), _random_cov(rng, d, scale=2.0)
    covmean = scipy.linalg.sqrtm(s1 @ s2).real
    expected = np.sum((mu1 - mu2) ** 2) + np.trace(s1) + np.trace(s2) - 2.0 * np.trace(covmean)
    assert frechet_distance(mu1, s1, mu2, s2) == pytest.approx(expected, rel=1e-9)
    # Symmetric in its two arguments.
    assert frechet_distance(mu2, s2, mu1, s1) == pytest.approx(expected, rel=1e-9)


def test_fd_of_identical_statistics_is_zero_even_when_singular():
    rng = np.random.default_rng(2)
    x = rng.standard_normal((500, 64))
    mu, sigma = feature_statistics(x)
    assert abs(frechet_distance(mu, sigma, mu, sigma)) < 1e-8
    low_rank = rng.standard_normal((64, 5))
    s = low_rank @ low_rank.T  # rank 5: eigenvalues of 0 come out as +-1e-15
    assert abs(frechet_distance(mu, s, mu, s)) < 1e-8


def test_fd_input_errors():
    mu, s = np.zeros(3), np.eye(3)
    with pytest.raises(ValueError, match="feature dims differ"):
        frechet_distance(mu, s, np.zeros(4), np.eye(4))
    with pytest.raises(ValueError, match="sigma1 must have shape"):
        frechet_distance(mu, np.eye(4), mu, s)
    with pytest.raises(ValueError, match="non-finite"):
        frechet_distance(np.array([0.0, np.nan, 0.0]), s, mu, s)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_streaming_stats_equal_numpy_on_concatenation(seed):
    rng = np.random.default_rng(seed)
    x = 3.0 + rng.standard_normal((1000, 12)) * rng.uniform(0.5, 5.0, 12)
    cuts = np.sort(rng.choice(np.arange(1, 1000), size=7, replace=False))
    stats = FeatureStats()
    for chunk in np.split(x, cuts):
        stats.update(chunk)
    mu, sigma, n = stats.finalize()
    assert n == 1000
    np.testing.assert_allclose(mu, x.mean(axis=0), rtol=1e-12)
    np.testing.assert_allclose(sigma, np.cov(x, rowvar=False), rtol=1e-10, atol=1e-12)


def test_streaming_stats_errors():
    stats = FeatureStats().update(np.zeros((5, 3)))
    with pytest.raises(ValueError, match="feature dims differ"):
        stats.update(np.zeros((5, 4)))
    with pytest.raises(ValueError, match="non-finite"):
        stats.update(np.array([[0.0, np.inf, 0.0]]))
    with pytest.raises(ValueError, match="before any update"):
        FeatureStats().finalize()


def test_singular_covariance_error_says_how_many_samples():
    x = np.random.default_rng(0).standard_normal((100, 128))
    with pytest.raises(ValueError, match=r"from 100 samples is singular.*at least 129 samples"):
        feature_statistics(x)
    stats = FeatureStats().update(x)
    _, sigma, _ = stats.finalize(allow_singular=True)
    assert sigma.shape == (128, 128)


def test_save_load_round_trip_and_extractor_check(tmp_path):
    rng = np.random.default_rng(3)
    mu, sigma = feature_statistics(rng.standard_normal((50, 4)))
    path = save_stats(tmp_path / "ref" / "stats.npz", mu, sigma, 50, "digits_cnn_v1", "ab" * 32)
    assert path.exists() and not list(path.parent.glob("*.tmp"))
    stats = load_stats(path, expect_extractor="digits_cnn_v1", expect_hash="ab" * 32)
    np.testing.assert_array_equal(stats.mu, mu)
    np.testing.assert_array_equal(stats.sigma, sigma)
    assert (stats.num_samples, stats.extractor, stats.extractor_hash) == (
        50,
        "digits_cnn_v1",
        "ab" * 32,
    )
    with pytest.raises(ValueError, match=r"'digits_cnn_v1' \(expected 'fashion_mnist_cnn_v1'\)"):
        load_stats(path, expect_extractor="fashion_mnist_cnn_v1")
    with pytest.raises(ValueError, match="extractor_hash 'abab.*expected 'cdcd"):
        load_stats(path, expect_hash="cd" * 32)


def test_load_rejects_other_npz(tmp_path):
    np.savez(tmp_path / "x.npz", mu=np.zeros(2))
    with pytest.raises(ValueError, match="missing keys"):
        load_stats(tmp_path / "x.npz")


def _brute_kid(x, y):
    d = x.shape[1]

    def k(a, b):
        return (float(a @ b) / d + 1.0) ** 3

    m, n = len(x), len(y)
    kxx = sum(k(x[i], x[j]) for i in range(m) for j in range(m) if i != j) / (m * (m - 1))
    kyy = sum(k(y[i], y[j]) for i in range(n) for j in range(n) if i != j) / (n * (n - 1))
    kxy = sum(k(x[i], y[j]) for i in range(m) for j in range(n)) / (m * n)
    return kxx + kyy - 2 * kxy


def test_kid_matches_direct_computation():
    rng = np.random.default_rng(4)
    x, y = rng.standard_normal((30, 5)), 0.3 + rng.standard_normal((30, 5))
    mean, std = kernel_inception_distance(x, y, num_subsets=1, subset_size=30)
    assert mean == pytest.approx(_brute_kid(x, y), rel=1e-10)
    assert std == 0.0


def test_kid_is_unbiased_and_detects_a_shift():
    rng = np.random.default_rng(5)
    x, y = rng.standard_normal((2000, 16)), rng.standard_normal((2000, 16))
    same_mean, same_std = kernel_inception_distance(x, y, num_subsets=50, subset_size=500)
    assert abs(same_mean) < same_std
    shifted_mean, _ = kernel_inception_distance(x, y + 0.5, num_subsets=50, subset_size=500)
    assert shifted_mean > 10 * same_std
    assert shifted_mean > abs(same_mean)
    # Many small-sample estimates average to ~0 (the biased V-statistic would be ~ +1/m).
    vals = [
        kernel_inception_distance(x, y, num_subsets=1, subset_size=20, seed=s)[0]
        for s in range(400)
    ]
    assert abs(np.mean(vals)) < 3 * np.std(vals) / math.sqrt(len(vals))


def test_kid_input_errors():
    with pytest.raises(ValueError, match="feature dims differ"):
        kernel_inception_distance(np.zeros((5, 3)), np.zeros((5, 2)))
    with pytest.raises(ValueError, match="subset_size"):
        kernel_inception_distance(np.zeros((5, 3)), np.zeros((5, 3)), subset_size=1)


def test_precision_recall_identical_and_shifted():
    rng = np.random.default_rng(6)
    x = rng.standard_normal((1500, 8))
    assert precision_recall(x, x.copy(), k=3) == {"precision": 1.0, "recall": 1.0}
    far = precision_recall(x, x + 20.0, k=3)
    assert far == {"precision": 0.0, "recall": 0.0}
    y = rng.standard_normal((1500, 8))
    same = precision_recall(x, y, k=3)
    assert same["precision"] > 0.6 and same["recall"] > 0.6


def test_precision_recall_chunking_matches_brute_force(monkeypatch):
    from jaxgen.metrics import frechet

    rng = np.random.default_rng(7)
    real, fake = rng.standard_normal((60, 3)), 0.5 + rng.standard_normal((50, 3))
    d_rr = np.linalg.norm(real[:, None] - real[None], axis=-1)
    d_ff = np.linalg.norm(fake[:, None] - fake[None], axis=-1)
    d_fr = np.linalg.norm(fake[:, None] - real[None], axis=-1)
    r_real = np.sort(d_rr, axis=1)[:, 3]
    r_fake = np.sort(d_ff, axis=1)[:, 3]
    precision = np.mean(np.any(d_fr <= r_real[None, :], axis=1))
    recall = np.mean(np.any(d_fr.T <= r_fake[None, :], axis=1))
    monkeypatch.setattr(frechet, "_MAX_BLOCK", 70)  # several row blocks per call
    got = precision_recall(real, fake, k=3)
    assert got["precision"] == pytest.approx(precision)
    assert got["recall"] == pytest.approx(recall)


def test_inception_score_uniform_and_one_hot():
    assert inception_score(np.zeros((100, 10)), num_splits=5) == (1.0, 0.0)
    k = 10
    logits = 50.0 * np.eye(k)[np.tile(np.arange(k), 100)]  # each split uses all classes equally
    mean, std = inception_score(logits, num_splits=10)
    assert mean == pytest.approx(k, rel=1e-6)
    assert std < 1e-6
    with pytest.raises(ValueError, match="at least 10 rows"):
        inception_score(np.zeros((5, 3)), num_splits=10)

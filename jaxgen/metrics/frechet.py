"""Distances between feature distributions: Fréchet distance, KID, precision/recall, IS.

Pure functions of explicit arguments, computed in float64 numpy. The features come from some
extractor (see `jaxgen.metrics.features`); with this project's own small classifiers the
Fréchet distance is reported as "FD-<dataset>", never as FID.

- `frechet_distance`: ||mu1 - mu2||^2 + tr S1 + tr S2 - 2 tr sqrt(S1 S2), eigenvalue method.
- `FeatureStats`: streaming mean/covariance (chunk statistics merged exactly).
- `feature_statistics`: (mu, sigma) of one feature array.
- `save_stats` / `load_stats`: reference statistics as `.npz` tagged with the extractor.
- `kernel_inception_distance`: unbiased MMD^2 with the cubic polynomial kernel, over subsets.
- `precision_recall`: improved precision and recall with k-NN balls (Kynkäänniemi et al. 2019).
- `inception_score`: exp E_x KL(p(y|x) || p(y)) from classifier logits, over splits.
"""

import math
from pathlib import Path
from typing import NamedTuple

import numpy as np
from scipy.special import log_softmax, logsumexp

from jaxgen.io import atomic_savez, load_side_npz
from jaxgen.metrics.toy2d import _MAX_BLOCK, _as_points, _check_same_dim, _sq_dists
from jaxgen.moments import FeatureStats, _min_samples_error  # noqa: F401 (FeatureStats re-exported)


def _as_moments(mu, sigma, name: str) -> tuple[np.ndarray, np.ndarray]:
    """`mu` `[D]` and the symmetrised `sigma` `[D, D]` as finite float64 arrays, else ValueError."""
    m = np.asarray(mu, dtype=np.float64)
    s = np.asarray(sigma, dtype=np.float64)
    if m.ndim != 1 or m.shape[0] < 1:
        raise ValueError(f"mu{name} must be a 1-D array [D], got shape {m.shape}")
    if s.shape != (m.shape[0], m.shape[0]):
        raise ValueError(
            f"sigma{name} must have shape {(m.shape[0],) * 2} to match mu{name}, got {s.shape}"
        )
    if not (np.all(np.isfinite(m)) and np.all(np.isfinite(s))):
        raise ValueError(f"mu{name}/sigma{name} contain non-finite values (nan or inf)")
    return m, 0.5 * (s + s.T)


def _sqrt_psd(s: np.ndarray) -> np.ndarray:
    """Symmetric square root `[D, D]` of a symmetric PSD matrix; negative eigenvalues -> 0."""
    w, v = np.linalg.eigh(s)
    return (v * np.sqrt(np.maximum(w, 0.0))) @ v.T


def frechet_distance(mu1, sigma1, mu2, sigma2) -> float:
    """Fréchet (2-Wasserstein) distance between N(mu1, sigma1) and N(mu2, sigma2), squared.

        d^2 = ||mu1 - mu2||^2 + tr S1 + tr S2 - 2 tr sqrt(S1 S2)

    computed in float64 with tr sqrt(S1 S2) = sum_i sqrt(lambda_i), lambda_i the eigenvalues of
    the symmetric PSD matrix S1^1/2 S2 S1^1/2 (`np.linalg.eigh`; no complex `sqrtm`). Both
    covariances are symmetrised first. Rounding can make eigenvalues that are zero in exact
    arithmetic (singular covariances) slightly negative: they are clipped to 0 before the square
    root, and a total of order -1e-12 (identical inputs) is clipped to 0.

    Args:
      mu1, mu2: means `[D]`.
      sigma1, sigma2: covariances `[D, D]` (symmetric positive semi-definite).

    Returns:
      The squared Fréchet distance as a Python float (>= 0).
    """
    m1, s1 = _as_moments(mu1, sigma1, "1")
    m2, s2 = _as_moments(mu2, sigma2, "2")
    if m1.shape != m2.shape:
        raise ValueError(f"feature dims differ: mu1 has {m1.shape[0]}, mu2 has {m2.shape[0]}")
    r1 = _sqrt_psd(s1)
    inner = r1 @ s2 @ r1
    eig = np.linalg.eigvalsh(0.5 * (inner + inner.T))
    tr_covmean = float(np.sum(np.sqrt(np.maximum(eig, 0.0))))
    diff = m1 - m2
    d2 = float(diff @ diff) + float(np.trace(s1)) + float(np.trace(s2)) - 2.0 * tr_covmean
    return max(d2, 0.0)


def feature_statistics(features, *, chunk_size: int = 4096) -> tuple[np.ndarray, np.ndarray]:
    """(mu `[D]`, sigma `[D, D]`) of `features` `[N, D]`, N >= D + 1, via `FeatureStats`."""
    x = _as_points(features, "features")
    stats = FeatureStats()
    for start in range(0, x.shape[0], chunk_size):
        stats.update(x[start : start + chunk_size])
    mu, sigma, _ = stats.finalize()
    return mu, sigma


class ReferenceStats(NamedTuple):
    mu: np.ndarray  # [D]
    sigma: np.ndarray  # [D, D]
    num_samples: int
    extractor: str
    extractor_hash: str


def save_stats(path, mu, sigma, num_samples: int, extractor: str, extractor_hash: str) -> Path:
    """Write reference statistics to the `.npz` file `path` atomically (temp file + rename).

    Keys: mu `[D]`, sigma `[D, D]` (float64), num_samples (int), extractor and extractor_hash
    (strings naming the feature extractor and the SHA-256 of its weights). Returns the path.
    """
    m, s = _as_moments(mu, sigma, "")
    if int(num_samples) != num_samples or num_samples < 2:
        raise ValueError(f"num_samples must be an integer >= 2, got {num_samples!r}")
    for value, field in ((extractor, "extractor"), (extractor_hash, "extractor_hash")):
        if not isinstance(value, str) or not value:
            raise ValueError(f"{field} must be a non-empty string, got {value!r}")
    arrays = dict(
        mu=m,
        sigma=s,
        num_samples=np.int64(num_samples),
        extractor=np.str_(extractor),
        extractor_hash=np.str_(extractor_hash),
    )
    return atomic_savez(path, arrays)


def load_stats(
    path,
    expect_extractor: str | None = None,
    expect_hash: str | None = None,
    *,
    fix: str = "delete it (or move it aside) and compute it again",
):
    """Read a `save_stats` file as `ReferenceStats`.

    With `expect_extractor` / `expect_hash` given, statistics made by another extractor or other
    weights raise one ValueError naming both the stored and the expected values. A damaged file
    (cut short, empty, not an `.npz`) is one `jaxgen.io.SideFileError` naming it and `fix`.
    """
    keys = ("mu", "sigma", "num_samples", "extractor", "extractor_hash")
    data = load_side_npz(path, "the reference-statistics file", fix)
    missing = [k for k in keys if k not in data]
    if missing:
        raise ValueError(f"{path} is not a reference-statistics file: missing keys {missing}")
    stats = ReferenceStats(
        mu=data["mu"].astype(np.float64),
        sigma=data["sigma"].astype(np.float64),
        num_samples=int(data["num_samples"]),
        extractor=str(data["extractor"]),
        extractor_hash=str(data["extractor_hash"]),
    )
    problems = []
    if expect_extractor is not None and stats.extractor != expect_extractor:
        problems.append(f"extractor {stats.extractor!r} (expected {expect_extractor!r})")
    if expect_hash is not None and stats.extractor_hash != expect_hash:
        problems.append(f"extractor_hash {stats.extractor_hash!r} (expected {expect_hash!r})")
    if problems:
        raise ValueError(
            f"reference statistics {path} were made with a different feature extractor: "
            + "; ".join(problems)
            + ". Recompute them with the current extractor."
        )
    _as_moments(stats.mu, stats.sigma, "")
    return stats


def _poly_mmd2(x: np.ndarray, y: np.ndarray) -> float:
    """Unbiased MMD^2 between `x` `[m, D]` and `y` `[n, D]`, kernel (a.b / D + 1)^3."""
    d = x.shape[1]
    kxx = (x @ x.T / d + 1.0) ** 3
    kyy = (y @ y.T / d + 1.0) ** 3
    kxy = (x @ y.T / d + 1.0) ** 3
    m, n = x.shape[0], y.shape[0]
    sxx = (kxx.sum() - np.trace(kxx)) / (m * (m - 1))
    syy = (kyy.sum() - np.trace(kyy)) / (n * (n - 1))
    return float(sxx + syy - 2.0 * kxy.mean())


def kernel_inception_distance(
    features1,
    features2,
    *,
    num_subsets: int = 100,
    subset_size: int = 1000,
    seed: int = 0,
) -> tuple[float, float]:
    """Kernel distance (KID; Bińkowski et al. 2018) between two feature sets.

    For each of `num_subsets` subsets, `subset_size` rows are drawn without replacement from each
    set (`numpy.random.default_rng(seed)`), and the unbiased MMD^2 with the cubic polynomial
    kernel k(a, b) = (a.b / D + 1)^3 is computed:

        1/(m(m-1)) sum_{i!=j} k(x_i, x_j) + 1/(m(m-1)) sum_{i!=j} k(y_i, y_j)
        - 2/m^2 sum_{i,j} k(x_i, y_j).

    Each estimate is unbiased (so it can be negative). `subset_size` is reduced to the smaller
    set's size when larger.

    Args:
      features1: `[N1, D]`, N1 >= 2.
      features2: `[N2, D]`, N2 >= 2.
      num_subsets: number of subsets, >= 1.
      subset_size: rows per subset and set, >= 2.
      seed: seed of the subset draws.

    Returns:
      (mean, std) of the per-subset estimates (std with ddof=0; 0 for one subset).
    """
    x = _as_points(features1, "features1", min_rows=2)
    y = _as_points(features2, "features2", min_rows=2)
    _check_same_dim(x, y, "features1", "features2")
    if int(num_subsets) != num_subsets or num_subsets < 1:
        raise ValueError(f"num_subsets must be an integer >= 1, got {num_subsets!r}")
    if int(subset_size) != subset_size or subset_size < 2:
        raise ValueError(f"subset_size must be an integer >= 2, got {subset_size!r}")
    m = min(int(subset_size), x.shape[0], y.shape[0])
    rng = np.random.default_rng(seed)
    values = np.array(
        [
            _poly_mmd2(
                x[rng.choice(x.shape[0], m, replace=False)],
                y[rng.choice(y.shape[0], m, replace=False)],
            )
            for _ in range(int(num_subsets))
        ]
    )
    return float(values.mean()), float(values.std())


def _rows_per_block(cols: int) -> int:
    return max(1, _MAX_BLOCK // max(1, cols))


def _knn_radii(x: np.ndarray, k: int) -> np.ndarray:
    """Squared distance `[N]` from each row of `x` to its k-th nearest other row, in blocks."""
    rows = _rows_per_block(x.shape[0])
    out = []
    for start in range(0, x.shape[0], rows):
        d2 = _sq_dists(x[start : start + rows], x)
        # Index k of the sorted row: index 0 is the point itself (distance 0).
        out.append(np.partition(d2, k, axis=1)[:, k])
    return np.concatenate(out)


def _inside_any_ball(points: np.ndarray, centers: np.ndarray, radii2: np.ndarray) -> np.ndarray:
    """Boolean `[N]`: is points[i] within distance sqrt(radii2[j]) of some centers[j]?"""
    rows = _rows_per_block(centers.shape[0])
    out = []
    for start in range(0, points.shape[0], rows):
        d2 = _sq_dists(points[start : start + rows], centers)
        out.append(np.any(d2 <= radii2[None, :], axis=1))
    return np.concatenate(out)


def precision_recall(real, fake, *, k: int = 3) -> dict:
    """Improved precision and recall (Kynkäänniemi et al. 2019) in feature space.

    Each real feature gets a ball whose radius is the distance to its k-th nearest neighbour
    among the other real features; precision is the fraction of fake features inside at least
    one real ball. Recall swaps the roles (fake balls, fraction of real features covered).
    Pairwise distances are computed in row blocks of at most 2^22 entries, so 10k x 10k sets
    need about 32 MiB at a time.

    Args:
      real: `[N, D]` features of real data, N > k.
      fake: `[M, D]` features of generated data, M > k.
      k: neighbour rank of the ball radius, >= 1.

    Returns:
      {"precision": float, "recall": float} in [0, 1].
    """
    if int(k) != k or k < 1:
        raise ValueError(f"k must be an integer >= 1, got {k!r}")
    k = int(k)
    real = _as_points(real, "real", min_rows=k + 1)
    fake = _as_points(fake, "fake", min_rows=k + 1)
    _check_same_dim(real, fake, "real", "fake")
    real_r2 = _knn_radii(real, k)
    fake_r2 = _knn_radii(fake, k)
    precision = float(np.mean(_inside_any_ball(fake, real, real_r2)))
    recall = float(np.mean(_inside_any_ball(real, fake, fake_r2)))
    return {"precision": precision, "recall": recall}


def inception_score(logits, *, num_splits: int = 10) -> tuple[float, float]:
    """Inception score exp(E_x KL(p(y|x) || p(y))) from classifier logits, over splits.

    The rows are cut into `num_splits` contiguous, nearly equal parts (`np.array_split`); in each,
    p(y) is the mean of the softmax rows. Computed in float64 with log-softmax; a KL of order
    -1e-16 from rounding is clipped to 0, so uniform logits give exactly 1. The score lies in
    [1, K].

    Args:
      logits: `[N, K]` unnormalised class log-probabilities, N >= num_splits, K >= 2.
      num_splits: number of splits, >= 1.

    Returns:
      (mean, std) of the per-split scores (std with ddof=0).
    """
    if int(num_splits) != num_splits or num_splits < 1:
        raise ValueError(f"num_splits must be an integer >= 1, got {num_splits!r}")
    z = _as_points(logits, "logits", min_rows=int(num_splits))
    if z.shape[1] < 2:
        raise ValueError(f"logits need at least 2 classes, got shape {z.shape}")
    scores = []
    for part in np.array_split(z, int(num_splits)):
        log_p = log_softmax(part, axis=1)
        log_py = logsumexp(log_p, axis=0) - math.log(part.shape[0])
        kl = float(np.mean(np.sum(np.exp(log_p) * (log_p - log_py[None, :]), axis=1)))
        scores.append(math.exp(max(kl, 0.0)))
    return float(np.mean(scores)), float(np.std(scores))

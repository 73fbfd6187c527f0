"""Sample-quality and likelihood metrics for low-dimensional (mostly 2-D) toy data.

Pure functions of explicit arguments, computed in float64 numpy; pairwise sums run in row
blocks so large sample sets fit in memory.

- `mmd_rbf`: unbiased squared MMD with a sum of RBF kernels.
- `energy_distance`: unbiased energy distance 2E|X-Y| - E|X-X'| - E|Y-Y'|.
- `mode_coverage`: modes hit, high-quality fraction and mode balance for Gaussian mixtures.
- `grid_log_likelihood`: exact test log-likelihood of an unnormalised 2-D density on a grid.
- `gaussian_mixture_log_density`: normalised log density of an isotropic Gaussian mixture.
"""

import math
from collections.abc import Callable, Sequence

import numpy as np
from scipy.special import logsumexp

from jaxgen.moments import as_points as _as_points

_MAX_BLOCK = 1 << 22  # pair entries per block of a pairwise computation (32 MiB in float64)


def _check_same_dim(a: np.ndarray, b: np.ndarray, name_a: str, name_b: str) -> None:
    if a.shape[1] != b.shape[1]:
        raise ValueError(
            f"feature dims differ: {name_a} has {a.shape[1]} columns, {name_b} has {b.shape[1]}"
        )


def _check_positive(value, name: str) -> float:
    v = float(value)
    if not (math.isfinite(v) and v > 0):
        raise ValueError(f"{name} must be a finite number > 0, got {value!r}")
    return v


def _sq_dists(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Squared Euclidean distances `[n, m]` between rows of `a` `[n, D]` and `b` `[m, D]`.

    Exact differences for small D (zero on coincident points); the Gram expansion otherwise.
    """
    if a.shape[1] <= 8:
        d2 = np.zeros((a.shape[0], b.shape[0]))
        for k in range(a.shape[1]):
            d2 += (a[:, k, None] - b[None, :, k]) ** 2
        return d2
    d2 = (a * a).sum(1)[:, None] + (b * b).sum(1)[None, :] - 2.0 * (a @ b.T)
    return np.maximum(d2, 0.0)


def _pair_sum(a: np.ndarray, b: np.ndarray, fn: Callable[[np.ndarray], np.ndarray]) -> float:
    """sum_{i,j} fn(||a_i - b_j||^2) over all pairs, `a` `[N, D]`, `b` `[M, D]`, in row blocks."""
    rows = max(1, _MAX_BLOCK // max(1, b.shape[0]))
    total = 0.0
    for start in range(0, a.shape[0], rows):
        total += float(fn(_sq_dists(a[start : start + rows], b)).sum())
    return total


def mmd_rbf(x, y, bandwidths: Sequence[float] = (0.1, 0.3, 1.0)) -> float:
    """Unbiased (U-statistic) estimate of the squared MMD between the samples `x` and `y`.

    Kernel k(a, b) = sum_h exp(-||a - b||^2 / (2 h^2)) over `bandwidths`. The estimate is

        1/(N(N-1)) sum_{i!=j} k(x_i, x_j) + 1/(M(M-1)) sum_{i!=j} k(y_i, y_j)
        - 2/(NM) sum_{i,j} k(x_i, y_j),

    which is unbiased for MMD^2 and can therefore be slightly negative.

    Args:
      x: `[N, D]` samples, N >= 2.
      y: `[M, D]` samples, M >= 2.
      bandwidths: kernel bandwidths h > 0 (at least one).

    Returns:
      The squared MMD as a Python float.
    """
    x = _as_points(x, "x", min_rows=2)
    y = _as_points(y, "y", min_rows=2)
    _check_same_dim(x, y, "x", "y")
    hs = np.atleast_1d(np.asarray(bandwidths, dtype=np.float64))
    if hs.ndim != 1 or hs.size == 0 or not np.all(np.isfinite(hs) & (hs > 0)):
        raise ValueError(f"bandwidths must be non-empty and all > 0, got {bandwidths!r}")
    scales = 1.0 / (2.0 * hs**2)

    def kernel(d2):
        return sum(np.exp(-s * d2) for s in scales)

    n, m, nk = x.shape[0], y.shape[0], hs.size
    # k(a, a) = nk exactly (the diagonal distances are exactly zero), so subtract it.
    kxx = (_pair_sum(x, x, kernel) - n * nk) / (n * (n - 1))
    kyy = (_pair_sum(y, y, kernel) - m * nk) / (m * (m - 1))
    kxy = _pair_sum(x, y, kernel) / (n * m)
    return float(kxx + kyy - 2.0 * kxy)


def energy_distance(x, y) -> float:
    """Unbiased estimate of the energy distance 2E|X-Y| - E|X-X'| - E|Y-Y'|.

    The within-sample means run over ordered pairs i != j (divided by N(N-1)), so every
    term is an unbiased estimate of its expectation.

    Args:
      x: `[N, D]` samples, N >= 2.
      y: `[M, D]` samples, M >= 2.

    Returns:
      The energy distance as a Python float (zero for identical distributions).
    """
    x = _as_points(x, "x", min_rows=2)
    y = _as_points(y, "y", min_rows=2)
    _check_same_dim(x, y, "x", "y")
    n, m = x.shape[0], y.shape[0]
    exx = _pair_sum(x, x, np.sqrt) / (n * (n - 1))
    eyy = _pair_sum(y, y, np.sqrt) / (m * (m - 1))
    exy = _pair_sum(x, y, np.sqrt) / (n * m)
    return float(2.0 * exy - exx - eyy)


def _nearest(samples: np.ndarray, centers: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Index `[N]` of each sample's nearest centre and the Euclidean distance `[N]` to it."""
    rows = max(1, _MAX_BLOCK // centers.shape[0])
    idx, dist = [], []
    for start in range(0, samples.shape[0], rows):
        d2 = _sq_dists(samples[start : start + rows], centers)
        j = np.argmin(d2, axis=1)
        idx.append(j)
        dist.append(np.sqrt(np.take_along_axis(d2, j[:, None], axis=1)[:, 0]))
    return np.concatenate(idx), np.concatenate(dist)


def mode_coverage(samples, centers, std, *, num_std: float = 3.0) -> dict:
    """Mode statistics of `samples` against a mixture with modes at `centers`.

    Each sample is assigned to its nearest centre; it is *high quality* when it lies within
    `num_std * std` (Euclidean) of that centre.

    Args:
      samples: `[N, D]` generated samples, N >= 1.
      centers: `[K, D]` mode centres.
      std: the common mode standard deviation, > 0.
      num_std: radius of the high-quality ball in units of `std`, > 0.

    Returns:
      A dict with
        - "mode_fractions": list of K floats, fraction of all samples nearest to centre k;
        - "modes_hit": int, number of centres that are the nearest centre of at least one
          high-quality sample;
        - "high_quality_fraction": float, fraction of high-quality samples;
        - "kl_to_uniform": float, KL(histogram of high-quality samples over modes || uniform
          over K) with 0 log 0 = 0, or inf when there is no high-quality sample;
        - "max_fraction_error": float, max_k |mode_fractions[k] - 1/K|.
    """
    samples = _as_points(samples, "samples")
    centers = _as_points(centers, "centers")
    _check_same_dim(samples, centers, "samples", "centers")
    std = _check_positive(std, "std")
    num_std = _check_positive(num_std, "num_std")
    n, k = samples.shape[0], centers.shape[0]
    idx, dist = _nearest(samples, centers)
    fractions = np.bincount(idx, minlength=k) / n
    hq = dist <= num_std * std
    hq_counts = np.bincount(idx[hq], minlength=k)
    num_hq = int(hq_counts.sum())
    if num_hq == 0:
        kl = math.inf
    else:
        p = hq_counts[hq_counts > 0] / num_hq
        kl = float(np.sum(p * np.log(p * k)))
    return {
        "mode_fractions": [float(f) for f in fractions],
        "modes_hit": int(np.count_nonzero(hq_counts)),
        "high_quality_fraction": num_hq / n,
        "kl_to_uniform": kl,
        "max_fraction_error": float(np.max(np.abs(fractions - 1.0 / k))),
    }


def _eval_chunked(fn: Callable, points: np.ndarray, chunk_size: int) -> np.ndarray:
    """`fn` on `points` `[N, 2]` in chunks of one fixed shape (the last is padded), `[N]`."""
    n = points.shape[0]
    size = min(chunk_size, n)
    out = []
    for start in range(0, n, size):
        chunk = points[start : start + size]
        valid = chunk.shape[0]
        if valid < size:  # pad so a jitted fn sees a single shape
            chunk = np.concatenate([chunk, np.repeat(chunk[-1:], size - valid, axis=0)])
        vals = np.asarray(fn(chunk), dtype=np.float64)
        if vals.shape != (size,):
            raise ValueError(
                f"log_density_fn must map [n, 2] -> [n]; got shape {vals.shape} for n={size}"
            )
        out.append(vals[:valid])
    return np.concatenate(out)


def _check_bounds(bounds) -> tuple[tuple[float, float], tuple[float, float]]:
    try:
        (x0, x1), (y0, y1) = ((float(a), float(b)) for a, b in bounds)
    except (TypeError, ValueError) as e:
        raise ValueError(f"bounds must be ((xmin, xmax), (ymin, ymax)), got {bounds!r}") from e
    if not all(math.isfinite(v) for v in (x0, x1, y0, y1)) or not (x0 < x1 and y0 < y1):
        raise ValueError(f"bounds must be finite with xmin < xmax and ymin < ymax, got {bounds!r}")
    return (x0, x1), (y0, y1)


def grid_log_likelihood(
    log_density_fn: Callable,
    test_points,
    *,
    bounds,
    num_points: int = 512,
    chunk_size: int = 65536,
) -> dict:
    """Average test log-likelihood of the 2-D density proportional to exp(log_density_fn).

    log Z is the midpoint rule on a `num_points x num_points` grid of cell centres over
    `bounds`: log Z = logsumexp(log_density_fn(grid)) + log(cell area). Mass outside `bounds`
    is ignored, so the bounds must cover the model's mass.

    Args:
      log_density_fn: maps points `[n, 2]` (float64 numpy) to an unnormalised log density
        `[n]`, e.g. -E(x) or Φ(x). It is called on chunks of one fixed size `n`.
      test_points: `[N, 2]` held-out data.
      bounds: ((xmin, xmax), (ymin, ymax)).
      num_points: grid points per axis, >= 2.
      chunk_size: points per call of `log_density_fn`, >= 1.

    Returns:
      {"log_z": float, "mean_log_likelihood": float, the mean of
      log_density_fn(test_points) - log_z}.
    """
    test_points = _as_points(test_points, "test_points")
    if test_points.shape[1] != 2:
        raise ValueError(f"test_points must be [N, 2], got shape {test_points.shape}")
    (x0, x1), (y0, y1) = _check_bounds(bounds)
    if int(num_points) != num_points or num_points < 2:
        raise ValueError(f"num_points must be an integer >= 2, got {num_points!r}")
    if int(chunk_size) != chunk_size or chunk_size < 1:
        raise ValueError(f"chunk_size must be an integer >= 1, got {chunk_size!r}")
    num_points, chunk_size = int(num_points), int(chunk_size)
    dx, dy = (x1 - x0) / num_points, (y1 - y0) / num_points
    gx = x0 + dx * (np.arange(num_points) + 0.5)
    gy = y0 + dy * (np.arange(num_points) + 0.5)
    grid = np.stack(np.meshgrid(gx, gy, indexing="ij"), axis=-1).reshape(-1, 2)
    grid_vals = _eval_chunked(log_density_fn, grid, chunk_size)
    if np.any(np.isnan(grid_vals)) or np.any(grid_vals == np.inf):
        raise ValueError("log_density_fn returned nan or +inf on the grid")
    log_z = float(logsumexp(grid_vals) + math.log(dx * dy))
    test_vals = _eval_chunked(log_density_fn, test_points, chunk_size)
    return {"log_z": log_z, "mean_log_likelihood": float(np.mean(test_vals) - log_z)}


def gaussian_mixture_log_density(x, centers, std, weights=None) -> np.ndarray:
    """Normalised log density `[N]` of an isotropic Gaussian mixture at the points `x`.

    p(x) = sum_k w_k N(x; centers_k, std^2 I).

    Args:
      x: `[N, D]` points.
      centers: `[K, D]` component means.
      std: the common component standard deviation, > 0.
      weights: `[K]` non-negative component weights with a positive sum (normalised to sum
        to one); equal weights when None.

    Returns:
      float64 numpy array `[N]`.
    """
    x = _as_points(x, "x")
    centers = _as_points(centers, "centers")
    _check_same_dim(x, centers, "x", "centers")
    std = _check_positive(std, "std")
    k, d = centers.shape
    if weights is None:
        log_w = np.full(k, -math.log(k))
    else:
        w = np.asarray(weights, dtype=np.float64)
        if w.shape != (k,):
            raise ValueError(f"weights must have shape ({k},) to match centers, got {w.shape}")
        if not np.all(np.isfinite(w) & (w >= 0)) or w.sum() <= 0:
            raise ValueError("weights must be finite, non-negative and have a positive sum")
        with np.errstate(divide="ignore"):
            log_w = np.log(w / w.sum())
    log_norm = -0.5 * d * math.log(2.0 * math.pi * std**2)
    rows = max(1, _MAX_BLOCK // k)
    out = [
        logsumexp(log_w - _sq_dists(x[s : s + rows], centers) / (2.0 * std**2), axis=1)
        for s in range(0, x.shape[0], rows)
    ]
    return np.concatenate(out) + log_norm

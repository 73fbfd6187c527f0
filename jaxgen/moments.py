"""Streaming moments of point sets: the mean and covariance of `[N, D]` arrays fed in chunks
(`FeatureStats`). Below `metrics/` (its FID statistics) and `methods/` (FDRL's fitted prior),
which both use it; numpy only."""

import numpy as np


def as_points(x, name: str, min_rows: int = 1) -> np.ndarray:
    """`x` as a finite float64 array `[N, D]` with `N >= min_rows`, else a ValueError."""
    a = np.asarray(x, dtype=np.float64)
    if a.ndim != 2:
        raise ValueError(f"{name} must be a 2-D array [N, D], got shape {a.shape}")
    if a.shape[0] < min_rows:
        raise ValueError(f"{name} needs at least {min_rows} rows, got {a.shape[0]}")
    if a.shape[1] < 1:
        raise ValueError(f"{name} must have at least one feature column, got shape {a.shape}")
    if not np.all(np.isfinite(a)):
        raise ValueError(f"{name} contains non-finite values (nan or inf)")
    return a


def _min_samples_error(n: int, dim: int) -> ValueError:
    return ValueError(
        f"covariance of {dim}-d features from {n} samples is singular: a full-rank sample "
        f"covariance needs at least {dim + 1} samples (feature dim + 1); use more samples"
    )


_ROWS = 1024  # rows of the scatter matrix merged at once by `FeatureStats.update`


class FeatureStats:
    """Streaming mean and covariance of features `[N, D]`, fed in chunks.

    Each chunk contributes its count, mean and centred scatter matrix M2 = (x - m)^T (x - m),
    computed in float64; chunks are merged with the exact pairwise formula (Chan et al.)

        n = na + nb,  m = ma + (mb - ma) nb / n,  M2 = M2a + M2b + (mb - ma)(mb - ma)^T na nb / n,

    so the result equals the mean/covariance of the concatenation up to rounding, and only one
    chunk is held in memory at a time.
    """

    def __init__(self):
        self.n = 0
        self.mean: np.ndarray | None = None
        self.m2: np.ndarray | None = None

    def update(self, features) -> "FeatureStats":
        """Add a chunk `[N, D]` (N >= 1; D equal across chunks). Returns self."""
        x = as_points(features, "features")
        if self.mean is not None and x.shape[1] != self.mean.shape[0]:
            raise ValueError(
                f"feature dims differ: this chunk has {x.shape[1]} columns, earlier chunks "
                f"had {self.mean.shape[0]}"
            )
        nb, mb = x.shape[0], x.mean(axis=0)
        xc = x - mb
        if self.mean is None:
            self.n, self.mean, self.m2 = nb, mb, xc.T @ xc
            return self
        n = self.n + nb
        delta = mb - self.mean
        coef = self.n * nb / n
        # in place, `_ROWS` rows at a time: the peak is the D×D accumulator plus a [_ROWS, D]
        # block, not the three D×D temporaries of the one-line merge (D = 49152 at 128²×3)
        for r in range(0, delta.shape[0], _ROWS):
            rows = slice(r, r + _ROWS)
            self.m2[rows] += xc[:, rows].T @ xc + np.outer(delta[rows] * coef, delta)
        self.mean = self.mean + delta * (nb / n)
        self.n = n
        return self

    def finalize(self, *, allow_singular: bool = False) -> tuple[np.ndarray, np.ndarray, int]:
        """(mu `[D]`, sigma `[D, D]` with the unbiased 1/(n-1) normalisation, n).

        Raises ValueError with the number of samples needed when n < D + 1 (the covariance
        would be singular), unless `allow_singular` (then n >= 2 is still required).
        """
        if self.mean is None:
            raise ValueError("FeatureStats.finalize() called before any update()")
        dim = self.mean.shape[0]
        if self.n < 2 or (not allow_singular and self.n < dim + 1):
            raise _min_samples_error(self.n, dim)
        sigma = self.m2 / (self.n - 1)
        return self.mean.copy(), 0.5 * (sigma + sigma.T), self.n

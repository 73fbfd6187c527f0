"""Pixel-space nearest neighbours of samples in a training set (VAPO Fig. 5;
docs/methods/vapo.md §5.4)."""

import numpy as np

from jaxgen.metrics.toy2d import _sq_dists


def nearest_neighbours(queries, reference, k: int = 5, *, chunk: int = 4096):
    """The `k` nearest rows of `reference` to each query by L2 distance, chunked over the
    reference so a 50k-image training set never forms one `[Q, N]` matrix.

    Args: `queries` `[Q, ...]`, `reference` `[N, ...]` (same per-example shape), `k <= N`.
    Returns: `(indices [Q, k] int64, distances [Q, k] float64)`, nearest first.
    """
    q = np.asarray(queries, np.float64).reshape(len(queries), -1)
    r = np.asarray(reference, np.float32)
    if r.shape[1:] != np.shape(queries)[1:]:
        raise ValueError(
            f"queries have example shape {np.shape(queries)[1:]}, reference {r.shape[1:]}"
        )
    r = r.reshape(len(r), -1)
    if not 1 <= k <= len(r):
        raise ValueError(f"k={k} must be between 1 and the reference size {len(r)}")
    best_d = np.full((len(q), 0), np.inf)
    best_i = np.zeros((len(q), 0), np.int64)
    for start in range(0, len(r), chunk):
        d = _sq_dists(q, r[start : start + chunk].astype(np.float64))
        cand_d = np.concatenate([best_d, d], 1)
        cand_i = np.concatenate([best_i, start + np.arange(d.shape[1])[None].repeat(len(q), 0)], 1)
        top = np.argsort(cand_d, axis=1, kind="stable")[:, :k]
        best_d = np.take_along_axis(cand_d, top, 1)
        best_i = np.take_along_axis(cand_i, top, 1)
    return best_i, np.sqrt(best_d)

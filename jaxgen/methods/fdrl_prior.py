"""FDRL's data-dependent prior (paper eq. 8; docs/methods/fdrl.md §2.6): the Gaussian fitted to
the training set in one streaming pass, with its peak host memory stated and checked first."""

import numpy as np

from jaxgen.moments import FeatureStats
from jaxgen.runtime import available_host_memory, release_host_memory


def fit_gaussian_prior(x, jitter: float = 1e-4, *, chunk: int = 2048, log=print):
    """The data-dependent prior of paper eq. (8): mean `[D]` and Cholesky factor `[D, D]` of the
    population (1/N) covariance of `x` `[N, ...]` flattened, plus `jitter`·I (reference code),
    both float32.

    Streaming (docs/methods/fdrl.md §2.6): the moments are accumulated in float64 over chunks of
    `chunk` examples with the evaluation suite's in-place pairwise merge (`FeatureStats`), and
    the accumulator is factorised in place, so the peak is the D×D float64 accumulator plus the
    float32 factor (12·D² bytes), stated by `log` and checked against the host's available
    memory before anything is allocated (no float64 copy of the data set). `x` may also be an
    iterable of `[n, ...]` chunks."""
    chunks = (x[i : i + chunk] for i in range(0, len(x), chunk)) if hasattr(x, "shape") else x
    stats = FeatureStats()
    for block in chunks:
        flat = np.asarray(block, np.float64).reshape(len(block), -1)
        if stats.mean is None:
            _check_fit_memory(flat.shape[1], log)
        stats.update(flat)
    if stats.mean is None:
        raise ValueError("fit_gaussian_prior: no examples")
    mean, cov, n = stats.mean, stats.m2, stats.n
    del stats  # the accumulator becomes the covariance, then its factor: no second D×D copy
    cov /= n
    cov[np.diag_indices(mean.shape[0])] += jitter
    chol = _cholesky_in_place(cov).astype(np.float32)
    del cov
    release_host_memory()  # the float64 accumulator's pages, which `reuse_host_memory` keeps
    return mean.astype(np.float32), chol


def _check_fit_memory(d: int, log) -> None:
    """State the fit's peak host memory for `d` dimensions; one clear error when the host does
    not have it (rather than the kernel's OOM killer)."""
    gib = 12 * d**2 / 2**30
    if log is not None:
        log(
            f"fdrl: fitting the data-dependent prior, D = {d}: {gib:.2f} GiB of host memory "
            f"(float64 accumulator {8 * d**2 / 2**30:.2f} GiB + float32 Cholesky factor)"
        )
    free = available_host_memory()
    if free is not None and 12 * d**2 > free:
        raise MemoryError(
            f"fdrl: the data-dependent prior at D = {d} needs {gib:.1f} GiB of host memory, "
            f"this host has {free / 2**30:.1f} GiB available: use a larger host or "
            "method.prior=normal or uniform"
        )


def _cholesky_in_place(cov: np.ndarray) -> np.ndarray:
    """The lower Cholesky factor of the symmetric C-ordered float64 `cov` `[D, D]`, computed by
    LAPACK in `cov`'s own memory (`cov.T` is the same matrix in Fortran order)."""
    from scipy.linalg import lapack

    upper, info = lapack.dpotrf(cov.T, lower=0, clean=1, overwrite_a=1)
    if info != 0:
        raise ValueError(
            f"fdrl: the data covariance is not positive definite (LAPACK potrf info {info}): "
            "raise method.prior_jitter"
        )
    return upper.T


def prior_shapes(example_shape) -> tuple:
    """The `jax.ShapeDtypeStruct`s of a fit `(mean [D], chol [D, D])` for examples of
    `example_shape` (D values each): a restore's abstract state costs no fit."""
    import jax

    d = int(np.prod(example_shape))
    return (jax.ShapeDtypeStruct((d,), np.float32), jax.ShapeDtypeStruct((d, d), np.float32))


def check_fitted(fitted, example_shape, *, who: str):
    """`fitted` = `(mean [D], chol [D, D])` for examples of `example_shape`, or one
    `ValueError` naming `who`."""
    if fitted is None:
        raise ValueError(f"{who}: prior='ddp' needs fitted=fdrl.fit_data(config, training_images)")
    d = int(np.prod(example_shape))
    mean, chol = fitted
    if np.shape(mean) != (d,) or np.shape(chol) != (d, d):
        raise ValueError(
            f"{who}: fitted has shapes {np.shape(mean)} and {np.shape(chol)}; examples of "
            f"shape {tuple(example_shape)} need ({d},) and ({d}, {d})"
        )
    return mean, chol

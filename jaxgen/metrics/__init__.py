"""Evaluation metrics: sample-based distances, mode coverage and exact 2-D likelihoods."""

from jaxgen.metrics.toy2d import (
    energy_distance,
    gaussian_mixture_log_density,
    grid_log_likelihood,
    mmd_rbf,
    mode_coverage,
)

__all__ = [
    "energy_distance",
    "gaussian_mixture_log_density",
    "grid_log_likelihood",
    "mmd_rbf",
    "mode_coverage",
]

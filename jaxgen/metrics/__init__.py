"""Evaluation metrics: sample-based distances, mode coverage and exact 2-D likelihoods,
feature-space distances (FD, KID, precision/recall, IS) and the project's feature extractors.
The perceptual network (a training loss) lives in `jaxgen.nn.perceptual`; its names are
re-exported here."""

from jaxgen.metrics.features import (
    CHECK_EXTRACTORS,
    FEATURE_EXTRACTORS,
    Extractor,
    load_extractor,
)
from jaxgen.metrics.frechet import (
    FeatureStats,
    ReferenceStats,
    feature_statistics,
    frechet_distance,
    inception_score,
    kernel_inception_distance,
    load_stats,
    precision_recall,
    save_stats,
)
from jaxgen.metrics.neighbours import nearest_neighbours
from jaxgen.metrics.ood import auroc
from jaxgen.metrics.ood import summary as score_summary
from jaxgen.metrics.toy2d import (
    energy_distance,
    gaussian_mixture_log_density,
    grid_log_likelihood,
    mmd_rbf,
    mode_coverage,
)
from jaxgen.nn.perceptual import PERCEPTUAL_NETWORKS, PerceptualNetwork, load_perceptual

__all__ = [
    "CHECK_EXTRACTORS",
    "FEATURE_EXTRACTORS",
    "PERCEPTUAL_NETWORKS",
    "Extractor",
    "FeatureStats",
    "PerceptualNetwork",
    "ReferenceStats",
    "auroc",
    "energy_distance",
    "feature_statistics",
    "frechet_distance",
    "gaussian_mixture_log_density",
    "grid_log_likelihood",
    "inception_score",
    "kernel_inception_distance",
    "load_extractor",
    "load_perceptual",
    "load_stats",
    "mmd_rbf",
    "mode_coverage",
    "nearest_neighbours",
    "precision_recall",
    "save_stats",
    "score_summary",
]

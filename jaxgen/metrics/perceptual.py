"""Deprecated: the perceptual network moved to `jaxgen.nn.perceptual` (it is a training loss, and
`jaxgen.nn` must not import the evaluation package). This shim re-exports its public names for
one release and will then be removed."""

import warnings

from jaxgen.nn.perceptual import (
    PERCEPTUAL_NETWORKS,
    PerceptualNetwork,
    PerceptualSpec,
    PerceptualVGG,
    load_perceptual,
)

warnings.warn(
    "jaxgen.metrics.perceptual is deprecated and will be removed in the next release: "
    "import from jaxgen.nn.perceptual instead",
    DeprecationWarning,
    stacklevel=2,
)

__all__ = [
    "PERCEPTUAL_NETWORKS",
    "PerceptualNetwork",
    "PerceptualSpec",
    "PerceptualVGG",
    "load_perceptual",
]

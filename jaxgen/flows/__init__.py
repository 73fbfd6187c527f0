"""Normalizing-flow bijections with `forward_and_log_det` / `inverse_and_log_det` as pure
functions over Flax variables (docs/methods/glf.md §2)."""

from jaxgen.flows.bijections import (
    ActNorm,
    AffineCoupling,
    Chain,
    CouplingSubnet,
    Permutation,
    fixed_permutation,
    soft_clamp,
)
from jaxgen.flows.realnvp import (
    INIT_STD,
    forward_and_log_det,
    init_flow,
    inverse_and_log_det,
    latent_realnvp,
    log_prob,
    small_normal_params,
    standard_normal_log_prob,
)

__all__ = [
    "INIT_STD",
    "ActNorm",
    "AffineCoupling",
    "Chain",
    "CouplingSubnet",
    "Permutation",
    "fixed_permutation",
    "forward_and_log_det",
    "init_flow",
    "inverse_and_log_det",
    "latent_realnvp",
    "log_prob",
    "small_normal_params",
    "soft_clamp",
    "standard_normal_log_prob",
]

"""Flax linen modules: MLPs, energy networks, encoders/decoders, discriminators."""

from jaxgen.nn.mlp import MLP, ScalarMLP

__all__ = ["MLP", "ScalarMLP"]

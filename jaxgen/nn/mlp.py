"""Multi-layer perceptrons for 2-D and flattened data."""

from collections.abc import Sequence

import flax.linen as nn
import jax.numpy as jnp

ACTIVATIONS = {
    "gelu": lambda x: nn.gelu(x, approximate=False),
    "silu": nn.silu,
    "relu": nn.relu,
    "tanh": jnp.tanh,
    "softplus": nn.softplus,
    "leaky_relu": lambda x: nn.leaky_relu(x, 0.2),  # FDRL's networks (docs/methods/fdrl.md §3.1)
}


def activation(name: str):
    """The activation function called `name` (exact GELU for 'gelu')."""
    if name not in ACTIVATIONS:
        raise ValueError(f"unknown activation {name!r}; choose one of {sorted(ACTIVATIONS)}")
    return ACTIVATIONS[name]


class MLP(nn.Module):
    """Dense layers with an activation between them.

    Input `[B, D]` (any trailing shape is flattened), output `[B, features[-1]]`.
    """

    features: Sequence[int]
    act: str = "gelu"

    @nn.compact
    def __call__(self, x):
        h = x.reshape(x.shape[0], -1)
        f = activation(self.act)
        for i, width in enumerate(self.features):
            h = nn.Dense(width, name=f"dense_{i}")(h)
            if i < len(self.features) - 1:
                h = f(h)
        return h


class ScalarMLP(nn.Module):
    """A scalar function of each example, e.g. a potential Φ(x) or an energy E(x).

    Input `[B, ...]`, output `[B]`. Examples never interact, so per-sample input
    gradients of `sum(f(x))` are exact.
    """

    hidden: Sequence[int] = (128, 128, 128)
    act: str = "gelu"

    @nn.compact
    def __call__(self, x):
        return MLP((*self.hidden, 1), act=self.act, name="mlp")(x)[:, 0]

"""DDGAN's networks for 2-D data (the 25-Gaussians experiment; thesis ch. 6 §6.4.7;
docs/methods/ddgan.md §5): MLPs with three hidden layers of 512 units and LeakyReLU(0.2),
conditioned by input concatenation.

The thesis does not state the t encoding or the z dimension. Here t (the integer step index
0..T−1) enters as a sinusoidal embedding of `t_emb_dim` features (the same formula as the image
networks, so nothing depends on T), or as the raw index, one scalar feature, if `t_emb_dim` is
0; z has `latent_dim` = 2 dimensions by default. Flax's default Dense init (LeCun normal
kernels, zero biases); the generator's output is linear (data are not bounded to [−1, 1]).
"""

from collections.abc import Sequence

import flax.linen as nn
import jax.numpy as jnp

from jaxgen.nn.ncsnpp import timestep_embedding


def encode_step(t, dim: int):
    """t `[B]` int → `[B, dim]` sinusoidal features, or `[B, 1]` (the index as a float) if 0."""
    if dim == 0:
        return jnp.asarray(t, jnp.float32)[:, None]
    return timestep_embedding(t, dim)


class _LeakyMLP(nn.Module):
    """`[B, D]` → `[B, out]`: Dense → LReLU(0.2) per hidden layer, then a linear Dense."""

    hidden: Sequence[int]
    out: int

    @nn.compact
    def __call__(self, h):
        for i, width in enumerate(self.hidden):
            h = nn.leaky_relu(nn.Dense(width, name=f"dense_{i}")(h), 0.2)
        return nn.Dense(self.out, name="out")(h)


class MLPGenerator(nn.Module):
    """x̂₀ = G(x_t, t, z) for 2-D data: x_t `[B, 2]`, t `[B]` int, z `[B, latent_dim]`
    → `[B, data_dim]` (no tanh), from concat(x_t, enc(t), z)."""

    hidden: Sequence[int] = (512, 512, 512)
    latent_dim: int = 2
    t_emb_dim: int = 16
    data_dim: int = 2

    @nn.compact
    def __call__(self, x_t, t, z):
        if z.shape != (x_t.shape[0], self.latent_dim):
            raise ValueError(f"z must have shape [B, {self.latent_dim}], got {z.shape}")
        h = jnp.concatenate([x_t, encode_step(t, self.t_emb_dim), z], axis=-1)
        return _LeakyMLP(self.hidden, self.data_dim, name="mlp")(h)


class MLPDiscriminator(nn.Module):
    """The logit D(x_{t−1}, x_t, t) for 2-D data: x_prev, x_t `[B, 2]`, t `[B]` int → `[B]`,
    from concat(x_prev, x_t, enc(t))."""

    hidden: Sequence[int] = (512, 512, 512)
    t_emb_dim: int = 16

    @nn.compact
    def __call__(self, x_prev, x_t, t):
        h = jnp.concatenate([x_prev, x_t, encode_step(t, self.t_emb_dim)], axis=-1)
        return _LeakyMLP(self.hidden, 1, name="mlp")(h)[:, 0]

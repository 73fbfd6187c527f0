"""The networks of the 2-D GAN recipe (docs/methods/gan2d.md §2): an MLP generator with
BatchNorm and an MLP discriminator, layers computing in `dtype` (float32 or bfloat16) with
float32 outputs."""

import flax.linen as nn
import jax.numpy as jnp


class Generator(nn.Module):
    """z `[B, latent]` → x `[B, out_dim]` float32; layers compute in `dtype`."""

    hidden: tuple[int, ...]
    out_dim: int
    bn_momentum: float
    dtype: str = "float32"

    @nn.compact
    def __call__(self, z, *, train: bool):
        h = z
        for width in self.hidden:
            # no bias before BatchNorm: its gradient is zero up to rounding, which Adam's
            # normalisation would blow up to steps of ±lr
            h = nn.Dense(width, use_bias=False, dtype=self.dtype)(h)
            h = nn.BatchNorm(
                use_running_average=not train, momentum=self.bn_momentum, dtype=self.dtype
            )(h)
            h = nn.relu(h)
        return nn.Dense(self.out_dim, dtype=self.dtype)(h).astype(jnp.float32)


class Discriminator(nn.Module):
    """x `[B, D]` → logit `[B]` float32; layers compute in `dtype`."""

    hidden: tuple[int, ...]
    dtype: str = "float32"

    @nn.compact
    def __call__(self, x):
        h = x.astype(self.dtype)
        for width in self.hidden:
            h = nn.leaky_relu(nn.Dense(width, dtype=self.dtype)(h), 0.2)
        return nn.Dense(1, dtype=self.dtype)(h)[:, 0].astype(jnp.float32)

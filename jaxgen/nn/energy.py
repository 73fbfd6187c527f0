"""The DRL energy ResNet with VAPO's changes (spec `vapo.md` §6): exact GELU, weight
normalisation, no time embedding, no normalisation layers (per-sample independent), global sum
pooling and a dense read-out to one scalar per example."""

from collections.abc import Sequence

import flax.linen as nn
import jax.numpy as jnp

from jaxgen.nn.weight_norm import WNConv, WNDense


def gelu(x):
    return nn.gelu(x, approximate=False)


class ResBlock(nn.Module):
    """Pre-activation residual block: x' = skip(x) + scale · conv(gelu(conv(gelu(x)))).

    The second conv starts near zero (`zero_init_scale`); `skip` is a 3×3 conv when the channel
    count changes (DRL's `res_conv_shortcut`). `residual_scale` < 1 is NVAE's branch scaling.
    """

    features: int
    zero_init_scale: float = 1e-3
    residual_scale: float = 1.0

    @nn.compact
    def __call__(self, x):
        r = WNConv(self.features, name="conv1")(gelu(x))
        r = WNConv(self.features, init_scale=self.zero_init_scale, name="conv2")(gelu(r))
        skip = x if x.shape[-1] == self.features else WNConv(self.features, name="skip")(x)
        return skip + self.residual_scale * r


class EnergyResNet(nn.Module):
    """Φ(x): images `[B, H, W, C]` in [-1, 1] -> `[B]`.

    `ch_mult` sets the channels per resolution (ch · mult); average pooling halves the resolution
    between levels; `num_res_blocks` blocks per level (spec §6.1 table).
    """

    ch: int = 128
    ch_mult: Sequence[int] = (1, 2, 2, 2)
    num_res_blocks: int = 8
    zero_init_scale: float = 1e-3
    residual_scale: float = 1.0
    dtype: jnp.dtype = jnp.float32

    @nn.compact
    def __call__(self, x):
        h = WNConv(self.ch, name="conv_in")(x.astype(self.dtype))
        for level, mult in enumerate(self.ch_mult):
            for b in range(self.num_res_blocks):
                h = ResBlock(
                    self.ch * mult,
                    self.zero_init_scale,
                    self.residual_scale,
                    name=f"level{level}_block{b}",
                )(h)
            if level != len(self.ch_mult) - 1:
                h = nn.avg_pool(h, (2, 2), strides=(2, 2))
        h = jnp.sum(gelu(h), axis=(1, 2))  # global sum pooling -> [B, C]
        return WNDense(1, name="readout")(h.astype(jnp.float32))[:, 0]

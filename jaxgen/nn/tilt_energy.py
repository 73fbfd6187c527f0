"""VAEBM's energy networks f_θ (thesis Table 4.9 and §4.4.1; docs/methods/vaebm.md §4).

    ResBlock(x) = LipSwish(pool(conv₃(LipSwish(conv₃(x))) + skip(x)))

with LipSwish(h) = h·sigmoid(h)/1.1, every conv weight-normalised (data-dependent init to output
std `init_scale`, 0.2 in the thesis's code, when initialised with `data_init`), the skip a
bias-free 1×1 conv where the width changes or the block downsamples (else the identity), pool a
2×2 average in downsampling blocks. The network: a 3×3 conv to `nf` channels, the blocks, a
global **sum** pool and a plain Dense layer to one number. No normalisation layer anywhere.
Examples never interact, so ∇ₓ of the summed energy is each example's own gradient.
"""

from collections.abc import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxgen.nn.weight_norm import WNConv

# the blocks of Table 4.9 as (width multiplier of nf, downsamples); nf in the comment
TABLE_4_9 = {
    "cifar10": ((1, True), (1, False), (2, True), (2, False), (2, True), (2, False)),  # 128
    "celeba64": (
        (1, True),
        (1, False),
        (2, True),
        (2, False),
        (2, True),
        (4, False),
        (4, True),
        (4, False),
    ),  # 64
}
# §4.4.1's small-VAE energy: 3 blocks of 64 then 3 of 128 (where it downsamples is not stated;
# here the first block of each group)
SMALL_VAE = ((1, True), (1, False), (1, False), (2, True), (2, False), (2, False))  # nf 64


def lipswish(x):
    """x·sigmoid(x)/1.1 (1-Lipschitz)."""
    return jax.nn.swish(x) / 1.1


class TiltResBlock(nn.Module):
    features: int
    down: bool = False
    init_scale: float = 0.2
    data_init: bool = False

    @nn.compact
    def __call__(self, x):
        wn = dict(init_scale=self.init_scale, data_init=self.data_init)
        h = WNConv(self.features, 3, name="conv_0", **wn)(x)
        h = WNConv(self.features, 3, name="conv_1", **wn)(lipswish(h))
        skip = x
        if self.down or x.shape[-1] != self.features:
            skip = WNConv(self.features, 1, use_bias=False, name="skip", **wn)(x)
        h = h + skip
        if self.down:
            h = nn.avg_pool(h, (2, 2), strides=(2, 2))
        return lipswish(h)


class TiltEnergy(nn.Module):
    """f_θ(x) `[B]` for images `x` `[B, H, W, C]` (in the range the recipe feeds it; VAEBM: [0, 1]).

    `blocks`: (width multiplier of `nf`, downsamples) per ResBlock (`TABLE_4_9`, `SMALL_VAE`)."""

    nf: int = 128
    blocks: Sequence[tuple[int, bool]] = TABLE_4_9["cifar10"]
    init_scale: float = 0.2
    data_init: bool = False

    @nn.compact
    def __call__(self, x) -> jax.Array:
        wn = dict(init_scale=self.init_scale, data_init=self.data_init)
        h = WNConv(self.nf, 3, name="conv_in", **wn)(x)
        for i, (mult, down) in enumerate(self.blocks):
            h = TiltResBlock(mult * self.nf, bool(down), name=f"block_{i}", **wn)(h)
        pooled = jnp.sum(h, axis=(1, 2))  # global sum pooling
        return nn.Dense(1, name="out")(pooled)[:, 0]

"""The short-run EBM's convolutional energies (thesis Table 5.2; docs/methods/shortrun_ebm.md §3).

A 3×3 stride-1 conv to nf, then 4×4 stride-2 convs (padding 1) with the widths `widths`·nf,
Swish after every conv, flatten, one dense layer to a scalar. No normalisation. Per example:
examples never interact, so ∇ₓ of the summed energy is each example's own gradient.
"""

from collections.abc import Sequence

import flax.linen as nn
import jax

# width multipliers of the stride-2 convs per data set (Table 5.2)
TABLE_5_2 = {
    "mnist": (2, 2, 2),  # MNIST and Fashion-MNIST at 32×32, nf = 32
    "cifar10": (2, 4, 8),  # nf = 64
    "celeba": (2, 4, 8, 16),  # nf = 32; the last 4×4 conv is read as its own row (spec §0)
}


class ConvEnergy(nn.Module):
    """E(x) `[B]` for images `[B, H, W, C]` in [-1, 1] (H, W divisible by 2^len(widths))."""

    nf: int = 32
    widths: Sequence[int] = TABLE_5_2["mnist"]

    @nn.compact
    def __call__(self, x) -> jax.Array:
        h = nn.swish(nn.Conv(self.nf, (3, 3), padding=1, name="conv_in")(x))
        for i, mult in enumerate(self.widths):
            conv = nn.Conv(mult * self.nf, (4, 4), strides=2, padding=1, name=f"conv_{i}")
            h = nn.swish(conv(h))
        return nn.Dense(1, name="out")(h.reshape(h.shape[0], -1))[:, 0]


def check_image_size(shape, widths: Sequence[int], who: str) -> None:
    """One `ValueError` unless images `(H, W, C)` halve cleanly `len(widths)` times."""
    factor = 2 ** len(widths)
    if len(shape) != 3 or shape[0] % factor or shape[1] % factor:
        raise ValueError(
            f"{who}: the conv energy takes images [H, W, C] with H and W divisible by {factor}; "
            f"got an example of shape {tuple(shape)}"
        )

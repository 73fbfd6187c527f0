"""The DRL energy ResNet with VAPO's changes (docs/methods/vapo.md §4): exact GELU, weight
normalisation, no time embedding, no normalisation layers (per-sample independent), global sum
pooling and a dense read-out to one scalar per example."""

from collections.abc import Sequence

import flax.linen as nn
import jax.numpy as jnp

from jaxgen.nn.activations import gelu_exact
from jaxgen.nn.weight_norm import WNConv, WNDense

# "erf": `gelu_exact` (erf form, hand-written derivatives; fast double backward);
# "flax": `nn.gelu(approximate=False)` (erfc form, autodiff derivatives; the reference)
GELU_IMPLS = ("erf", "flax")


def gelu(x, impl: str = "erf"):
    """Exact GELU x Φ(x), elementwise; `impl` picks the formulation (same values)."""
    if impl == "erf":
        return gelu_exact(x)
    if impl == "flax":
        return nn.gelu(x, approximate=False)
    raise ValueError(f"gelu impl {impl!r}: choose one of {list(GELU_IMPLS)}")


class ResBlock(nn.Module):
    """Pre-activation residual block: x' = skip(x) + scale · conv(gelu(conv(gelu(x)))).

    The second conv starts near zero (`zero_init_scale`); `skip` is a 3×3 conv when the channel
    count changes (DRL's `res_conv_shortcut`). `residual_scale` < 1 is NVAE's branch scaling.
    Input `[B, H, W, C]`, output `[B, H, W, features]`.
    """

    features: int
    zero_init_scale: float = 1e-3
    residual_scale: float = 1.0
    conv_impl: str = "xla"
    gelu_impl: str = "erf"
    data_init: bool = False

    @nn.compact
    def __call__(self, x):
        conv = lambda name, **kw: WNConv(
            self.features, conv_impl=self.conv_impl, data_init=self.data_init, name=name, **kw
        )
        r = conv("conv1")(gelu(x, self.gelu_impl))
        r = conv("conv2", init_scale=self.zero_init_scale)(gelu(r, self.gelu_impl))
        skip = x if x.shape[-1] == self.features else conv("skip")(x)
        return skip + self.residual_scale * r


class EnergyResNet(nn.Module):
    """Φ(x): images `[B, H, W, C]` in [-1, 1] -> `[B]`.

    `ch_mult` sets the channels per resolution (ch · mult); average pooling halves the resolution
    between levels; `num_res_blocks` blocks per level (docs/methods/vapo.md §4 table). `conv_impl`
    and `gelu_impl` choose kernels only (`weight_norm.conv_same`, `gelu`): same parameters,
    same values to float32 rounding.

    `batch_splits` > 1 runs the layers on that many slices of the batch (the same parameters):
    independent graphs XLA's CPU runtime can execute concurrently, one per core, where a single
    convolution kernel runs on one core. Same values (examples are independent).
    """

    ch: int = 128
    ch_mult: Sequence[int] = (1, 2, 2, 2)
    num_res_blocks: int = 8
    zero_init_scale: float = 1e-3
    residual_scale: float = 1.0
    dtype: jnp.dtype = jnp.float32
    conv_impl: str = "xla"
    gelu_impl: str = "erf"
    batch_splits: int = 1
    data_init: bool = False  # data-dependent weight-norm initialisation (init with a data batch)

    @nn.compact
    def __call__(self, x):
        layers = self._layers()
        slices = jnp.array_split(x, max(1, min(self.batch_splits, x.shape[0])))
        return jnp.concatenate([self._forward(layers, xs) for xs in slices])

    def _layers(self) -> list:
        """The modules in order; `None` marks a 2× average pooling. Called inside `__call__`."""
        kw = dict(conv_impl=self.conv_impl, gelu_impl=self.gelu_impl, data_init=self.data_init)
        layers = [
            WNConv(self.ch, conv_impl=self.conv_impl, data_init=self.data_init, name="conv_in")
        ]
        for level, mult in enumerate(self.ch_mult):
            for b in range(self.num_res_blocks):
                scales = dict(
                    zero_init_scale=self.zero_init_scale, residual_scale=self.residual_scale
                )
                layers.append(
                    ResBlock(self.ch * mult, **scales, **kw, name=f"level{level}_block{b}")
                )
            if level != len(self.ch_mult) - 1:
                layers.append(None)
        return layers + [WNDense(1, data_init=self.data_init, name="readout")]

    def _forward(self, layers, x):
        """`x` `[b, H, W, C]` -> `[b]` through `layers` (shared between batch slices)."""
        h = x.astype(self.dtype)
        for layer in layers[:-1]:
            h = nn.avg_pool(h, (2, 2), strides=(2, 2)) if layer is None else layer(h)
        h = jnp.sum(gelu(h, self.gelu_impl), axis=(1, 2))  # global sum pooling -> [b, C]
        return layers[-1](h.astype(jnp.float32))[:, 0]

"""The DDGAN time-conditional discriminator D(x_{t−1}, x_t, t) (thesis ch. 6 §6.4.7, Table 6.7,
with the public code's layout, which the maintainers call correct; docs/methods/ddgan.md §5).

    concat(x_{t−1}, x_t) → 1×1 conv (stem_mult·ngf)
      → residual blocks (mults[i]·ngf channels, FIR ↓2 where down[i])
      → minibatch stddev (+1 channel) → 3×3 conv (C + 1 → C) → LReLU → spatial sum → Dense → logit

The t-embedding is sinusoidal(t_emb_dim) → Dense → LReLU → Dense → LReLU; LeakyReLU has slope
0.2 everywhere; there are no normalisation layers. Block: h = conv3×3(LReLU(x)) + Dense(temb),
h = conv3×3_near_zero([FIR ↓](LReLU(h))); skip = 1×1 conv without bias of [FIR ↓] x;
out = (h + skip)/√2. The two `DISCRIMINATOR_CONFIGS` of the code: "small" (32², 4 blocks, ends
at 4×4; the thesis's table lists a fifth, "cifar10_thesis") and "large" (256², 6 ↓ blocks → 4×4).
Init: DDPM variance scaling, biases 0, the second conv of each block at scale 1e-10.

Minibatch stddev groups the batch the module is given the way StyleGAN2 does: example i shares
a group with the examples i ± k·B/G (a strided split, G = group size). G = the largest divisor
of B that is ≤ min(B, `mbstd_group`), so a batch size not divisible by 4 still works (B = 6
gives groups of 3, a prime B gives G = 1, i.e. a constant feature); when 4 divides B this is the
code's grouping. To keep the code's per-GPU groups under data parallelism, apply the module to
each device's shard (vmap over `[n_devices, B/n_devices, ...]` or inside shard_map).
"""

from collections.abc import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxgen.nn.fir import downsample_2d
from jaxgen.nn.ncsnpp import SQRT2, TimeEmbedding, conv, dense

lrelu = lambda x: nn.leaky_relu(x, 0.2)

SMALL = dict(ngf=64, stem_mult=2, mults=(2, 4, 8, 8), down=(False, True, True, True))
LARGE = dict(ngf=64, stem_mult=2, mults=(4, 8, 8, 8, 8, 8), down=(True,) * 6)
DISCRIMINATOR_CONFIGS = {
    "cifar10": SMALL,
    "cifar10_thesis": dict(SMALL, mults=(2, 4, 8, 8, 8), down=(False, True, True, True, True)),
    "celebahq256": LARGE,
    "lsun_church256": LARGE,
    "fashion_mnist": dict(SMALL, ngf=16),  # 0.99 M parameters, for a 2-core CPU
}


def _group_size(batch: int, group: int) -> int:
    """The largest divisor of `batch` that is ≤ min(batch, group)."""
    g = max(1, min(batch, group))
    while batch % g:
        g -= 1
    return g


def minibatch_stddev(h, group: int = 4, features: int = 1, eps: float = 1e-8):
    """`[B, H, W, C]` → `[B, H, W, C + features]`: per group of G examples (strided, see the
    module docstring) the std over the group of each activation (channels split into `features`
    parts), averaged over H, W and the part's channels, appended as constant channels."""
    b, height, width, c = h.shape
    g = _group_size(b, group)
    y = h.reshape(g, b // g, height, width, features, c // features)
    y = jnp.sqrt(jnp.var(y, axis=0) + eps)  # [B/G, H, W, F, C/F]
    y = jnp.tile(jnp.mean(y, axis=(1, 2, 4)), (g, 1))  # [B, F]; example i gets row i mod B/G
    y = jnp.broadcast_to(y[:, None, None, :], (b, height, width, features))
    return jnp.concatenate([h, y.astype(h.dtype)], axis=-1)


class DownBlock(nn.Module):
    """x `[B, H, W, C]`, temb `[B, E]` → `[B, H', W', features]` (H' = H/2 if `down`)."""

    features: int
    down: bool = False

    @nn.compact
    def __call__(self, x, temb):
        h = conv(self.features, name="conv_0")(lrelu(x))
        h = h + dense(self.features, name="temb")(temb)[:, None, None, :]
        h = lrelu(h)
        if self.down:
            h, x = downsample_2d(h), downsample_2d(x)
        h = conv(self.features, scale=0.0, name="conv_1")(h)
        skip = conv(self.features, size=1, use_bias=False, name="skip")(x)
        return (h + skip) / SQRT2


class TimeConditionalDiscriminator(nn.Module):
    """The logit ℓ = D(x_{t−1}, x_t, t); D = σ(ℓ) (docs/methods/ddgan.md §5).

    Args of `__call__`:
      x_prev: `[B, H, W, C]` the candidate x_{t−1} (real or generated).
      x_t: `[B, H, W, C]` the conditioning noisy image.
      t: `[B]` int step indices.

    Returns `[B]` logits. H and W must be divisible by 2^(number of down blocks).
    """

    ngf: int = 64
    stem_mult: int = 2
    mults: Sequence[int] = SMALL["mults"]
    down: Sequence[bool] = SMALL["down"]
    t_emb_dim: int = 256
    mbstd_group: int = 4
    mbstd_features: int = 1

    @nn.compact
    def __call__(self, x_prev, x_t, t):
        self._check(x_prev, x_t)
        temb = TimeEmbedding(self.t_emb_dim, self.t_emb_dim, lrelu, True, name="time_embedding")
        temb = temb(t)
        h = conv(self.ngf * self.stem_mult, size=1, name="stem")(
            jnp.concatenate([x_prev, x_t], axis=-1)
        )
        for i, (mult, down) in enumerate(zip(self.mults, self.down, strict=True)):
            h = DownBlock(self.ngf * mult, down, name=f"block_{i}")(h, temb)
        h = minibatch_stddev(h, self.mbstd_group, self.mbstd_features)
        h = lrelu(conv(h.shape[-1] - self.mbstd_features, name="conv_out")(h))
        return dense(1, name="logit")(jnp.sum(h, axis=(1, 2)))[:, 0]

    def _check(self, x_prev, x_t) -> None:
        factor = 2 ** sum(bool(d) for d in self.down)
        shape = x_prev.shape
        if x_t.shape != shape or len(shape) != 4 or shape[1] % factor or shape[2] % factor:
            raise ValueError(
                f"the discriminator takes x_prev and x_t of one shape [B, H, W, C] with H, W "
                f"divisible by {factor}; got {tuple(shape)} and {tuple(x_t.shape)}"
            )


def abstract_discriminator_params(config: dict | str, size: int, channels: int = 3, batch=4):
    """The discriminator of `config` (a `DISCRIMINATOR_CONFIGS` name or field dict) for
    `size`² images with `channels` channels, and its parameter shapes from `jax.eval_shape`."""
    model = TimeConditionalDiscriminator(
        **(DISCRIMINATOR_CONFIGS[config] if isinstance(config, str) else config)
    )
    x = jax.ShapeDtypeStruct((batch, size, size, channels), jnp.float32)
    t = jax.ShapeDtypeStruct((batch,), jnp.int32)
    init = lambda x, t: model.init(jax.random.PRNGKey(0), x, x, t)
    return model, jax.eval_shape(init, x, t)["params"]

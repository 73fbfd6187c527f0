"""FDRL's density-ratio ResNets (FDRL paper, Table 3; docs/methods/fdrl.md §3.1, eq. 3.1).

A residual block (the reference code's BasicBlock, no normalisation, LeakyReLU 0.2):

    h = LReLU(conv3×3_s(x));  h = conv3×3(h);  out = LReLU(h + shortcut(x))

with bias-free convs; the shortcut is a bias-free 1×1 conv of stride s when the block
down-samples (s = 2, "ResBlock Down": strided convs, no pooling) or changes width, else x. The
network is a bias-free 3×3 stem with LeakyReLU, the stages of `RATIO_NET_CONFIGS`, a global mean
pool and Dense(C → 1): one unbounded scalar per example, r (LSIF) or log r (LR), no output
activation. Optional spectral normalisation on every conv (the reference code's CIFAR-10 and
Cat2dog settings): its power-iteration vectors live in the `batch_stats` collection, state and
not parameters. The Cat2dog net has a SAGAN self-attention block. Per example: examples never
interact, so ∇ₓ of the summed output is each example's own gradient (the flow's drift).
"""

from collections.abc import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

LRELU_SLOPE = 0.2

# (width, stride) per block in order; "attn" marks the self-attention block (Table 3 of the
# paper, which the reference code matches)
_CIFAR = [(128, 1)] * 3 + [(256, 2), (256, 1), (256, 1)] * 3
RATIO_NET_CONFIGS = {
    "cifar10": dict(stem=128, blocks=tuple(_CIFAR)),
    "celeba64": dict(
        stem=64, blocks=((64, 2), (128, 2), (128, 1), (256, 2), (256, 1), (256, 2), (256, 1))
    ),
    "lsun_church128": dict(
        stem=64,
        blocks=((64, 2), (128, 2), (128, 2), (128, 1), (256, 2), (256, 1), (256, 2), (256, 1)),
    ),
    "cat2dog64": dict(stem=64, blocks=((64, 2), (128, 2), "attn", (128, 2), (256, 2))),
    # Fashion-MNIST 32² on a 2-core CPU (ours): narrow, down-sampling from the first block
    # (≈ 8.5 M MACs per example, a fifth of a full-resolution first stage; docs/results.md)
    "fashion_mnist": dict(stem=16, blocks=((32, 2), (64, 2), (64, 2))),
}


def _lrelu(x):
    return nn.leaky_relu(x, LRELU_SLOPE)


class _Conv(nn.Module):
    """A bias-free (or biased) conv, spectrally normalised when `spectral_norm`."""

    features: int
    kernel: int
    stride: int = 1
    use_bias: bool = False
    spectral_norm: bool = False

    @nn.compact
    def __call__(self, x, update_stats: bool):
        pad = self.kernel // 2
        conv = nn.Conv(
            self.features, (self.kernel,) * 2, self.stride, padding=pad, use_bias=self.use_bias
        )
        if self.spectral_norm:
            return nn.SpectralNorm(conv, n_steps=1)(x, update_stats=update_stats)
        return conv(x)


class ResBlock(nn.Module):
    features: int
    stride: int = 1
    spectral_norm: bool = False

    @nn.compact
    def __call__(self, x, update_stats: bool):
        conv = lambda f, k, s, name: _Conv(f, k, s, spectral_norm=self.spectral_norm, name=name)
        h = _lrelu(conv(self.features, 3, self.stride, "conv1")(x, update_stats))
        h = conv(self.features, 3, 1, "conv2")(h, update_stats)
        skip = x
        if self.stride != 1 or x.shape[-1] != self.features:
            skip = conv(self.features, 1, self.stride, "shortcut")(x, update_stats)
        return _lrelu(h + skip)


class SelfAttention(nn.Module):
    """SAGAN self-attention: 1×1 key / query / value convs C → C/8 and out C/8 → C (biased),
    s[i, j] = k_i·q_j, softmax over the key positions i, y = γ·out(v) + x with γ from 0."""

    spectral_norm: bool = False

    @nn.compact
    def __call__(self, x, update_stats: bool):
        b, h, w, c = x.shape
        conv = lambda f, name: _Conv(
            f, 1, use_bias=True, spectral_norm=self.spectral_norm, name=name
        )
        flat = lambda a: a.reshape(b, h * w, -1)
        k = flat(conv(c // 8, "key")(x, update_stats))
        q = flat(conv(c // 8, "query")(x, update_stats))
        v = flat(conv(c // 8, "value")(x, update_stats))
        beta = jax.nn.softmax(jnp.einsum("bic,bjc->bij", k, q), axis=1)  # over keys i
        attended = jnp.einsum("bij,bic->bjc", beta, v).reshape(b, h, w, c // 8)
        gamma = self.param("gamma", nn.initializers.zeros, ())
        return gamma * conv(c, "out")(attended, update_stats) + x


class RatioResNet(nn.Module):
    """The ratio network: images `[B, H, W, C]` in [-1, 1] → `[B]`.

    `blocks`: (width, stride) pairs, or "attn" for a self-attention block. Call with
    `update_stats=True` (and `mutable=["batch_stats"]`) in training when `spectral_norm`, so
    that the power iteration advances; without spectral norm there is no state."""

    stem: int
    blocks: Sequence
    spectral_norm: bool = False

    @nn.compact
    def __call__(self, x, update_stats: bool = False) -> jax.Array:
        sn = self.spectral_norm
        h = _lrelu(_Conv(self.stem, 3, spectral_norm=sn, name="stem")(x, update_stats))
        for i, block in enumerate(self.blocks):
            if block == "attn":
                h = SelfAttention(sn, name=f"attn_{i}")(h, update_stats)
            else:
                h = ResBlock(*block, spectral_norm=sn, name=f"block_{i}")(h, update_stats)
        return nn.Dense(1, name="head")(jnp.mean(h, axis=(1, 2)))[:, 0]


def downsampling(blocks: Sequence) -> int:
    """The factor by which `blocks` shrink an image's side."""
    factor = 1
    for block in blocks:
        factor *= 1 if block == "attn" else block[1]
    return factor

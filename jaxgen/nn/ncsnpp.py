"""The DDGAN generator: an NCSN++ U-Net with AdaGN (thesis ch. 6 §6.4.7, Table 6.6; NCSN++ =
Song et al. 2021 App. H; docs/methods/ddgan.md §5).

x̂₀ = G(x_t, t, z): images `[B, H, W, C]`, the integer step index t `[B]` (0..T−1) and a
latent z `[B, nz]` give the predicted clean image `[B, H, W, C]` in [−1, 1] (tanh).

Layout (NCSN++ with BigGAN blocks, FIR [1, 3, 3, 1] resampling, every skip scaled by 1/√2):

* t: sinusoidal embedding of the integer step (dim nf) → Dense(4nf) → SiLU → Dense(4nf); each
  residual block adds Dense(SiLU(temb)) as a per-channel bias after its first conv.
* z: PixelNorm → Dense(d_w) → SiLU → n_mlp × [Dense(d_w) → SiLU] = w, fed to every AdaGN:
  GroupNorm without affine, then σ(w) ⊙ GN(h) + μ(w) [6.13], one Dense(d_w → 2C) per layer
  whose bias starts at σ = 1, μ = 0. Neither sees t. AdaGN replaces the two norms inside each
  residual block only; attention and the output head keep plain (affine) GroupNorm.
  `latent_dim = 0` is the no-latent ablation: plain GroupNorm, no mapping network, z ignored.
* Down path: conv3×3 → nf; per level `num_res_blocks` blocks (+ self-attention after each
  block at the listed resolutions), then (except at the last level) a down-sampling block.
  Middle: block, attention, block. Up path: per level `num_res_blocks + 1` blocks on the
  concatenation with the stored skip, attention once after them at the listed resolutions,
  then (except at the top) an up-sampling block. Head: GroupNorm → SiLU → conv3×3 → tanh.
* Input pyramid (NCSN++ `progressive_input`; no output pyramid):
  - "residual" (the DDGAN setting): a running stream starts as the input image. At every
    down-sampling the stream is resampled by a fused FIR-blur + stride-2 3×3 conv to the
    block's channels, summed with the down-sampling block's output and divided by √2; that
    sum is both the block's output and the next stream (a StyleGAN2-style residual branch).
  - "input_skip": the image itself is FIR down-sampled once per level and added to the
    down-sampling block's output through a 1×1 conv (combine "sum").
  - "none": no pyramid.

Init is DDPM's variance scaling (scale 1, fan_avg, uniform; biases 0), except the last conv of
each residual branch and the attention output projection (scale 1e-10, "near zero"); the
output conv uses `out_init_scale` (0 → 1e-10, NCSN++'s default `init_scale = 0`).
"""

import math
from collections.abc import Callable, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from jaxgen.nn.fir import blur_2d, downsample_2d, upsample_2d

SQRT2 = math.sqrt(2.0)

# README values of the public code (which the maintainers call correct; docs/methods/ddgan.md
# §6), the thesis's CIFAR-10 alternative (Table 6.6) and a small CPU setting.
GENERATOR_CONFIGS = {
    "cifar10": dict(nf=128, ch_mult=(1, 2, 2, 2), latent_dim=100, z_emb_dim=256, n_mlp=4),
    "cifar10_thesis": dict(nf=128, ch_mult=(1, 2, 2, 2), latent_dim=256, z_emb_dim=512, n_mlp=3),
    "celebahq256": dict(nf=64, ch_mult=(1, 1, 2, 2, 4, 4), latent_dim=100, z_emb_dim=256, n_mlp=3),
    "lsun_church256": dict(
        nf=64, ch_mult=(1, 1, 2, 2, 4, 4), latent_dim=100, z_emb_dim=256, n_mlp=3
    ),
    # 32×32 (padded) Fashion-MNIST on a 2-core CPU: 0.63 M parameters; with the "fashion_mnist"
    # discriminator one G + D forward/backward at batch 64 is ≈ 112 GFLOP (≈ 3 s there)
    "fashion_mnist": dict(
        nf=16, ch_mult=(1, 2, 2), latent_dim=32, z_emb_dim=64, n_mlp=2, out_channels=1
    ),
}


def ddpm_init(scale: float = 1.0):
    """DDPM's variance-scaling initialiser (fan_avg, uniform); scale 0 means 1e-10."""
    return nn.initializers.variance_scaling(max(scale, 1e-10), "fan_avg", "uniform")


def timestep_embedding(t, dim: int, max_positions: int = 10_000):
    """t `[B]` (integer step indices, or floats) → `[B, dim]`: [sin(t·f_i), cos(t·f_i)] with
    f_i = max_positions^(−i/(dim/2 − 1)) (DDPM's sinusoidal embedding; zero-padded if odd)."""
    half = dim // 2
    freqs = jnp.exp(-math.log(max_positions) * jnp.arange(half) / max(half - 1, 1))
    args = jnp.asarray(t, jnp.float32)[:, None] * freqs[None, :]
    emb = jnp.concatenate([jnp.sin(args), jnp.cos(args)], axis=-1)
    return jnp.pad(emb, ((0, 0), (0, dim % 2)))


def conv(features: int, size: int = 3, scale: float = 1.0, **kw) -> nn.Conv:
    """A `size`×`size` stride-1 'same' convolution with DDPM init."""
    return nn.Conv(features, (size, size), padding=size // 2, kernel_init=ddpm_init(scale), **kw)


def dense(features: int, scale: float = 1.0, **kw) -> nn.Dense:
    return nn.Dense(features, kernel_init=ddpm_init(scale), **kw)


def num_groups(channels: int) -> int:
    """NCSN++'s GroupNorm group count: min(C // 4, 32)."""
    return max(1, min(channels // 4, 32))


def group_norm(h, affine: bool = True, name: str | None = None):
    """GroupNorm over `[B, H, W, C]` with min(C // 4, 32) groups and eps 1e-6."""
    gn = nn.GroupNorm(
        num_groups(h.shape[-1]), epsilon=1e-6, use_bias=affine, use_scale=affine, name=name
    )
    return gn(h)


class TimeEmbedding(nn.Module):
    """t `[B]` → `[B, features]`: sinusoid(embed_dim) → Dense → act → Dense [→ act]."""

    embed_dim: int
    features: int
    act: Callable = nn.silu
    act_out: bool = False  # the discriminator applies the activation once more

    @nn.compact
    def __call__(self, t):
        h = dense(self.features, name="dense_0")(timestep_embedding(t, self.embed_dim))
        h = dense(self.features, name="dense_1")(self.act(h))
        return self.act(h) if self.act_out else h


class MappingNetwork(nn.Module):
    """z `[B, nz]` → w `[B, features]`: PixelNorm, then (1 + n_mlp) × [Dense → SiLU]."""

    features: int
    n_mlp: int

    @nn.compact
    def __call__(self, z):
        h = z * jax.lax.rsqrt(jnp.mean(jnp.square(z), axis=-1, keepdims=True) + 1e-8)
        for i in range(1 + self.n_mlp):
            h = nn.silu(dense(self.features, name=f"dense_{i}")(h))
        return h


class AdaGroupNorm(nn.Module):
    """h `[B, H, W, C]`, w `[B, d_w]` → σ(w) ⊙ GN(h) + μ(w) (eq. 6.13), GN without affine.

    The style `[B, 2C]` = (σ, μ) is sown as `intermediates/.../sigma_mu` (read it with
    `apply(..., mutable="intermediates")`)."""

    @nn.compact
    def __call__(self, h, w):
        c = h.shape[-1]
        ones_zeros = lambda key, shape, dtype: jnp.concatenate(
            [jnp.ones(c, dtype), jnp.zeros(shape[0] - c, dtype)]
        )
        style = dense(2 * c, bias_init=ones_zeros, name="style")(w)
        self.sow("intermediates", "sigma_mu", style)
        sigma, mu = jnp.split(style[:, None, None, :], 2, axis=-1)
        return sigma * group_norm(h, affine=False) + mu


def _norm(h, w, name: str):
    """AdaGN(h, w), or plain affine GroupNorm when there is no latent (w is None)."""
    return group_norm(h, name=name) if w is None else AdaGroupNorm(name=name)(h, w)


class ResBlock(nn.Module):
    """BigGAN-style residual block (NCSN++): x `[B, H, W, C]` → `[B, H', W', features]`.

    h = conv(SiLU(norm(x))) [after FIR resampling of the activations] + Dense(SiLU(temb));
    h = conv_near_zero(dropout(SiLU(norm(h)))); skip = 1×1 conv of [resampled] x when the
    channels change or it resamples; out = (h + skip)/√2. `resample`: None, "up" or "down".
    """

    features: int
    resample: str | None = None
    dropout: float = 0.0

    @nn.compact
    def __call__(self, x, temb, w, train: bool = False):
        h = nn.silu(_norm(x, w, "norm_0"))
        if self.resample is not None:
            fn = {"up": upsample_2d, "down": downsample_2d}[self.resample]
            h, x = fn(h), fn(x)
        h = conv(self.features, name="conv_0")(h)
        h = h + dense(self.features, name="temb")(nn.silu(temb))[:, None, None, :]
        h = nn.silu(_norm(h, w, "norm_1"))
        h = nn.Dropout(self.dropout, deterministic=not train)(h)
        h = conv(self.features, scale=0.0, name="conv_1")(h)
        if x.shape[-1] != self.features or self.resample is not None:
            x = conv(self.features, size=1, name="skip")(x)
        return (x + h) / SQRT2


class AttnBlock(nn.Module):
    """Single-head self-attention over the H·W positions of `[B, H, W, C]`, plain GroupNorm
    first, output projection initialised near zero, (x + attn)/√2."""

    @nn.compact
    def __call__(self, x):
        b, height, width, c = x.shape
        h = group_norm(x, name="norm")
        q, k, v = (dense(c, name=n)(h) for n in ("q", "k", "v"))
        logits = jnp.einsum("bhwc,bijc->bhwij", q, k) * c**-0.5
        attn = jax.nn.softmax(logits.reshape(b, height, width, -1), axis=-1)
        h = jnp.einsum("bhwij,bijc->bhwc", attn.reshape(logits.shape), v)
        return (x + dense(c, scale=0.0, name="out")(h)) / SQRT2


class PyramidDownsample(nn.Module):
    """`[B, H, W, C]` → `[B, H/2, W/2, features]`: the fused FIR down-sampling convolution
    (blur with 2 zeros of padding per side, then a 3×3 stride-2 'valid' conv; StyleGAN2)."""

    features: int

    @nn.compact
    def __call__(self, x):
        h = blur_2d(x, (2, 2))
        return nn.Conv(self.features, (3, 3), 2, "VALID", kernel_init=ddpm_init())(h)


def check_image_size(
    shape, ch_mult: Sequence[int], attn_resolutions: Sequence[int], who: str = "NCSN++"
) -> None:
    """One `ValueError` (prefixed by `who`) unless images `(H, W, C)` are square, halve cleanly
    len(ch_mult) − 1 times and pass through every listed attention resolution."""
    levels = len(ch_mult) - 1
    size = shape[0] if len(shape) == 3 else None
    ok = size is not None and shape[1] == size and size % 2**levels == 0
    reached = {size // 2**i for i in range(levels + 1)} if ok else set()
    if not ok or not set(attn_resolutions) <= reached:
        raise ValueError(
            f"{who}: the NCSN++ generator takes square images whose size halves {levels} times "
            f"(ch_mult={tuple(ch_mult)}) through every attention resolution "
            f"{tuple(attn_resolutions)}; got an example of shape {tuple(shape)}"
        )


class NCSNppGenerator(nn.Module):
    """x̂₀ = G(x_t, t, z) (docs/methods/ddgan.md §5; the layout is in the module docstring).

    Args of `__call__`:
      x_t: `[B, H, W, C]` the noisy images, in [−1, 1] up to noise.
      t: `[B]` int step indices (code index 0..T−1).
      z: `[B, latent_dim]` standard-normal latents (ignored, may be None, if latent_dim = 0).
      train: enables dropout (needs a "dropout" rng when `dropout` > 0).

    Returns `[B, H, W, out_channels]`, in [−1, 1] when `tanh`.
    """

    nf: int = 128
    ch_mult: Sequence[int] = (1, 2, 2, 2)
    num_res_blocks: int = 2
    attn_resolutions: Sequence[int] = (16,)
    latent_dim: int = 100
    z_emb_dim: int = 256
    n_mlp: int = 4
    out_channels: int = 3
    dropout: float = 0.0
    tanh: bool = True
    progressive_input: str = "residual"
    out_init_scale: float = 0.0

    @nn.compact
    def __call__(self, x_t, t, z=None, *, train: bool = False):
        check_image_size(x_t.shape[1:], self.ch_mult, self.attn_resolutions)
        temb = TimeEmbedding(self.nf, 4 * self.nf, name="time_embedding")(t)
        w = None
        if self.latent_dim:
            if z is None or z.shape != (x_t.shape[0], self.latent_dim):
                got = None if z is None else z.shape
                raise ValueError(f"z must have shape [B, {self.latent_dim}], got {got}")
            w = MappingNetwork(self.z_emb_dim, self.n_mlp, name="mapping")(z)
        block = lambda c, **kw: ResBlock(c, dropout=self.dropout, **kw)
        hs = self._down(x_t, temb, w, block, train)
        h = block(hs[-1].shape[-1])(hs[-1], temb, w, train)
        h = AttnBlock()(h)
        h = block(h.shape[-1])(h, temb, w, train)
        h = self._up(h, hs, temb, w, block, train)
        h = nn.silu(group_norm(h, name="norm_out"))
        h = conv(self.out_channels, scale=self.out_init_scale, name="conv_out")(h)
        return jnp.tanh(h) if self.tanh else h

    def _down(self, x, temb, w, block, train):
        """The down path; returns every stored activation (the skips), the last one on top."""
        if self.progressive_input not in ("residual", "input_skip", "none"):
            raise ValueError(f"progressive_input {self.progressive_input!r} is not supported")
        hs = [conv(self.nf, name="conv_in")(x)]
        pyramid = x
        for level, mult in enumerate(self.ch_mult):
            for _ in range(self.num_res_blocks):
                h = block(self.nf * mult)(hs[-1], temb, w, train)
                if h.shape[1] in self.attn_resolutions:
                    h = AttnBlock()(h)
                hs.append(h)
            if level == len(self.ch_mult) - 1:
                break
            h = block(hs[-1].shape[-1], resample="down")(hs[-1], temb, w, train)
            if self.progressive_input == "residual":
                h = (PyramidDownsample(h.shape[-1])(pyramid) + h) / SQRT2
                pyramid = h
            elif self.progressive_input == "input_skip":
                pyramid = downsample_2d(pyramid)
                h = h + conv(h.shape[-1], size=1)(pyramid)
            hs.append(h)
        return hs

    def _up(self, h, hs, temb, w, block, train):
        """The up path, consuming the skips `hs` from the top."""
        hs = list(hs)
        for level in reversed(range(len(self.ch_mult))):
            for _ in range(self.num_res_blocks + 1):
                x = jnp.concatenate([h, hs.pop()], axis=-1)
                h = block(self.nf * self.ch_mult[level])(x, temb, w, train)
            if h.shape[1] in self.attn_resolutions:
                h = AttnBlock()(h)
            if level > 0:
                h = block(h.shape[-1], resample="up")(h, temb, w, train)
        assert not hs, "every stored skip is used once"
        return h


def count_params(variables) -> int:
    """The number of scalars in a (possibly abstract, `jax.eval_shape`) parameter tree."""
    return sum(int(np.prod(x.shape)) for x in jax.tree.leaves(variables))


def abstract_generator_params(config: dict | str, size: int, batch: int = 1):
    """The generator of `config` (a `GENERATOR_CONFIGS` name or field dict) for `size`² images,
    with its parameter shapes from `jax.eval_shape` of the init (nothing is materialised)."""
    fields = GENERATOR_CONFIGS[config] if isinstance(config, str) else config
    model = NCSNppGenerator(**fields)
    x = jax.ShapeDtypeStruct((batch, size, size, model.out_channels), jnp.float32)
    t = jax.ShapeDtypeStruct((batch,), jnp.int32)
    z = jax.ShapeDtypeStruct((batch, model.latent_dim), jnp.float32) if model.latent_dim else None
    init = lambda x, t, z: model.init(jax.random.PRNGKey(0), x, t, z)
    return model, jax.eval_shape(init, x, t, z)["params"]

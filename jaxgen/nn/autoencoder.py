"""The InfoGAN-style convolutional encoder and decoder of GLF (docs/methods/glf.md §3,
thesis Table 3.6). M = image size / 4; every (de)convolution is 4×4 with stride 2.

    Encoder: Conv w, ReLU → Conv 2w, BN, ReLU → Dense 16w, BN, ReLU → Dense d (or 2d)
    Decoder: Dense 16w, BN, ReLU → Dense 2w·M², BN, ReLU → Deconv w, BN, ReLU → Deconv C, tanh

with w = 64 in the thesis (1024 = 16w, 128 = 2w); smaller w only for smoke tests.

Weights are drawn from N(0, 0.02²), biases are 0 (the reference code's init).
"""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

WEIGHT_INIT = nn.initializers.normal(0.02)

# The 4×4 stride-2 transposed convolution (PyTorch's ConvTranspose2d(4, 2, padding=1)) per
# output phase: along one axis out[2i] = w[3]·in[i-1] + w[1]·in[i] and
# out[2i+1] = w[2]·in[i] + w[0]·in[i+1]. _PHASE_TAPS[phase][offset + 1] is the kernel index
# applied to in[i + offset] (None: no tap).
_PHASE_TAPS = ((3, 1, None), (None, 2, 0))


def phase_kernel(kernel):
    """A 4×4 transposed-convolution kernel `[4, 4, C_in, C_out]` as the equivalent 3×3
    stride-1 kernel `[3, 3, C_in, 4·C_out]` whose output channels are (phase_y, phase_x, c)."""
    zero = jnp.zeros(kernel.shape[2:], kernel.dtype)
    tap = lambda a, b: zero if a is None or b is None else kernel[a, b]
    phases = [
        jnp.stack([jnp.stack([tap(a, b) for b in tx]) for a in ty])  # [3, 3, C_in, C_out]
        for ty in _PHASE_TAPS
        for tx in _PHASE_TAPS
    ]
    return jnp.concatenate(phases, axis=-1)


class Deconv4x4(nn.Module):
    """`[B, H, W, C_in]` → `[B, 2H, 2W, features]`: the 4×4, stride-2, padding-1 transposed
    convolution, computed as one 3×3 stride-1 convolution into the four output phases, then
    interleaved (a sub-pixel convolution with the same parameters). On XLA's CPU backend the
    gradient of the dilated form is ~6× slower (docs/methods/glf.md §3)."""

    features: int
    use_bias: bool = True

    @nn.compact
    def __call__(self, x):
        kernel = self.param("kernel", WEIGHT_INIT, (4, 4, x.shape[-1], self.features))
        y = jax.lax.conv_general_dilated(
            x,
            phase_kernel(kernel).astype(x.dtype),
            (1, 1),
            ((1, 1), (1, 1)),
            dimension_numbers=("NHWC", "HWIO", "NHWC"),
        )
        b, h, w, _ = x.shape
        y = y.reshape(b, h, w, 2, 2, self.features).transpose(0, 1, 3, 2, 4, 5)
        y = y.reshape(b, 2 * h, 2 * w, self.features)
        if self.use_bias:
            y = y + self.param("bias", nn.initializers.zeros, (self.features,))
        return y


def _dense(features: int, **kw):
    return nn.Dense(features, kernel_init=WEIGHT_INIT, **kw)


def _bn(train: bool, momentum: float):
    return nn.BatchNorm(use_running_average=not train, momentum=momentum)


def check_image_size(height: int, width: int) -> int:
    """M = size / 4 for square images whose size is a multiple of 4, else a `ValueError`."""
    if height != width or height % 4 or height < 4:
        raise ValueError(
            f"the GLF auto-encoder takes square images whose size is a multiple of 4, "
            f"got {height}x{width}"
        )
    return height // 4


class Encoder(nn.Module):
    """x `[B, H, W, C]` in [-1, 1] → `[B, outputs]` (the latent z, or (μ, log σ²) stacked)."""

    outputs: int
    bn_momentum: float = 0.9
    width: int = 64

    @nn.compact
    def __call__(self, x, *, train: bool):
        check_image_size(*x.shape[1:3])
        conv = lambda c, **kw: nn.Conv(
            c, (4, 4), strides=(2, 2), padding=((1, 1), (1, 1)), kernel_init=WEIGHT_INIT, **kw
        )
        w = self.width
        h = nn.relu(conv(w)(x))
        h = nn.relu(_bn(train, self.bn_momentum)(conv(2 * w, use_bias=False)(h)))
        h = h.reshape(h.shape[0], -1)
        h = nn.relu(_bn(train, self.bn_momentum)(_dense(16 * w, use_bias=False)(h)))
        return _dense(self.outputs)(h)


class Decoder(nn.Module):
    """z `[B, d]` → x̂ `[B, size, size, channels]` in (-1, 1) (tanh); with `tanh=False` the last
    deconvolution's output as it is (e.g. a Bernoulli decoder's logits; same parameters)."""

    size: int
    channels: int
    bn_momentum: float = 0.9
    width: int = 64
    tanh: bool = True

    @nn.compact
    def __call__(self, z, *, train: bool):
        m = check_image_size(self.size, self.size)
        deconv = Deconv4x4
        w = self.width
        h = nn.relu(_bn(train, self.bn_momentum)(_dense(16 * w, use_bias=False)(z)))
        h = nn.relu(_bn(train, self.bn_momentum)(_dense(2 * w * m * m, use_bias=False)(h)))
        h = h.reshape(h.shape[0], m, m, 2 * w)
        h = nn.relu(_bn(train, self.bn_momentum)(deconv(w, use_bias=False)(h)))
        out = deconv(self.channels)(h)
        return jnp.tanh(out) if self.tanh else out


def init_variables(module: nn.Module, key, example) -> dict:
    """The reference initialisation of `module` for inputs like `example`: every kernel
    0.02·N(0, 1) from one random draw, biases 0, BatchNorm scales 1, running means 0 and
    variances 1. (Flax's initialisers give the same distributions with one random call per
    layer, which XLA's CPU backend compiles ~10× slower.)"""
    shapes = jax.eval_shape(lambda: module.init(jax.random.PRNGKey(0), example, train=False))
    kernels = [
        leaf
        for path, leaf in jax.tree_util.tree_flatten_with_path(shapes)[0]
        if path[-1].key == "kernel"
    ]
    sizes = [int(np.prod(k.shape)) for k in kernels]
    draws = iter(jnp.split(0.02 * jax.random.normal(key, (sum(sizes),)), np.cumsum(sizes)[:-1]))

    def fill(path, leaf):
        name = path[-1].key
        if name == "kernel":
            return next(draws).reshape(leaf.shape).astype(leaf.dtype)
        one = name in ("scale", "var")
        return (jnp.ones if one else jnp.zeros)(leaf.shape, leaf.dtype)

    return jax.tree_util.tree_map_with_path(fill, shapes)

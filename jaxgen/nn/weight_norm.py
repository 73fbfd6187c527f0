"""Weight-normalised layers (Salimans & Kingma 2016): w = g · v / ‖v‖ per output unit.

At initialisation g = init_scale · ‖v‖, so the effective weight is `init_scale · v` (PyTorch's
`weight_norm` convention; `init_scale ≈ 1e-3` gives the near-zero residual branches of DRL/VAPO).
With `data_init=True` (NVAE/Salimans-Kingma data-dependent initialisation, off by default) the
layer instead sets g and the bias from the initialisation batch so that each output unit has
mean 0 and standard deviation `init_scale` on that batch.
"""

import flax.linen as nn
import jax.numpy as jnp
from jax import lax

# DRL's default_init: variance scaling, fan_avg, uniform
default_init = nn.initializers.variance_scaling(1.0, "fan_avg", "uniform")

CONV_IMPLS = ("xla", "im2col")


def _normalise(v, g, axes):
    return g * v / jnp.sqrt(jnp.sum(v**2, axis=axes, keepdims=True) + 1e-12)


def normalised_kernel(v, g):
    """The effective weight g ⊙ v/‖v‖ of a weight-normalised layer (norm over every axis but the
    last, the output units): `[..., C_out]`, as `WNConv` and `WNDense` apply it."""
    return _normalise(v, g, tuple(range(v.ndim - 1)))


def _wn_params(module, x, v, apply, axes, reduce_axes, use_bias: bool = True):
    """`(g, bias)` of a weight-normalised layer: the default (g = init_scale·‖v‖, bias 0), or from
    the statistics of `apply(x, v/‖v‖)` over `reduce_axes` when `data_init` is on (without a bias,
    only the scale is set and bias is None)."""
    n_out = v.shape[-1]
    if module.data_init and module.is_initializing():
        y = apply(x, _normalise(v, jnp.ones((n_out,), v.dtype), axes))
        scale = module.init_scale / (jnp.std(y, axis=reduce_axes) + 1e-6)
        g = module.param("g", lambda _: scale)
        if not use_bias:
            return g, None
        b = module.param("bias", lambda _: -jnp.mean(y, axis=reduce_axes) * scale)
        return g, b
    g = module.param("g", lambda _: module.init_scale * jnp.sqrt(jnp.sum(v**2, axis=axes)))
    if not use_bias:
        return g, None
    return g, module.param("bias", nn.initializers.zeros, (n_out,))


def conv_same(x, w, impl: str = "xla"):
    """Stride-1 'SAME' convolution of `x` `[B, H, W, C_in]` with `w` `[k, k, C_in, C_out]`
    (odd k) -> `[B, H, W, C_out]`.

    `impl="xla"`: XLA's convolution (on CPU a YNNPACK/Eigen kernel). `impl="im2col"`: pad,
    gather the k² shifted windows into patches `[B, H, W, k² C_in]` and do one matmul with
    `w` reshaped to `[k² C_in, C_out]` (same result to float32 rounding; kept as a measured
    alternative, it is several times slower on CPU, see docs/results.md).
    """
    if impl == "xla":
        return lax.conv_general_dilated(
            x, w, (1, 1), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC")
        )
    if impl != "im2col":
        raise ValueError(f"conv impl {impl!r}: choose one of {list(CONV_IMPLS)}")
    k, _, c_in, c_out = w.shape
    b, h, wd, _ = x.shape
    p = k // 2
    xp = jnp.pad(x, ((0, 0), (p, p), (p, p), (0, 0)))
    windows = [xp[:, i : i + h, j : j + wd, :] for i in range(k) for j in range(k)]
    patches = jnp.stack(windows, axis=3).reshape(b, h, wd, k * k * c_in)
    return patches @ w.reshape(k * k * c_in, c_out)


class WNConv(nn.Module):
    """Weight-normalised 2-D convolution, NHWC, 'SAME' padding, stride 1.

    Input `[B, H, W, C_in]`, output `[B, H, W, features]`. `conv_impl` picks the convolution
    kernel (`conv_same`); parameters and values do not depend on it.
    """

    features: int
    kernel_size: int = 3
    init_scale: float = 1.0
    conv_impl: str = "xla"
    data_init: bool = False
    use_bias: bool = True  # False: no bias parameter (e.g. VAEBM's 1×1 skips)

    @nn.compact
    def __call__(self, x):
        k = self.kernel_size
        shape = (k, k, x.shape[-1], self.features)
        v = self.param("v", default_init, shape)
        conv = lambda x, w: conv_same(x, w.astype(x.dtype), self.conv_impl)
        g, b = _wn_params(self, x, v, conv, (0, 1, 2), (0, 1, 2), self.use_bias)
        w = normalised_kernel(v, g).astype(x.dtype)
        y = conv_same(x, w, self.conv_impl)
        return y + b.astype(x.dtype) if self.use_bias else y


class WNDense(nn.Module):
    """Weight-normalised dense layer. Input `[B, D]`, output `[B, features]`."""

    features: int
    init_scale: float = 1.0
    data_init: bool = False

    @nn.compact
    def __call__(self, x):
        v = self.param("v", default_init, (x.shape[-1], self.features))
        g, b = _wn_params(self, x, v, lambda x, w: x @ w.astype(x.dtype), (0,), (0,))
        return x @ normalised_kernel(v, g).astype(x.dtype) + b.astype(x.dtype)

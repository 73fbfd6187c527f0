"""Weight-normalised layers (Salimans & Kingma 2016): w = g · v / ‖v‖ per output unit.

At initialisation g = init_scale · ‖v‖, so the effective weight is `init_scale · v` (PyTorch's
`weight_norm` convention; `init_scale ≈ 1e-3` gives the near-zero residual branches of DRL/VAPO).
"""

import flax.linen as nn
import jax.numpy as jnp

# DRL's default_init: variance scaling, fan_avg, uniform
default_init = nn.initializers.variance_scaling(1.0, "fan_avg", "uniform")


def _normalise(v, g, axes):
    return g * v / jnp.sqrt(jnp.sum(v**2, axis=axes, keepdims=True) + 1e-12)


class WNConv(nn.Module):
    """Weight-normalised 2-D convolution, NHWC, 'SAME' padding, stride 1.

    Input `[B, H, W, C_in]`, output `[B, H, W, features]`.
    """

    features: int
    kernel_size: int = 3
    init_scale: float = 1.0

    @nn.compact
    def __call__(self, x):
        k = self.kernel_size
        shape = (k, k, x.shape[-1], self.features)
        v = self.param("v", default_init, shape)
        g = self.param("g", lambda _: self.init_scale * jnp.sqrt(jnp.sum(v**2, axis=(0, 1, 2))))
        b = self.param("bias", nn.initializers.zeros, (self.features,))
        w = _normalise(v, g, (0, 1, 2)).astype(x.dtype)
        y = nn.Conv(self.features, (k, k), padding="SAME", use_bias=False).apply(
            {"params": {"kernel": w}}, x
        )
        return y + b.astype(x.dtype)


class WNDense(nn.Module):
    """Weight-normalised dense layer. Input `[B, D]`, output `[B, features]`."""

    features: int
    init_scale: float = 1.0

    @nn.compact
    def __call__(self, x):
        v = self.param("v", default_init, (x.shape[-1], self.features))
        g = self.param("g", lambda _: self.init_scale * jnp.sqrt(jnp.sum(v**2, axis=0)))
        b = self.param("bias", nn.initializers.zeros, (self.features,))
        return x @ _normalise(v, g, (0,)).astype(x.dtype) + b.astype(x.dtype)

"""Exact GELU with hand-written first and second derivatives, for losses that differentiate
the network twice (VAPO's ‖∇ₓΦ‖² term, then the parameter gradient).

gelu(x) = x Φ(x), gelu'(x) = Φ(x) + x φ(x), gelu''(x) = φ(x) (2 − x²), with Φ the standard
normal CDF and φ its density. `jax.nn.gelu(approximate=False)` computes Φ through `erfc`,
whose float32 lowering evaluates two rational approximations and a division per element; on
CPU that made the activations of the double backward cost about as much as a third of the
convolutions. Here Φ(x) = ½ (1 + erf(x/√2)) (one polynomial, PyTorch's formula) and the
derivatives reuse φ(x) instead of differentiating through `erfc`. The values and the first
two derivatives agree with `jax.nn.gelu(approximate=False)` to a few float32 ulps
(|Δ| ≤ 3e-7 · max(1, |x|), tests/test_energy_impl.py).
"""

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

_SQRT_HALF = np.float32(np.sqrt(0.5))
_INV_SQRT_2PI = np.float32(1.0 / np.sqrt(2.0 * np.pi))


def normal_cdf(x):
    """Φ(x), elementwise."""
    return 0.5 * (1.0 + lax.erf(x * _SQRT_HALF))


def normal_pdf(x):
    """φ(x), elementwise."""
    return _INV_SQRT_2PI * jnp.exp(-0.5 * x * x)


@jax.custom_jvp
def gelu_derivative(x):
    """gelu'(x) = Φ(x) + x φ(x), elementwise; its own derivative is φ(x) (2 − x²)."""
    return normal_cdf(x) + x * normal_pdf(x)


@gelu_derivative.defjvp
def _gelu_derivative_jvp(primals, tangents):
    (x,), (t,) = primals, tangents
    pdf = normal_pdf(x)
    return normal_cdf(x) + x * pdf, pdf * (2.0 - x * x) * t


@jax.custom_jvp
def gelu_exact(x):
    """Exact (erf) GELU x Φ(x), elementwise, any shape."""
    return x * normal_cdf(x)


@gelu_exact.defjvp
def _gelu_exact_jvp(primals, tangents):
    (x,), (t,) = primals, tangents
    return x * normal_cdf(x), gelu_derivative(x) * t

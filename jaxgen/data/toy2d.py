"""Generated 2-D data sets; each is a pure function of (name, n, key).

Definitions (the architecture doc's data contract):
- `8gaussians`: 8 isotropic Gaussians, std 0.1, centres 2·(cos kπ/4, sin kπ/4), equal weights.
- `25gaussians`: 5×5 grid of centres {-4,-2,0,2,4}², std 0.05.
- `9gaussians`: 3×3 grid of centres {-2,0,2}², std 0.1.
- `swissroll`: scikit-learn's `make_swiss_roll(noise=0.5)` — t = 1.5π(1 + 2u), point
  (t cos t, 21v, t sin t) + 0.5·N(0, I) — keeping the columns (x, z), divided by 5.
- `swissroll_fdrl`: the FDRL code's toy Swiss roll, the same with noise 0.25, divided by 7.5.
- `moons`: scikit-learn's `make_moons` — upper arc (cos θ, sin θ), lower arc (1 − cos θ, ½ − sin θ),
  θ ~ U[0, π], each arc with probability ½ — plus 0.1·N(0, I), then centred: 2·(p − (½, ¼)).
- `checkerboard`: the FFJORD checkerboard — x1 ~ U[-2, 2), x2 ~ U[0,1) − 2·Bernoulli(½) +
  (⌊x1⌋ mod 2), both times 2: 8 unit-area squares of side 2 in [-4, 4]².
- `rings`: 4 concentric circles, radii (0.75, 1.5, 2.25, 3.0) chosen with equal probability,
  angle ~ U[0, 2π), plus 0.08·N(0, I).
"""

import math
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np


def _grid(values) -> np.ndarray:
    return np.array([(a, b) for a in values for b in values], np.float32)


_MIXTURES = {
    "8gaussians": (
        np.array(
            [(2 * math.cos(k * math.pi / 4), 2 * math.sin(k * math.pi / 4)) for k in range(8)],
            np.float32,
        ),
        0.1,
    ),
    "25gaussians": (_grid((-4.0, -2.0, 0.0, 2.0, 4.0)), 0.05),
    "9gaussians": (_grid((-2.0, 0.0, 2.0)), 0.1),
}


def mixture_modes(name: str) -> tuple[np.ndarray, float]:
    """Centres `[K, 2]` and the common std of a Gaussian-mixture data set."""
    if name not in _MIXTURES:
        raise ValueError(
            f"{name!r} is not a Gaussian-mixture data set; those are {sorted(_MIXTURES)}"
        )
    centers, std = _MIXTURES[name]
    return centers.copy(), std


def _mixture(name, n, key):
    centers, std = _MIXTURES[name]
    kc, kn = jax.random.split(key)
    idx = jax.random.randint(kc, (n,), 0, len(centers))
    return jnp.asarray(centers)[idx] + std * jax.random.normal(kn, (n, 2))


def _swissroll(n, key, noise=0.5, scale=5.0):
    ku, kv, kn = jax.random.split(key, 3)
    t = 1.5 * jnp.pi * (1 + 2 * jax.random.uniform(ku, (n,)))
    del kv  # the height coordinate (21v) is dropped
    xz = jnp.stack([t * jnp.cos(t), t * jnp.sin(t)], axis=1)
    return (xz + noise * jax.random.normal(kn, (n, 2))) / scale


def _moons(n, key):
    kt, kb, kn = jax.random.split(key, 3)
    theta = jnp.pi * jax.random.uniform(kt, (n,))
    upper = jnp.stack([jnp.cos(theta), jnp.sin(theta)], 1)
    lower = jnp.stack([1 - jnp.cos(theta), 0.5 - jnp.sin(theta)], 1)
    p = jnp.where(jax.random.bernoulli(kb, 0.5, (n, 1)), upper, lower)
    p = p + 0.1 * jax.random.normal(kn, (n, 2))
    return 2.0 * (p - jnp.array([0.5, 0.25]))


def _checkerboard(n, key):
    k1, k2, k3 = jax.random.split(key, 3)
    x1 = jax.random.uniform(k1, (n,), minval=-2.0, maxval=2.0)
    x2 = jax.random.uniform(k2, (n,)) - 2.0 * jax.random.bernoulli(k3, 0.5, (n,))
    x2 = x2 + jnp.mod(jnp.floor(x1), 2)
    return 2.0 * jnp.stack([x1, x2], 1)


def _rings(n, key):
    kr, ka, kn = jax.random.split(key, 3)
    radius = 0.75 * (1 + jax.random.randint(kr, (n,), 0, 4)).astype(jnp.float32)
    angle = 2 * jnp.pi * jax.random.uniform(ka, (n,))
    p = radius[:, None] * jnp.stack([jnp.cos(angle), jnp.sin(angle)], 1)
    return p + 0.08 * jax.random.normal(kn, (n, 2))


_GENERATORS = {
    "swissroll": _swissroll,
    "swissroll_fdrl": partial(_swissroll, noise=0.25, scale=7.5),
    "moons": _moons,
    "checkerboard": _checkerboard,
    "rings": _rings,
}

TOY2D_NAMES = tuple(sorted([*_MIXTURES, *_GENERATORS]))


def sample_toy2d(name: str, n: int, key) -> jax.Array:
    """`n` samples `[n, 2]` float32 of the 2-D data set `name`, a pure function of `key`."""
    if name in _MIXTURES:
        out = _mixture(name, n, key)
    elif name in _GENERATORS:
        out = _GENERATORS[name](n, key)
    else:
        raise ValueError(f"unknown 2-D data set {name!r}; choose one of {list(TOY2D_NAMES)}")
    return out.astype(jnp.float32)

"""Paths between two noise draws, for the recipes' `interpolate` extras: each returns `num`
points `[num, ...]` from z1 to z2 that the recipe then decodes (ODE, dynamics, flow)."""

import jax.numpy as jnp


def slerp(z1, z2, num: int):
    """Spherical interpolation of two noise draws `[...]` → `[num, ...]` (the VAPO paper's Fig. 3):
    unit-vector slerp between z1/‖z1‖ and z2/‖z2‖, scaled by the mean norm (‖z1‖ + ‖z2‖)/2."""
    n1, n2 = jnp.linalg.norm(z1), jnp.linalg.norm(z2)
    u1, u2 = z1 / n1, z2 / n2
    theta = jnp.arccos(jnp.clip(jnp.vdot(u1, u2), -1.0, 1.0))
    alpha = jnp.linspace(0.0, 1.0, num).reshape((num,) + (1,) * z1.ndim)
    path = (jnp.sin((1 - alpha) * theta) * u1 + jnp.sin(alpha * theta) * u2) / jnp.sin(theta)
    return 0.5 * (n1 + n2) * path


def rho_path(z1, z2, num: int):
    """ρ-interpolation (thesis ch. 5; docs/methods/shortrun_ebm.md): ρ z1 + √(1 − ρ²) z2 for
    ρ from 0 to 1 in `num` steps, `[num, ...]`; every point has N(0, I)'s law when z1, z2 do."""
    rho = jnp.linspace(0.0, 1.0, num).reshape((num,) + (1,) * z1.ndim)
    return rho * z1 + jnp.sqrt(1.0 - rho**2) * z2

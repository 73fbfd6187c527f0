"""VAPO energy loss (Loo et al. 2024, paper eqs. (16)-(21); docs/methods/vapo.md §2).

Conventions: Φ is *high* on data and particles follow dx/dt = +∇Φ(x) (paper eq. (12)).
The conditional homotopy at likelihood exponent τ is N(m x̄, s² I) (paper eq. (19)), with
τ(t) = ε^(1-t) (1+ε)^t - ε for t ~ U[0, 1] (log-uniform reparameterisation,
docs/methods/vapo.md eq. (4)).
"""

from typing import NamedTuple

import jax
import jax.numpy as jnp


class Schedule(NamedTuple):
    """Homotopy quantities at flow time t (each the shape of t)."""

    tau: jax.Array  # likelihood exponent τ(t)
    dtau: jax.Array  # τ'(t) = (τ + ε) ln((1+ε)/ε)
    mean: jax.Array  # m(τ) = τσ0² / (σ² + τσ0²)
    std: jax.Array  # s(τ) = sqrt(σ0²σ² / (σ² + τσ0²))
    kappa: jax.Array  # κ(τ) = σ0² / (σ² + τσ0²)


def homotopy_schedule(t, *, sigma0: float, sigma: float, eps: float) -> Schedule:
    """Posterior N(m x̄, s² I) of paper eq. (19) at exponent τ(t)
    (docs/methods/vapo.md eqs. (3)-(4))."""
    t = jnp.asarray(t, jnp.float32)
    ell = jnp.log1p(1.0 / eps)  # ℓ = ln((1+ε)/ε)
    tau = jnp.exp((1.0 - t) * jnp.log(eps) + t * jnp.log1p(eps)) - eps
    den = sigma**2 + tau * sigma0**2
    kappa = sigma0**2 / den
    return Schedule(
        tau=tau,
        dtau=(tau + eps) * ell,
        mean=tau * sigma0**2 / den,
        std=jnp.sqrt(sigma0**2 * sigma**2 / den),
        kappa=kappa,
    )


def innovation_weight(xbar, xi, sched: Schedule, *, sigma0: float, jacobian: bool = True):
    """The weight w on Φ(x) for one example (paper eq. (21); the ξ-form of
    docs/methods/vapo.md eq. (5)).

    w = ½ τ'(t) κ [(‖ξ‖² − D) − (2 s / σ0²) x̄ᵀξ]  — zero-mean given (x̄, t).
    With `jacobian=False` the τ'(t) factor is dropped (variant B, docs/methods/vapo.md eq. (12)).

    Args: `xbar`, `xi` of one example, any shape (D elements); `sched` scalar fields.
    Returns: a scalar.
    """
    d = xbar.size
    bracket = (jnp.sum(xi**2) - d) - 2.0 * sched.std / sigma0**2 * jnp.sum(xbar * xi)
    scale = sched.dtau * sched.kappa if jacobian else sched.kappa
    return 0.5 * scale * bracket


def perturb(xbar, t, key, *, sigma0: float, sigma: float, eps: float, jacobian: bool = True):
    """Draw x ~ ρ(x | x̄; τ(t)) for one example and its weight w (paper eqs. (19), (21)).

    Returns `(x, w)`: x has the shape of `xbar`, w is a scalar (no gradient flows into it).
    """
    sched = homotopy_schedule(t, sigma0=sigma0, sigma=sigma, eps=eps)
    xi = jax.random.normal(key, xbar.shape, jnp.float32)
    x = sched.mean * xbar + sched.std * xi
    w = innovation_weight(xbar, xi, sched, sigma0=sigma0, jacobian=jacobian)
    return x, jax.lax.stop_gradient(w)


def potential_flow_loss(potential_fn, x, w, *, lam: float, baseline=None):
    """Per-example VAPO loss terms (paper eq. (20); docs/methods/vapo.md eq. (10)):
    w Φ(x) + ½‖∇ₓΦ(x)‖² + ½ λ Φ(x)², or with a control variate `baseline` b `[B]` (a value
    that does not depend on ξ, e.g. Φ(m x̄)) w (Φ(x) − b) + …, whose expectation and
    θ-gradient are the same because E[w | x̄, t] = 0 (docs/methods/vapo.md eq. (10a)).

    Args:
      potential_fn: `[B, ...] -> [B]`, per-example independent (no batch statistics).
      x: `[B, ...]` perturbed samples; w: `[B]` weights from `perturb`.
    Returns: `(terms [B], phi [B], grad_sq [B])`.
    """
    phi, vjp = jax.vjp(potential_fn, x)
    (g,) = vjp(jnp.ones_like(phi))  # per-example ∇ₓΦ because examples are independent
    grad_sq = jnp.sum(g.reshape(g.shape[0], -1) ** 2, axis=1)
    centred = phi if baseline is None else phi - baseline
    terms = w * centred + 0.5 * grad_sq + 0.5 * lam * phi**2
    return terms, phi, grad_sq


def point_mass_loss(c, d: int, *, eps: float) -> float:
    """Exact expected loss of Φ_c(x) = −(c/2)‖x‖² for data δ₀ in D dims, λ = 0
    (docs/methods/vapo.md eq. (15)).

    L(c) = D (1 − a) (c² − ℓ c) / (2ℓ) with a = ε/(1+ε), ℓ = ln((1+ε)/ε); minimised at c = ℓ/2.
    Valid when ε = σ²/σ0² (then τ'κ = ℓ for every t).
    """
    ell = jnp.log1p(1.0 / eps)
    a = eps / (1.0 + eps)
    return d * (1.0 - a) * (c**2 - ell * c) / (2.0 * ell)

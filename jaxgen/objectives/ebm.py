"""Objectives of energy-based models trained with short-run dynamics (docs/methods/
shortrun_ebm.md §1). Energies are per example (`[B]`, p ∝ e^{−E}); negatives come from a
sampler the caller runs.

* `contrastive_loss`: eq. 1.1's surrogate mean E(x⁺) − mean E(sg(x⁻)).
* `energy_magnitude`: an optional α·(E(x⁺)² + E(x⁻)²) regulariser (off for the thesis's Ch. 5).
* `generator_loss`: eq. 1.13's E_{sg(θ)}(G_θ(x₀)): the energy, with its parameters frozen, of
  negatives that keep their dependence on θ through the unrolled sampler.
* `shortrun_ebm_loss`: eq. 1.14, the three together on ONE batch of negatives.
"""

import jax
import jax.numpy as jnp


def contrastive_loss(e_pos, e_neg) -> jax.Array:
    """mean E(x⁺) − mean E(x⁻) (eq. 1.1); `e_neg` must come from stop-gradient negatives.
    `e_pos` `[B⁺]`, `e_neg` `[B⁻]` -> scalar."""
    return jnp.mean(e_pos) - jnp.mean(e_neg)


def energy_magnitude(e_pos, e_neg, alpha: float) -> jax.Array:
    """α·(mean E(x⁺)² + mean E(x⁻)²), the energy-magnitude penalty (Du & Mordatch's); scalar."""
    return alpha * (jnp.mean(e_pos**2) + jnp.mean(e_neg**2))


def generator_loss(energy, params, x_neg) -> jax.Array:
    """mean E_{sg(θ)}(x⁻) (eq. 1.13) for negatives `x_neg` `[B, ...]` that are a differentiable
    function of θ (the unrolled sampler): the gradient flows only along the sampling path.
    `energy(params, x) -> [B]`."""
    return jnp.mean(energy(jax.lax.stop_gradient(params), x_neg))


def shortrun_ebm_loss(energy, params, x_pos, x_neg, *, use_generator_loss: bool, alpha=0.0):
    """Eq. 1.14 on one batch of negatives: E_θ(x⁺) − E_θ(sg(x⁻)) [+ α magnitude]
    [+ E_{sg(θ)}(x⁻)].

    Args:
      energy: `energy(params, x) -> [B]`.
      params: the energy's parameters θ.
      x_pos: data `[B⁺, ...]`; x_neg: negatives `[B⁻, ...]` (differentiable in θ when
        `use_generator_loss`; otherwise their θ-dependence, if any, is cut here).

    Returns:
      `(loss, metrics)`: scalar loss; `metrics` with `e_pos`, `e_neg` (batch means), `contrastive`
      and, when used, `generator`.
    """
    e_pos = energy(params, x_pos)
    e_neg = energy(params, jax.lax.stop_gradient(x_neg))
    contrastive = contrastive_loss(e_pos, e_neg)
    loss = contrastive
    metrics = {"e_pos": jnp.mean(e_pos), "e_neg": jnp.mean(e_neg), "contrastive": contrastive}
    if alpha:
        loss = loss + energy_magnitude(e_pos, e_neg, alpha)
    if use_generator_loss:
        gen = generator_loss(energy, params, x_neg)
        loss = loss + gen
        metrics["generator"] = gen
    return loss, {**metrics, "loss": loss}

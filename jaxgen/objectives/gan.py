"""Adversarial losses on discriminator logits, per example `[B]` (a logit is the log-odds
that the input is real)."""

import jax
import jax.numpy as jnp


def d_loss_nonsaturating(real_logits, fake_logits):
    """The discriminator's cross-entropy, softplus(−D(x)) + softplus(D(G(z))) `[B]`
    (Goodfellow et al. 2014, eq. 1 as a minimisation)."""
    return jax.nn.softplus(-real_logits) + jax.nn.softplus(fake_logits)


def g_loss_nonsaturating(fake_logits):
    """The generator's non-saturating loss softplus(−D(G(z))) = −log σ(D(G(z))) `[B]`."""
    return jax.nn.softplus(-fake_logits)


def optimal_d_logit(p_real, p_fake):
    """The logit of the optimal discriminator D*(x) = p_r / (p_r + p_g) for densities at x."""
    return jnp.log(p_real) - jnp.log(p_fake)

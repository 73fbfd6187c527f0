"""GLF's losses, each per example `[B]` (docs/methods/glf.md §1; thesis eqs. 3.5-3.7).

Images enter in [-1, 1] and are compared in [0, 1] units, the scale the thesis's summed losses
(and so its β and the balance against the latent NLL) are stated in.
"""

import jax
import jax.numpy as jnp

from jaxgen.flows import standard_normal_log_prob


def to_unit_interval(x):
    """[-1, 1] → [0, 1]."""
    return (x + 1.0) * 0.5


def reconstruction_sse(x, x_hat):
    """Σ_{h,w,c} (x̂ - x)² in [0, 1] units per example (eq. 1.3): `[B, H, W, C]` ×2 → `[B]`."""
    d = to_unit_interval(x_hat) - to_unit_interval(x)
    return jnp.sum(d.reshape(d.shape[0], -1) ** 2, -1)


def reconstruction_bce(x, x_hat, eps: float = 1e-6):
    """Σ_{h,w,c} binary cross-entropy of x̂ against x in [0, 1] units per example: `[B]`."""
    p = jnp.clip(to_unit_interval(x_hat), eps, 1.0 - eps)
    t = to_unit_interval(x)
    bce = -(t * jnp.log(p) + (1.0 - t) * jnp.log1p(-p))
    return jnp.sum(bce.reshape(bce.shape[0], -1), -1)


def perceptual_distance(taps_fn, x, x_hat):
    """Σ|x - x̂| + Σ_i Σ|φ_i(x) - φ_i(x̂)| per example (eq. 1.4); `taps_fn` maps images
    `[B, H, W, C]` in [-1, 1] to a sequence of frozen feature maps `[B, ...]`. Pixel term in
    [0, 1] units."""
    flat = lambda a: a.reshape(a.shape[0], -1)
    pixel = jnp.sum(jnp.abs(flat(to_unit_interval(x) - to_unit_interval(x_hat))), -1)
    taps_x, taps_hat = taps_fn(x), taps_fn(x_hat)
    feats = [jnp.sum(jnp.abs(flat(a - b)), -1) for a, b in zip(taps_x, taps_hat, strict=True)]
    return pixel + sum(feats)


def latent_nll(u, log_det):
    """-log p_η(z) = ½‖u‖² + (d/2) log 2π - log|det ∂f/∂z| for u = f(z) `[B, d]` (eq. 1.5)."""
    return -standard_normal_log_prob(u) - log_det


def posterior_entropy_term(log_var):
    """-½ Σ_j log σ_j² `[B]`: the negative entropy of q(z|x) up to a constant (eq. 1.8)."""
    return -0.5 * jnp.sum(log_var, -1)


def reparameterise(mean, log_var, key):
    """z = μ + exp(½ log σ²) ⊙ ε, ε ~ N(0, I): `[B, d]`."""
    return mean + jnp.exp(0.5 * log_var) * jax.random.normal(key, mean.shape, mean.dtype)


def glf_terms(reconstruction, nll, *, variant: str, beta: float, entropy=None):
    """The per-example loss of a variant, from its terms `[B]` (eqs. 1.6-1.9):

    glf:            rec + nll           (nll on stop-gradient latents; β has no effect)
    regularized:    β·rec + nll         (the flow's gradient reaches the encoder)
    vae_flow_prior: β·rec + nll + ent   (z sampled from q(z|x))
    """
    if variant == "glf":
        return reconstruction + nll
    if variant == "regularized":
        return beta * reconstruction + nll
    if variant == "vae_flow_prior":
        if entropy is None:
            raise ValueError("the vae_flow_prior loss needs the posterior entropy term")
        return beta * reconstruction + nll + entropy
    raise ValueError(f"unknown GLF variant {variant!r}")

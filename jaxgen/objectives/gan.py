"""Adversarial losses on discriminator logits, per example `[B]` (a logit is the log-odds
that the input is real), and the gradient regularisers of GANs and Denoising Diffusion GANs
(docs/methods/ddgan.md §4; thesis §2.5 and eq. 6.16).

* Losses, each a pair `d_loss(real_logits, fake_logits) -> [B]`, `g_loss(fake_logits) -> [B]`,
  picked by `gan_losses(kind)`:
    nonsaturating  D: softplus(−ℓ_r) + softplus(ℓ_f)   G: softplus(−ℓ_f)   (eqs. 6.3-6.5)
    minimax        D: as above                          G: −softplus(ℓ_f) = log(1 − D)
    hinge          D: relu(1 − ℓ_r) + relu(1 + ℓ_f)     G: −ℓ_f
    wgan           D: ℓ_f − ℓ_r                         G: −ℓ_f              (eqs. 2.82-2.83)
  With `wgan` the critic's Lipschitz bound is the caller's: add λ·`gradient_penalty`.
* `gradient_penalty`: WGAN-GP's (‖∇D(x̂)‖ − 1)² at random interpolates `[B]`.
* `r1_penalty`: ‖∇ₓℓ(x)‖² on real data `[B]` (eq. 6.16, without its γ/2); `r1_term` applies
  γ/2 and the lazy-regularisation schedule.

All losses are to be minimised. Batch reductions are the caller's.
"""

import jax
import jax.numpy as jnp

GAN_LOSS_KINDS = ("nonsaturating", "minimax", "hinge", "wgan")


def d_loss_nonsaturating(real_logits, fake_logits):
    """The discriminator's cross-entropy, softplus(−D(x)) + softplus(D(G(z))) `[B]`
    (Goodfellow et al. 2014, eq. 1 as a minimisation)."""
    return jax.nn.softplus(-real_logits) + jax.nn.softplus(fake_logits)


def g_loss_nonsaturating(fake_logits):
    """The generator's non-saturating loss softplus(−D(G(z))) = −log σ(D(G(z))) `[B]`."""
    return jax.nn.softplus(-fake_logits)


def g_loss_minimax(fake_logits):
    """The minimax generator loss log(1 − σ(ℓ_f)) = −softplus(ℓ_f) `[B]` (Goodfellow et al.
    2014, eq. 1; thesis eq. 2.73). Its ℓ-gradient −σ(ℓ_f) vanishes when D rejects the fakes
    (ℓ_f ≪ 0), which is why the non-saturating form is the default."""
    return -jax.nn.softplus(fake_logits)


def d_loss_hinge(real_logits, fake_logits):
    """The hinge discriminator loss relu(1 − ℓ_r) + relu(1 + ℓ_f) `[B]` (Lim & Ye 2017;
    Miyato et al. 2018). Pointwise its optimum is ℓ = +1 where p_r > p_g and −1 where p_r < p_g."""
    return jax.nn.relu(1.0 - real_logits) + jax.nn.relu(1.0 + fake_logits)


def g_loss_hinge(fake_logits):
    """The hinge generator loss −ℓ_f `[B]` (Lim & Ye 2017)."""
    return -fake_logits


def d_loss_wgan(real_logits, fake_logits):
    """The WGAN critic loss ℓ_f − ℓ_r `[B]`: minus the Kantorovich-Rubinstein objective
    (Arjovsky et al. 2017; thesis eq. 2.82). Only meaningful with a Lipschitz bound on the
    critic, e.g. λ·`gradient_penalty` (Gulrajani et al. 2017, λ = 10)."""
    return fake_logits - real_logits


def g_loss_wgan(fake_logits):
    """The WGAN generator loss −ℓ_f `[B]` (thesis eq. 2.83)."""
    return -fake_logits


def optimal_d_logit(p_real, p_fake):
    """The logit of the optimal discriminator D*(x) = p_r / (p_r + p_g) for densities at x."""
    return jnp.log(p_real) - jnp.log(p_fake)


_LOSSES = {
    "nonsaturating": (d_loss_nonsaturating, g_loss_nonsaturating),
    # the minimax game's D maximises the same value V as the non-saturating one (eq. 2.73)
    "minimax": (d_loss_nonsaturating, g_loss_minimax),
    "hinge": (d_loss_hinge, g_loss_hinge),
    "wgan": (d_loss_wgan, g_loss_wgan),
}


def gan_losses(kind: str):
    """The `(d_loss, g_loss)` pair of `kind` in `GAN_LOSS_KINDS`; see the module docstring."""
    if kind not in _LOSSES:
        raise ValueError(f"unknown GAN loss {kind!r}; expected one of {', '.join(GAN_LOSS_KINDS)}")
    return _LOSSES[kind]


def _per_example_grad(logit_fn, x, name):
    """∇ₓ Σᵢ ℓ(x)ᵢ `[B, ...]`; row i is ∂ℓᵢ/∂xᵢ when examples do not interact in `logit_fn`."""

    def total(x):
        logits = logit_fn(x)
        if logits.shape != x.shape[:1]:
            raise ValueError(
                f"{name}: the logit function must return logits [B] = {x.shape[:1]}; "
                f"got shape {logits.shape}"
            )
        return jnp.sum(logits)

    return jax.grad(total)(x)


def _sq_norm(g):
    """Σ over all but the batch axis of g², in float32: `[B, ...] -> [B]`."""
    g = g.astype(jnp.float32)
    return jnp.sum(g.reshape(g.shape[0], -1) ** 2, axis=-1)


def gradient_penalty(critic_fn, x_real, x_fake, key):
    """WGAN-GP's (‖∇ₓ̂ D(x̂)‖₂ − 1)² `[B]` (Gulrajani et al. 2017, eq. 3, without its λ) at
    x̂ = ε·x_real + (1 − ε)·x_fake, one ε ~ U[0, 1] per example.

    Args:
      critic_fn: `critic_fn(x) -> [B]` logits; it closes over the critic's parameters, so the
        penalty is differentiable in them (double backpropagation).
      x_real, x_fake: `[B, ...]` of one shape (in the critic's step, stop-gradient fakes).
      key: a PRNG key for ε.

    The norm is over all non-batch axes. A zero gradient gives penalty 1 and a zero (not NaN)
    parameter gradient.
    """
    if x_real.shape != x_fake.shape or x_real.ndim < 1:
        raise ValueError(
            f"gradient_penalty: x_real and x_fake must share a shape [B, ...]; "
            f"got {x_real.shape} and {x_fake.shape}"
        )
    eps = jax.random.uniform(key, x_real.shape[:1], x_real.dtype)
    eps = eps.reshape((-1,) + (1,) * (x_real.ndim - 1))
    x_hat = eps * x_real + (1.0 - eps) * x_fake
    sq = _sq_norm(_per_example_grad(critic_fn, x_hat, "gradient_penalty"))
    # ‖g‖ = √sq has an infinite derivative at sq = 0: take it at a safe point there (norm 0)
    norm = jnp.where(sq > 0, jnp.sqrt(jnp.where(sq > 0, sq, 1.0)), 0.0)
    return (norm - 1.0) ** 2


def r1_penalty(logit_fn, x_real):
    """R1's ‖∇ₓ ℓ(x)‖² `[B]` on real data (Mescheder et al. 2018; thesis eq. 6.16 without γ/2).

    The gradient is of the logit sum Σᵢ ℓᵢ w.r.t. `x_real` `[B, ...]`, so row i is ∂ℓᵢ/∂xᵢ when
    examples are independent; a layer that mixes the batch (minibatch std) adds the other rows'
    ∂ℓⱼ/∂xᵢ, as in DDGAN's training (docs/methods/ddgan.md §4). The squared norm is over all
    non-batch axes, in float32.

    Args:
      logit_fn: `logit_fn(x) -> [B]`, closing over the discriminator's parameters (the penalty
        is differentiable in them) and any conditioning.
      x_real: `[B, ...]`, the real inputs the gradient is taken with respect to.

    For DDGAN (eq. 6.16) the gradient is w.r.t. the real x_{t−1} only, not the conditioning x_t:
    pass `lambda x: D(params, x, x_t, t)` with x_t and t closed over, and x_real = x_{t−1}.
    """
    if x_real.ndim < 1:
        raise ValueError(f"r1_penalty: x_real must be [B, ...]; got shape {x_real.shape}")
    return _sq_norm(_per_example_grad(logit_fn, x_real, "r1_penalty"))


def r1_term(penalty, *, gamma: float, step, interval: int, scale_by_interval: bool = False):
    """γ/2 · `penalty` on steps with `step % interval == 0`, else 0: lazy R1 (eq. 6.16).

    Args:
      penalty: `r1_penalty`'s `[B]` (or its batch mean, a scalar); the shape is kept.
      gamma: γ ≥ 0 (a Python number; thesis Table 6.8: 0.05 CIFAR-10, 1 at 256²).
      step: the training step, an int or a traced integer array: the choice is a `jnp.where`,
        so one compiled training step serves regularised and plain steps alike.
      interval: the lazy-regularisation interval ≥ 1 (1 = every step). DDGAN's training leaves
        the weight unscaled, so the effective γ is γ/interval (docs/methods/ddgan.md §4).
      scale_by_interval: multiply by `interval` on the regularised steps (Karras et al. 2020,
        StyleGAN2's lazy regularisation), keeping the average weight γ/2.

    The penalty is computed on every step even where it is dropped; to save the compute, call
    this only on regularised steps (a Python-level or `lax.cond` branch).
    """
    if interval < 1:
        raise ValueError(f"r1_term: interval must be an integer >= 1; got {interval}")
    if gamma < 0:
        raise ValueError(f"r1_term: gamma must be >= 0; got {gamma}")
    weight = 0.5 * gamma * (interval if scale_by_interval else 1)
    return jnp.where(jnp.asarray(step) % interval == 0, weight * penalty, 0.0)

"""FDRL: Bregman density-ratio losses and the f-divergence flow's potential (Heng et al.;
docs/methods/fdrl.md §2.2-§2.3).

Conventions (docs/methods/fdrl.md eq. (1)): q = generated particles (the numerator), p = data (the
denominator), r(x) = q(x)/p(x) is *large on generated samples*, and particles descend f'(r).
The network's raw output o is r itself (LSIF) or log r (LR, UKL).
"""

import jax
import jax.numpy as jnp

BREGMAN_LOSSES = ("lsif", "lr", "ukl")
DIVERGENCES = ("pearson", "kl", "js", "logd")
# Appendix C: log-parameterised losses go with KL / JS / logD, the raw ratio with Pearson χ²
PAIRINGS = {"lsif": ("pearson",), "lr": ("kl", "js", "logd"), "ukl": ("kl", "js", "logd")}


def check_pairing(loss: str, divergence: str) -> None:
    """One clear error for an unknown or numerically unsafe (loss, divergence) pair."""
    if loss not in BREGMAN_LOSSES:
        raise ValueError(f"loss={loss!r}: choose one of {list(BREGMAN_LOSSES)}")
    if divergence not in DIVERGENCES:
        raise ValueError(f"divergence={divergence!r}: choose one of {list(DIVERGENCES)}")
    if divergence not in PAIRINGS[loss]:
        raise ValueError(
            f"loss={loss!r} with divergence={divergence!r}: {loss} goes with "
            f"{list(PAIRINGS[loss])} (the ratio parameterisation must match; "
            "docs/methods/fdrl.md §2.3)"
        )


def bregman_loss(out_q, out_p, loss: str):
    """Paper eq. (11): L(θ) = Ê_p[g'(r) r − g(r)] − Ê_q[g'(r)] for raw outputs `out_q` `[B]` (on
    generated particles) and `out_p` `[B]` (on data). Returns `(loss, (p_term, q_term))`.

    - lsif, g(y) = (y−1)²/2, o = r (paper eq. 18): ½ Ê_p[r²] − Ê_q[r]
    - lr, logistic g, o = log r (BCE, q = 1):       Ê_p[softplus(o)] + Ê_q[softplus(−o)]
    - ukl, g(y) = y log y − y, o = log r (code):    Ê_p[exp(o)] − Ê_q[o]
    """
    if loss == "lsif":
        p_term, q_term = 0.5 * jnp.mean(out_p**2), -jnp.mean(out_q)
    elif loss == "lr":
        p_term, q_term = jnp.mean(jax.nn.softplus(out_p)), jnp.mean(jax.nn.softplus(-out_q))
    elif loss == "ukl":
        p_term, q_term = jnp.mean(jnp.exp(out_p)), -jnp.mean(out_q)
    else:
        raise ValueError(f"loss={loss!r}: choose one of {list(BREGMAN_LOSSES)}")
    return p_term + q_term, (p_term, q_term)


def ratio(out, loss: str):
    """r = q/p from the raw output `[B]`: o itself (lsif) or exp(o) (lr, ukl)."""
    return out if loss == "lsif" else jnp.exp(out)


def f_prime(out, divergence: str):
    """f'(r) in terms of the raw output, additive constants dropped (they vanish under ∇ₓ;
    docs/methods/fdrl.md eq. (3)): Pearson 2o (o = r); KL o; JS log σ(o); logD softplus(o)
    (o = log r)."""
    if divergence == "pearson":
        return 2.0 * out
    if divergence == "kl":
        return out
    if divergence == "js":
        return jax.nn.log_sigmoid(out)
    if divergence == "logd":
        return jax.nn.softplus(out)
    raise ValueError(f"divergence={divergence!r}: choose one of {list(DIVERGENCES)}")


def conditional_output(out, class_log_prob, num_classes: int, loss: str, phi: float = 0.1):
    """Raw output of the class-conditional ratio r(x|y) = r(x) / (N p(y|x)^φ) (paper eqs. 12,
    29-31; docs/methods/fdrl.md §4.1): Bayes with a uniform class prior gives
    N p(y|x) = p(x|y)/p(x), so with φ = 1 r(x|y) = q̃(x)/p(x|y). `out` `[B]` is r (lsif) or
    log r; `class_log_prob` `[B]` is log p(y|x) of the wanted class; φ = 0.1 rescales the
    classifier gradient (the code's value)."""
    shift = -jnp.log(num_classes) - phi * class_log_prob  # log of 1 / (N p(y|x)^φ)
    return out * jnp.exp(shift) if loss == "lsif" else out + shift


def flow_drift(out_fn, x, divergence: str):
    """−∇ₓ f'(r_θ(x)) `[N, ...]`, the drift of the stale flow (paper eq. (5)) for
    `out_fn: [N, ...] → [N]` (per-example: the sum's gradient is each example's own gradient)."""
    return -jax.grad(lambda z: jnp.sum(f_prime(out_fn(z), divergence)))(x)

"""Optax builders: Adam / AdamW / LAMB with `eps`, decoupled weight decay or coupled L2, linear
warm-up, constant / cosine-with-floor / step / milestone decay, and global-norm clipping.

Plain keyword arguments only (no config objects): `jaxgen.methods.common.make_tx` maps a recipe's
typed `Optim` section onto `make_optimizer`.
"""

import jax
import optax

from jaxgen.optim.moment_clip import clip_by_second_moment

OPTIMIZERS = ("adam", "adamw", "lamb")
DECAYS = ("constant", "cosine", "step", "milestones")


def learning_rate_schedule(
    lr: float,
    *,
    warmup_steps: int = 0,
    decay: str = "constant",
    total_steps: int = 0,
    min_lr_ratio: float = 0.0,
    decay_steps: int = 0,
    decay_factor: float = 0.1,
    milestones: tuple[int, ...] = (),
):
    """Linear warm-up from 0 to `lr` over `warmup_steps`, then

    - `constant`;
    - `cosine`: from `lr` to `min_lr_ratio · lr` at `total_steps`;
    - `step`: × `decay_factor` every `decay_steps`;
    - `milestones`: × `decay_factor` at each step of `milestones` (e.g. FDRL's 80k, 90k).

    Every step count is absolute (from step 0, warm-up included).
    """
    if lr <= 0:
        raise ValueError(f"learning rate must be positive, got {lr}")
    if decay == "constant":
        after = optax.constant_schedule(lr)
    elif decay == "cosine":
        if total_steps <= warmup_steps:
            raise ValueError(f"decay='cosine' needs total_steps > warmup_steps, got {total_steps}")
        after = optax.cosine_decay_schedule(lr, total_steps - warmup_steps, alpha=min_lr_ratio)
    elif decay == "step":
        if decay_steps <= 0:
            raise ValueError("decay='step' needs decay_steps > 0")
        # join_schedules counts from the end of warm-up: shift back to absolute steps
        after = lambda n: lr * decay_factor ** ((n + warmup_steps) // decay_steps)
    elif decay == "milestones":
        if not milestones or list(milestones) != sorted(set(milestones)) or milestones[0] <= 0:
            raise ValueError(f"decay='milestones' needs increasing steps > 0, got {milestones}")
        # boundaries count from the end of warm-up in join_schedules; shift them back
        bounds = {int(m) - warmup_steps: decay_factor for m in milestones}
        after = optax.piecewise_constant_schedule(lr, bounds)
    else:
        raise ValueError(f"unknown decay {decay!r}; choose one of {list(DECAYS)}")
    if warmup_steps <= 0:
        return after
    warm = optax.linear_schedule(0.0, lr, warmup_steps)
    return optax.join_schedules([warm, after], [warmup_steps])


def make_optimizer(
    name: str = "adam",
    lr: float = 1e-3,
    *,
    b1: float = 0.9,
    b2: float = 0.999,
    eps: float = 1e-8,
    weight_decay: float = 0.0,
    l2: float = 0.0,
    warmup_steps: int = 0,
    decay: str = "constant",
    total_steps: int = 0,
    min_lr_ratio: float = 0.0,
    decay_steps: int = 0,
    decay_factor: float = 0.1,
    milestones: tuple[int, ...] = (),
    grad_clip: float = 0.0,
    moment_clip: float = 0.0,
    moment_clip_offset: float = 0.1,
) -> optax.GradientTransformation:
    """The optimizer `name` with its learning-rate schedule.

    `weight_decay` is decoupled (AdamW / LAMB; plain `adam` has none and refuses it); `l2` is the
    coupled L2 penalty, `l2 · θ` added to the gradient before the optimizer
    (`optax.add_decayed_weights` first, as torch's `Adam(weight_decay=...)`). `grad_clip > 0`
    clips the global gradient norm first. `moment_clip > 0` (adam only) then clips each element to
    ±(moment_clip·√v̂ + moment_clip_offset) from Adam's bias-corrected second moment, before the L2
    term (Du & Mordatch's clip, VAEBM: 3 and 0.1; `jaxgen.optim.moment_clip`).
    """
    if name not in OPTIMIZERS:
        raise ValueError(f"unknown optimizer {name!r}; choose one of {list(OPTIMIZERS)}")
    if name == "adam" and weight_decay:
        raise ValueError(
            f"weight_decay={weight_decay}: adam has no decoupled weight decay; use adamw or "
            "lamb, or l2 for the coupled penalty"
        )
    sched = learning_rate_schedule(
        lr,
        warmup_steps=warmup_steps,
        decay=decay,
        total_steps=total_steps,
        min_lr_ratio=min_lr_ratio,
        decay_steps=decay_steps,
        decay_factor=decay_factor,
        milestones=tuple(milestones),
    )
    if name == "adam":
        opt = optax.adam(sched, b1=b1, b2=b2, eps=eps)
    elif name == "adamw":
        opt = optax.adamw(sched, b1=b1, b2=b2, eps=eps, weight_decay=weight_decay)
    else:
        opt = optax.lamb(sched, b1=b1, b2=b2, eps=eps, weight_decay=weight_decay)
    if moment_clip > 0 and name != "adam":
        raise ValueError(
            f"moment_clip={moment_clip}: the second-moment clip wraps adam, not {name}"
        )
    decay = [optax.add_decayed_weights(l2)] if l2 > 0 else []
    first = [optax.clip_by_global_norm(grad_clip)] if grad_clip > 0 else []
    if moment_clip <= 0:  # one flat chain (the optimizer-state layout of saved runs)
        return optax.chain(*first, *decay, opt) if first or decay else opt
    inner = optax.chain(*decay, opt) if decay else opt
    opt = clip_by_second_moment(inner, b2=b2, num_std=moment_clip, offset=moment_clip_offset)
    return optax.chain(*first, opt) if first else opt


def adam_minimise(loss, x0, *, lr: float, steps: int):
    """`x` after `steps` Adam steps of rate `lr` on the scalar `loss(x)` from `x0` (any pytree;
    one `lax.scan`, jittable). For optimising inputs, e.g. a latent whose decoding matches an
    image."""
    tx = optax.adam(lr)

    def step(carry, _):
        x, opt = carry
        updates, opt = tx.update(jax.grad(loss)(x), opt)
        return (optax.apply_updates(x, updates), opt), None

    (x, _), _ = jax.lax.scan(step, (x0, tx.init(x0)), None, length=steps)
    return x

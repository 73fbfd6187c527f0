"""Optax builders: Adam / AdamW / LAMB with warm-up, decay and global-norm clipping."""

import optax

OPTIMIZERS = ("adam", "adamw", "lamb")
DECAYS = ("constant", "cosine", "step")


def learning_rate_schedule(
    lr: float,
    *,
    warmup_steps: int = 0,
    decay: str = "constant",
    total_steps: int = 0,
    decay_steps: int = 0,
    decay_factor: float = 0.1,
):
    """Linear warm-up from 0 to `lr`, then `constant`, `cosine` (to 0 at `total_steps`) or
    `step` (× `decay_factor` every `decay_steps`)."""
    if lr <= 0:
        raise ValueError(f"learning rate must be positive, got {lr}")
    if decay == "constant":
        after = optax.constant_schedule(lr)
    elif decay == "cosine":
        after = optax.cosine_decay_schedule(lr, max(total_steps - warmup_steps, 1))
    elif decay == "step":
        if decay_steps <= 0:
            raise ValueError("decay='step' needs decay_steps > 0")
        after = optax.exponential_decay(lr, decay_steps, decay_factor, staircase=True)
    else:
        raise ValueError(f"unknown decay {decay!r}; choose constant, cosine or step")
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
    warmup_steps: int = 0,
    decay: str = "constant",
    total_steps: int = 0,
    decay_steps: int = 0,
    decay_factor: float = 0.1,
    grad_clip: float = 0.0,
) -> optax.GradientTransformation:
    """The optimizer named `name` (adam, adamw, lamb) with schedule and optional clipping."""
    if name not in OPTIMIZERS:
        raise ValueError(f"unknown optimizer {name!r}; choose one of {list(OPTIMIZERS)}")
    sched = learning_rate_schedule(
        lr,
        warmup_steps=warmup_steps,
        decay=decay,
        total_steps=total_steps,
        decay_steps=decay_steps,
        decay_factor=decay_factor,
    )
    if name == "adam":
        opt = optax.adam(sched, b1=b1, b2=b2, eps=eps)
    elif name == "adamw":
        opt = optax.adamw(sched, b1=b1, b2=b2, eps=eps, weight_decay=weight_decay)
    else:
        opt = optax.lamb(sched, b1=b1, b2=b2, eps=eps, weight_decay=weight_decay)
    if grad_clip > 0:
        opt = optax.chain(optax.clip_by_global_norm(grad_clip), opt)
    return opt

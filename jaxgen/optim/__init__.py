"""Optimizers and per-network training state (below `methods/`, which builds on them)."""

from jaxgen.optim.model_state import (
    ModelState,
    all_finite,
    apply_gradients,
    ema_decay,
    init_model_state,
)
from jaxgen.optim.optimizers import (
    DECAYS,
    OPTIMIZERS,
    adam_minimise,
    learning_rate_schedule,
    make_optimizer,
)

__all__ = [
    "DECAYS",
    "OPTIMIZERS",
    "ModelState",
    "adam_minimise",
    "all_finite",
    "apply_gradients",
    "ema_decay",
    "init_model_state",
    "learning_rate_schedule",
    "make_optimizer",
]

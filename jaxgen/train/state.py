"""Training-state pytrees: one `ModelState` per trained network, EMA with warm-up."""

from typing import Any

import jax
import jax.numpy as jnp
import optax
from flax import struct


@struct.dataclass
class ModelState:
    """Parameters, optimizer state and EMA parameters of one network."""

    params: Any
    opt_state: Any
    ema_params: Any


def init_model_state(params, tx: optax.GradientTransformation) -> ModelState:
    ema = jax.tree.map(jnp.copy, params)  # its own buffers, so the state can be donated
    return ModelState(params=params, opt_state=tx.init(params), ema_params=ema)


def ema_decay(step, max_decay: float):
    """EMA decay with warm-up, min(max_decay, (1 + n) / (10 + n)) (score_sde / VAPO code)."""
    n = jnp.asarray(step, jnp.float32)
    return jnp.minimum(max_decay, (1.0 + n) / (10.0 + n))


def apply_gradients(
    ms: ModelState, grads, tx: optax.GradientTransformation, *, step, ema_rate: float
) -> tuple[ModelState, jax.Array]:
    """One optimizer update and EMA update. Returns `(new_state, global_grad_norm)`."""
    updates, opt_state = tx.update(grads, ms.opt_state, ms.params)
    params = optax.apply_updates(ms.params, updates)
    decay = ema_decay(step, ema_rate)
    ema = jax.tree.map(lambda e, p: decay * e + (1.0 - decay) * p, ms.ema_params, params)
    return ModelState(params, opt_state, ema), optax.tree.norm(grads)


def all_finite(tree) -> jax.Array:
    """True when every floating-point leaf of `tree` is finite (a scalar bool)."""
    arrays = [jnp.asarray(x) for x in jax.tree.leaves(tree)]
    leaves = [jnp.all(jnp.isfinite(x)) for x in arrays if jnp.issubdtype(x.dtype, jnp.inexact)]
    return jnp.all(jnp.stack(leaves)) if leaves else jnp.asarray(True)

"""Training-state pytrees: one `ModelState` per trained network, EMA with warm-up."""

from typing import Any

import jax
import jax.numpy as jnp
import optax
from flax import struct


@struct.dataclass
class ModelState:
    """One network: parameters, optimizer state, EMA parameters (None without EMA) and its
    non-parameter variables (e.g. `{"batch_stats": ...}`; `{}` when it has none), which are
    checkpointed and restored with the rest; and, as static fields (not leaves, never
    checkpointed), the optimizer `tx` that owns `opt_state` and the EMA rate, fixed at `init`
    so a train step cannot build a second, different optimizer (the vdm `TrainState` pattern).
    A state built without them (`tx=None`) is updated with the free `apply_gradients`."""

    params: Any
    opt_state: Any
    ema_params: Any = None
    variables: Any = struct.field(default_factory=dict)
    tx: Any = struct.field(pytree_node=False, default=None)
    ema_rate: float = struct.field(pytree_node=False, default=0.0)

    def eval_params(self, use_ema: bool = True):
        """The EMA parameters when asked for and kept, else the raw ones."""
        return self.ema_params if use_ema and self.ema_params is not None else self.params

    def apply_gradients(self, grads, *, step, variables=None) -> tuple["ModelState", jax.Array]:
        """One update with the state's own optimizer and EMA rate (see `apply_gradients`).
        Returns `(new_state, global_grad_norm)`."""
        if self.tx is None:
            raise ValueError(
                "ModelState.apply_gradients: this state has no optimizer; build it with "
                "init_model_state(params, tx, ...)"
            )
        return apply_gradients(
            self, grads, self.tx, step=step, ema_rate=self.ema_rate, variables=variables
        )


def init_model_state(
    params, tx: optax.GradientTransformation, *, ema_rate: float = 0.999, variables=None
) -> ModelState:
    """Fresh state of one network, owning `tx` and `ema_rate`; `ema_rate=0` keeps no EMA
    copy."""
    ema = ema_rate > 0
    copy = jax.tree.map(jnp.copy, params) if ema else None  # own buffers: the state is donated
    variables = {} if variables is None else variables
    return ModelState(params, tx.init(params), copy, variables, tx=tx, ema_rate=float(ema_rate))


def ema_decay(step, max_decay: float):
    """EMA decay with warm-up, min(max_decay, (1 + n) / (10 + n)) (score_sde / VAPO code)."""
    n = jnp.asarray(step, jnp.float32)
    return jnp.minimum(max_decay, (1.0 + n) / (10.0 + n))


def apply_gradients(
    ms: ModelState,
    grads,
    tx: optax.GradientTransformation,
    *,
    step,
    ema_rate: float,
    variables=None,
) -> tuple[ModelState, jax.Array]:
    """One optimizer update and EMA update (when the state keeps one); `variables` replaces the
    network's non-parameter variables (e.g. updated BatchNorm statistics).
    Returns `(new_state, global_grad_norm)`."""
    updates, opt_state = tx.update(grads, ms.opt_state, ms.params)
    params = optax.apply_updates(ms.params, updates)
    ema = ms.ema_params
    if ema is not None:
        decay = ema_decay(step, ema_rate)
        ema = jax.tree.map(lambda e, p: decay * e + (1.0 - decay) * p, ema, params)
    new_vars = ms.variables if variables is None else variables
    new = ms.replace(params=params, opt_state=opt_state, ema_params=ema, variables=new_vars)
    return new, optax.tree.norm(grads)


def all_finite(tree) -> jax.Array:
    """True when every floating-point leaf of `tree` is finite (a scalar bool)."""
    arrays = [jnp.asarray(x) for x in jax.tree.leaves(tree)]
    leaves = [jnp.all(jnp.isfinite(x)) for x in arrays if jnp.issubdtype(x.dtype, jnp.inexact)]
    return jnp.all(jnp.stack(leaves)) if leaves else jnp.asarray(True)

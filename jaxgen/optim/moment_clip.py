"""Du & Mordatch's per-element gradient clip, read from Adam's own second moment (VAEBM's stage
two, thesis §4.4.3; docs/methods/vaebm.md eq. (9)).

Before the n-th update (n = 0, 1, ...), each gradient element g is clipped to

    ± (num_std · √v̂ + offset),    v̂ = ν / (1 − β₂ⁿ),

where ν is Adam's running second moment after the n earlier updates (so v̂ is bias-corrected as
in Adam's step); the first update (n = 0, no moment yet) passes the gradient unclipped. The clip
sees the raw gradient: a coupled L2 term is added after it, inside the wrapped optimizer (as
PyTorch's `Adam(weight_decay=...)` adds it inside `step()`, after the clip).
"""

import jax
import jax.numpy as jnp
import optax


def _adam_state(state) -> optax.ScaleByAdamState:
    """The one `ScaleByAdamState` inside an optimizer state (a `ValueError` for none or several)."""
    is_adam = lambda s: isinstance(s, optax.ScaleByAdamState)
    found = [s for s in jax.tree_util.tree_leaves(state, is_leaf=is_adam) if is_adam(s)]
    if len(found) != 1:
        raise ValueError(
            f"clip_by_second_moment wraps an optimizer with exactly one Adam moment state; "
            f"found {len(found)}"
        )
    return found[0]


def second_moment_bound(nu, count, *, b2: float, num_std: float, offset: float):
    """The clip bound `num_std · √(ν / (1 − b2^count)) + offset` of every element (same pytree as
    `nu`); `count` ≥ 1."""
    correction = 1.0 - jnp.asarray(b2, jnp.float32) ** count.astype(jnp.float32)
    return jax.tree.map(lambda v: num_std * jnp.sqrt(v / correction) + offset, nu)


def clip_by_second_moment(
    inner: optax.GradientTransformation,
    *,
    b2: float,
    num_std: float = 3.0,
    offset: float = 0.1,
) -> optax.GradientTransformation:
    """`inner` (an optimizer with one `scale_by_adam` of decay `b2`) whose gradients are first
    clipped per element to ±(num_std·√v̂ + offset) from its own second moment; skipped at the
    first update. The state is `inner`'s own (same pytree structure as without the clip)."""
    if not num_std > 0 or not offset >= 0:
        raise ValueError(
            f"clip_by_second_moment: num_std must be > 0 and offset >= 0, got {num_std}, {offset}"
        )

    def update(grads, state, params=None):
        adam = _adam_state(state)
        count = jnp.maximum(adam.count, 1)  # the value at count 0 is discarded below
        bound = second_moment_bound(adam.nu, count, b2=b2, num_std=num_std, offset=offset)
        started = adam.count > 0
        clipped = jax.tree.map(lambda g, b: jnp.where(started, jnp.clip(g, -b, b), g), grads, bound)
        return inner.update(clipped, state, params)

    return optax.GradientTransformation(inner.init, update)

"""A replay buffer of chain starts with static shapes (VAEBM's persistent ε_z, thesis §4.4.3;
docs/methods/vaebm.md eq. (7)): a FIFO ring of capacity N ≫ B, and per example a Bernoulli(p)
choice between a stored start and a fresh N(0, I) draw.

The thesis's code draws n ~ Binomial(B, p) stored rows without replacement and concatenates them
with B − n fresh rows. Here each row is replayed with probability p on its own (the same
Binomial(B, p) count, shapes static) and the stored rows come from B distinct slots (the B
smallest of N uniform scores over the filled slots), so nothing is drawn twice in one batch.
While fewer than B slots are filled, rows without a distinct slot start fresh.
"""

import jax
import jax.numpy as jnp


def replay_probability(step, *, p_max: float, anneal_steps: int):
    """p = min(p_max, p_max · step / anneal_steps): the linear ramp of the replay probability
    (p_max at once with anneal_steps 0)."""
    if anneal_steps <= 0:
        return jnp.asarray(p_max, jnp.float32)
    ramp = p_max * jnp.asarray(step, jnp.float32) / anneal_steps
    return jnp.minimum(jnp.asarray(p_max, jnp.float32), ramp)


def buffer_init(capacity: int, shape: tuple, dtype=jnp.float32) -> dict:
    """An empty buffer: `{"rows": [N, *shape] zeros, "size": 0, "head": 0}`."""
    if capacity < 1:
        raise ValueError(f"replay buffer capacity must be >= 1, got {capacity}")
    return {
        "rows": jnp.zeros((capacity, *shape), dtype),
        "size": jnp.zeros((), jnp.int32),
        "head": jnp.zeros((), jnp.int32),
    }


def buffer_bytes(capacity: int, shape: tuple, itemsize: int = 4) -> int:
    """Bytes the buffer's rows take."""
    n = capacity * itemsize
    for d in shape:
        n *= int(d)
    return n


def buffer_draw(buffer: dict, key, fresh, want):
    """`(starts [B, ...], replayed [B] bool)`: row i is a stored start where `want[i]` (the
    caller's per-example Bernoulli(p) draw) and a filled slot is left for it, from B distinct
    filled slots chosen uniformly; else `fresh[i]`."""
    b, capacity = fresh.shape[0], buffer["rows"].shape[0]
    filled = jnp.arange(capacity) < buffer["size"]
    scores = jnp.where(filled, jax.random.uniform(key, (capacity,)), 2.0)
    k = min(b, capacity)
    neg_best, slots = jax.lax.top_k(-scores, k)  # the k smallest scores: distinct slots
    valid = neg_best > -2.0  # a filled slot
    if k < b:  # more rows than slots: the rest start fresh
        slots = jnp.concatenate([slots, jnp.zeros((b - k,), slots.dtype)])
        valid = jnp.concatenate([valid, jnp.zeros((b - k,), bool)])
    replayed = want & valid
    mask = replayed.reshape((b,) + (1,) * (fresh.ndim - 1))
    return jnp.where(mask, buffer["rows"][slots], fresh), replayed


def buffer_push(buffer: dict, rows) -> dict:
    """The buffer with `rows` `[B, ...]` written at its head (FIFO: the oldest are overwritten)."""
    capacity, b = buffer["rows"].shape[0], rows.shape[0]
    index = (buffer["head"] + jnp.arange(b)) % capacity
    if b > capacity:  # only the last `capacity` rows survive; write just those
        rows, index = rows[-capacity:], index[-capacity:]
    return {
        "rows": buffer["rows"].at[index].set(rows.astype(buffer["rows"].dtype)),
        "size": jnp.minimum(buffer["size"] + b, capacity),
        "head": (buffer["head"] + b) % capacity,
    }

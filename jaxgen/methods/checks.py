"""Entry checks of the recipe kit (re-exported by `jaxgen.methods.common`): the example shape a
state carries, and the checks a recipe's `init`, `train_step` and `sample` run on their
arguments. `check_batch`, `check_count`, `check_state_batch`, `sample_shape` and
`check_network_input` are static (Python on `.shape` / `.dtype`: they work on tracers at trace
time and add nothing to the compiled program); `check_inputs` is the opt-in host-side check of a
batch's values (non-finite, images outside [-1, 1]) that the CLIs run on the first batch.
"""

from collections.abc import Mapping

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct


def example_shape_field():
    """A recipe `State`'s `example_shape`: one training example's shape `[...]`, fixed by `init`
    from its example batch. Static (part of the pytree's structure, not a leaf): checkpoints
    hold no copy, `jax.eval_shape(init, ...)` carries it, and every entry check reads it here
    instead of from a parameter's shape or name."""
    return struct.field(pytree_node=False)


def check_state_batch(batch, state, who: str, **kwargs):
    """`check_batch(batch, who, ...)` against `state.example_shape`; returns `batch["x"]`."""
    return check_batch(batch, who, example_shape=state.example_shape, **kwargs)


def sample_shape(state, shape, who: str) -> tuple:
    """A sampler's `shape` argument checked against `state.example_shape`; None (the default
    everywhere) means the state's own example shape."""
    want = state.example_shape
    return check_shape(want if shape is None else shape, who, example_shape=want)


# ---------------------------------------------------------------- entry checks


def _batch_x(batch, who: str):
    """`batch["x"]`, or a `ValueError` when `batch` is not a dict holding an array `"x"`."""
    if not isinstance(batch, Mapping) or "x" not in batch:
        got = sorted(batch) if isinstance(batch, Mapping) else type(batch).__name__
        raise ValueError(f"{who}: batch must be a dict with an array 'x' [B, ...], got {got}")
    x = batch["x"]
    if not (hasattr(x, "shape") and hasattr(x, "dtype")):
        raise ValueError(f"{who}: batch['x'] must be an array [B, ...], got {type(x).__name__}")
    return x


def _show(shape) -> str:
    """A shape as Python prints a tuple, wildcards unquoted: `(2,)`, `(H, W, 3)`."""
    return f"({', '.join(map(str, shape))}{',' if len(shape) == 1 else ''})"


def _fits(example: tuple, example_shape=None, example_size=None) -> str | None:
    """What one example of shape `example` should be, or None when it fits. `example_shape`
    holds ints and wildcards (strings such as "H", any size); `example_size` is the number of
    values of a flattened example."""
    if example_shape is not None:
        ok = len(example) == len(example_shape) and all(
            isinstance(want, str) or got == want
            for got, want in zip(example, example_shape, strict=True)
        )
        if not ok:
            return f"examples of shape {_show(example_shape)}"
    if example_size is not None and int(np.prod(example, dtype=np.int64)) != example_size:
        return f"examples of {example_size} values (flattened; got {int(np.prod(example))})"
    return None


def check_batch(batch, who: str, *, example_shape=None, example_size=None, batch_size=None):
    """Static checks of a data batch at trace time (shapes and dtypes only: free under `jit`).

    Args:
      batch: `{"x": [B, ...]}`; `x` a floating array (or tracer) with B >= 1.
      who: the function checked, e.g. `"vapo.train_step"`; it starts every message.
      example_shape: the shape `[...]` one example must have; strings are wildcards (`("H", "W",
        3)`). None: not checked.
      example_size: the number of values one example must have (networks that flatten).
      batch_size: the B the state was built for (a batch-shaped state field), or None.

    Returns:
      `batch["x"]`, unchanged.

    Raises:
      ValueError: one message naming `who`, the argument and what was expected vs got.
    """
    x = _batch_x(batch, who)
    shape = tuple(x.shape)
    if not jnp.issubdtype(x.dtype, jnp.floating):
        raise ValueError(f"{who}: batch['x'] must be a floating dtype, got {x.dtype}")
    if len(shape) < 2:
        raise ValueError(f"{who}: batch['x'] must be [B, ...] (a batch of examples), got {shape}")
    if shape[0] == 0:
        raise ValueError(f"{who}: batch is empty (batch['x'] has shape {shape})")
    want = _fits(shape[1:], example_shape, example_size)
    if want:
        raise ValueError(
            f"{who}: batch['x'] has shape {shape}, the state was initialised for {want}"
        )
    if batch_size is not None and shape[0] != batch_size:
        raise ValueError(
            f"{who}: batch['x'] has {shape[0]} examples (shape {shape}), the state was "
            f"initialised for batches of {batch_size}"
        )
    return x


def check_shape(shape, who: str, *, example_shape=None, example_size=None) -> tuple:
    """`shape` (one example's shape, a static `sample` argument) as a tuple of ints, or one
    `ValueError` when it does not fit the state (arguments as in `check_batch`)."""
    shape = tuple(shape)
    if not all(isinstance(d, (int, np.integer)) and d > 0 for d in shape):
        raise ValueError(f"{who}: shape must be a tuple of positive ints, got {shape}")
    want = _fits(shape, example_shape, example_size)
    if want:
        raise ValueError(f"{who}: shape={shape}, the state was initialised for {want}")
    return tuple(int(d) for d in shape)


def check_network_input(shape, network: str, who: str, *, flat=(), images=()) -> None:
    """One `ValueError` unless examples of `shape` suit `model.network`: the networks named in
    `flat` take points `[B, D]`, those in `images` take images `[B, H, W, C]`."""
    for names, rank, kind in ((flat, 1, "flat data [B, D]"), (images, 3, "images [B, H, W, C]")):
        if network in names and len(shape) != rank:
            raise ValueError(
                f"{who}: model.network={network!r} takes {kind}; got examples of shape "
                f"{tuple(shape)}"
            )


def check_count(num, who: str, name: str = "num") -> int:
    """`num` as an int, or one `ValueError` unless it is a positive Python / numpy int. Counts
    set array shapes, so under `jit` they must be static (`static_argnums`)."""
    if isinstance(num, jax.core.Tracer):
        raise ValueError(
            f"{who}: {name} must be a positive int known at trace time (a static argument "
            f"of jit), got a traced value"
        )
    if isinstance(num, bool) or not isinstance(num, (int, np.integer)) or num <= 0:
        raise ValueError(f"{who}: {name} must be a positive int, got {num!r}")
    return int(num)


def check_inputs(batch, *, image: bool, who: str, max_abs: float | None = 1e3) -> None:
    """Opt-in host-side check of a batch's values (numpy; it reads the data, so call it
    outside `jit`, e.g. on the first batch of a run, as the CLIs do).

    Args:
      batch: `{"x": [B, ...]}` (numpy or jax arrays).
      image: whether `x` holds images `[B, H, W, C]`, which must lie in [-1, 1].
      who: the caller (e.g. `"train"`, `"vapo.init"`); it starts the message.
      max_abs: non-image data: the largest magnitude accepted (the recipes' priors and step
        sizes assume data of order 1); None: not checked.

    Raises:
      ValueError: one message naming the first problem found: an integer (non-floating)
        dtype, an empty batch, non-finite values, images outside [-1, 1] (with a hint when
        they look like 0..255 pixels), or non-image values beyond `max_abs`.
    """
    x = _batch_x(batch, who)
    if not jnp.issubdtype(x.dtype, jnp.floating):
        hint = " (scale pixels to [-1, 1] floats)" if image else ""
        raise ValueError(f"{who}: batch['x'] must be a floating dtype, got {x.dtype}{hint}")
    a = np.asarray(x).astype(np.float32)
    if a.size == 0:
        raise ValueError(f"{who}: batch is empty (batch['x'] has shape {a.shape})")
    bad = int(np.sum(~np.isfinite(a)))
    if bad:
        raise ValueError(f"{who}: batch['x'] has {bad} non-finite value(s) (NaN or Inf)")
    lo, hi = float(a.min()), float(a.max())
    if image and (lo < -1.0 - 1e-6 or hi > 1.0 + 1e-6):
        pixels = " (looks like 0..255 pixels; scale to [-1, 1])" if lo >= 0 and hi > 2 else ""
        raise ValueError(
            f"{who}: images must be scaled to [-1, 1]; got values in [{lo:.3g}, {hi:.3g}]{pixels}"
        )
    if not image and max_abs is not None and max(-lo, hi) > max_abs:
        raise ValueError(
            f"{who}: batch['x'] has values in [{lo:.3g}, {hi:.3g}], beyond ±{max_abs:g}; the "
            "recipes expect data of order 1 (standardise it)"
        )

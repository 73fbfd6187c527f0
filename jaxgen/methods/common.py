"""The recipe kit: pieces every recipe uses — the typed optimizer section and the state that
owns it, draws split over the batch devices, the example shape a state carries, entry checks,
and the declaration of what a recipe offers (`Capabilities`). Typed config sections, their
checks and the dict conversion live in `jaxgen.methods.config` (re-exported here).

The recipe contract: a recipe module has `Config` (a frozen dataclass whose fields are frozen
section dataclasses: `model`, `method`, `optim` with one `Optim` per trained network, `sample`),
`init`, `train_step`, `sample` and `CAPABILITIES`, which `experiments/` reads instead of
inspecting the module. Configs are built from plain nested dicts by `config_from_dict` (unknown
fields and impossible values are one-line `ConfigError`s naming the full path).

Entry checks: `check_batch` and `check_count` are the static checks a recipe's `init`,
`train_step` and `sample` run on their arguments (Python on `.shape` / `.dtype`, so they work on
tracers at trace time and add nothing to the compiled program); `check_inputs` is the opt-in
host-side check of a batch's values (non-finite, images outside [-1, 1]) that the CLIs run on
the first batch.
"""

import dataclasses
import functools
from collections.abc import Callable, Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct

from jaxgen.methods.config import (  # noqa: F401 (re-exported: the recipes' one import)
    RENAMED_FIELDS,
    ConfigError,
    FieldError,
    Section,
    at_least,
    checked,
    config_from_dict,
    config_to_dict,
    each_at_least,
    in_unit_interval,
    migrate_renamed,
    migrate_renamed_tree,
    one_of,
    positive,
    renamed_message,
    replace_fields,
    validate,
)
from jaxgen.optim import DECAYS, OPTIMIZERS, ModelState, init_model_state, make_optimizer
from jaxgen.parallel import shard_over_batch


@dataclasses.dataclass(frozen=True)
class Optim:
    """The optimizer of one network (`optim.<network>.*` in an experiment config)."""

    optimizer: str = "adam"  # adam, adamw, lamb
    lr: float = 1e-3
    b1: float = 0.9
    b2: float = 0.999
    eps: float = 1e-8
    weight_decay: float = 0.0  # decoupled (adamw, lamb)
    l2: float = 0.0  # coupled L2: l2·θ added to the gradient before the optimizer
    warmup_steps: int = 0  # linear warm-up from 0
    decay: str = "constant"  # constant, cosine, step, milestones
    total_steps: int = 0  # cosine: step at which the rate reaches its floor (0: train.num_steps)
    min_lr_ratio: float = 0.0  # cosine: the floor as a fraction of lr
    decay_steps: int = 0  # step: × decay_factor every decay_steps
    decay_factor: float = 0.1  # step / milestones
    milestones: tuple[int, ...] = ()  # milestones: × decay_factor at each of these steps
    grad_clip: float = 0.0  # > 0: clip the global gradient norm first
    ema_rate: float = 0.999  # EMA of the parameters (with warm-up); 0: no EMA kept

    def __post_init__(self):
        ranges = {
            "lr": (self.lr > 0, "must be > 0"),
            "b1": (0 <= self.b1 < 1, "must be in [0, 1)"),
            "b2": (0 <= self.b2 < 1, "must be in [0, 1)"),
            "eps": (self.eps > 0, "must be > 0"),
            "weight_decay": (self.weight_decay >= 0, "must be >= 0"),
            "l2": (self.l2 >= 0, "must be >= 0"),
            "warmup_steps": (self.warmup_steps >= 0, "must be >= 0"),
            "total_steps": (self.total_steps >= 0, "must be >= 0"),
            "min_lr_ratio": (0 <= self.min_lr_ratio <= 1, "must be in [0, 1]"),
            "grad_clip": (self.grad_clip >= 0, "must be >= 0 (0 = no clipping)"),
            "ema_rate": (0 <= self.ema_rate < 1, "must be in [0, 1) (0 = no EMA)"),
        }
        if self.optimizer == "adam":
            ranges["weight_decay"] = (
                self.weight_decay == 0,
                "adam has no decoupled weight decay; use adamw or lamb, or l2 (coupled)",
            )
        if self.decay == "cosine" and self.total_steps:
            ranges["total_steps"] = (
                self.total_steps > self.warmup_steps,
                "decay='cosine' needs total_steps > warmup_steps (0: train.num_steps)",
            )
        if self.decay == "step":
            ranges["decay_steps"] = (self.decay_steps > 0, "decay='step' needs decay_steps > 0")
        if self.decay == "milestones":
            ms = list(self.milestones)
            ok = bool(ms) and ms == sorted(set(ms)) and ms[0] > 0
            ranges["milestones"] = (ok, "decay='milestones' needs increasing steps > 0")
        validate(self, ranges, {"optimizer": OPTIMIZERS, "decay": DECAYS})


@functools.cache
def make_tx(optim: Optim):
    """The optax transformation of one network's `Optim` section, one object per distinct
    section (cached), so states built from equal configs have equal static fields (their
    pytree structures match across `init` calls)."""
    kwargs = {f.name: getattr(optim, f.name) for f in dataclasses.fields(optim)}
    kwargs.pop("ema_rate")
    return make_optimizer(kwargs.pop("optimizer"), kwargs.pop("lr"), **kwargs)


def model_state(params, optim: Optim, *, variables=None) -> ModelState:
    """A network's fresh `ModelState`, owning the optimizer and EMA rate of its `Optim`
    section: built once, in `init`; `train_step` calls `state.<net>.apply_gradients`."""
    return init_model_state(params, make_tx(optim), ema_rate=optim.ema_rate, variables=variables)


# ---------------------------------------------------------------- draws inside a step


def batch_normal(key, shape, dtype=jnp.float32) -> jax.Array:
    """N(0, I) draws `shape` = `[B, ...]` (prior draws, chain starts, latents, noise), split
    over the batch devices when traced under a data mesh (`shard_over_batch`; a no-op
    outside one). Every per-example array a recipe draws inside `train_step` or `sample` comes
    from here or `batch_draw`: drawn from the replicated key and left unconstrained, XLA computes
    it whole on every device, and with it everything that follows (the short-run EBM's K
    Langevin steps ran on the global batch per device; tests/test_sharding_rows.py reads the
    rows of every recipe's compiled step and sampler)."""
    return shard_over_batch(jax.random.normal(key, shape, dtype))


def batch_draw(draw: Callable, key, shape, **kwargs) -> jax.Array:
    """`draw(key, shape, **kwargs)` (any `jax.random` sampler: `uniform`, `bernoulli`,
    `randint`, ...) split over the batch devices like `batch_normal`."""
    return shard_over_batch(draw(key, shape=shape, **kwargs))


# ---------------------------------------------------------------- the example shape


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


EXTRAS = ("energy", "log_density", "interpolate", "translate", "reconstruct")


@dataclasses.dataclass(frozen=True)
class DataFit:
    """A fit to the training data made once before training (FDRL's data-dependent prior).

    `needed(config)`: whether this config needs it; `fit(config, x)`: the fitted arrays (a
    pytree) from the whole unaugmented training set `x`: an array `[N, ...]` or an iterable of
    `[n, ...]` chunks (the trainer streams images in chunks); `shapes(config, example_shape)`:
    their `jax.ShapeDtypeStruct`s, so a checkpoint's abstract state costs no fit. `init` takes the
    result as `fitted=`. `fields`: the State fields that hold the fit's leaves, in order; the
    trainer keeps them once per run (`DIR/data_fit.npz`) instead of in every checkpoint."""

    needed: Callable[[Any], bool]
    fit: Callable[[Any, Any], Any]
    shapes: Callable[[Any, tuple], Any]
    fields: tuple[str, ...] = ()


def _no_check(config, base_config) -> str | None:
    return None


@dataclasses.dataclass(frozen=True)
class BaseStage:
    """The recipe starts from a finished run of one of the recipes `recipes` (e.g.
    `("nvae", "glow")`), named by the config field `method.base_workdir`; `method.base_step`
    picks its checkpoint (see `BaseRunFields`). That run's config and checkpoint are read and
    checked (same data set, then `check(config, base_config) -> reason or None` on the two
    recipe Configs), and its restored state is passed to `init` as `base=`. The recipe keeps the
    frozen parameters it needs inside its own state, so the new run's checkpoints stand alone;
    the new run records which base checkpoint it used (`DIR/base_run.json`).

    `default_config(config) -> (base recipe name, base recipe Config)`: the base a run of the
    recipe Config `config` starts from, for shapes only: abstract init (`jax.eval_shape(init)`),
    the ahead-of-time compile and traced tests build `base=` from it when there is no base run
    (training always needs one).

    `recipe="name"` is the old spelling of `recipes=("name",)`, kept for one release with a
    `DeprecationWarning`."""

    recipes: tuple[str, ...] = ()
    check: Callable[[Any, Any], str | None] = _no_check
    default_config: Callable[[Any], tuple[str, Any]] | None = None
    recipe: str = dataclasses.field(default="", repr=False, compare=False)  # deprecated alias

    def __post_init__(self):
        recipes = self.recipes
        old = self.recipe or (recipes if isinstance(recipes, str) else "")
        if old:
            import warnings

            warnings.warn(
                f'BaseStage(recipe="{old}") is deprecated; write BaseStage(recipes=("{old}",))',
                DeprecationWarning,
                stacklevel=3,
            )
            if self.recipe and recipes:
                raise ValueError("BaseStage: give recipes=(...) or the old recipe=..., not both")
            recipes = (old,)
            object.__setattr__(self, "recipe", "")  # moved: `dataclasses.replace` stays valid
        recipes = tuple(recipes)
        if not recipes or not all(isinstance(r, str) and r for r in recipes):
            raise ValueError(f"BaseStage: recipes={recipes!r} must name one or more recipes")
        object.__setattr__(self, "recipes", recipes)

    def allowed(self) -> str:
        """The base recipes for messages: "'gan2d'", "'nvae' or 'glow'"."""
        names = [repr(r) for r in self.recipes]
        return names[0] if len(names) == 1 else f"{', '.join(names[:-1])} or {names[-1]}"

    def default_base(self, config) -> tuple[str, Any]:
        """`(base recipe name, base recipe Config)` of `default_config(config)`; a `ValueError`
        when the stage declares none or names a recipe outside `recipes`."""
        if self.default_config is None:
            raise ValueError(f"this base stage (of a {self.allowed()} run) has no default_config")
        name, base_config = self.default_config(config)
        if name not in self.recipes:
            raise ValueError(
                f"BaseStage.default_config names {name!r}; the stage starts from {self.allowed()}"
            )
        return name, base_config


@dataclasses.dataclass(frozen=True)
class BaseRunFields:
    """The `method` fields a recipe with a `BaseStage` has (its `Method` section may subclass
    this): `base_workdir`, the finished base run (required to train; "" builds shapes from
    `BaseStage.default_config`), and `base_step`, which of its checkpoints: -1 the newest
    readable one, N >= 0 step N of its `checkpoints/` or, failing that, its `best/` (model
    selection)."""

    base_workdir: str = ""
    base_step: int = -1


@dataclasses.dataclass(frozen=True)
class Capabilities:
    """What a recipe offers, read by `experiments/` (train, sample, evaluate, figures)."""

    networks: tuple[str, ...]  # trained networks, each with its `optim.<name>` section
    headline: tuple[str, ...] = ("loss",)  # metrics the progress bar shows
    # per-sample statistics `sample` returns (mean / max are reported), and what NFE counts
    sampler_stats: tuple[str, ...] = ("nfe",)
    nfe: str = ""  # e.g. "vector-field evaluations"; "" when the recipe reports no NFE
    solver_ok: str = ""  # a boolean stat: False where the solver stopped early ("" = none)
    extras: tuple[str, ...] = ()  # of EXTRAS: energy(state, x), log_density(state, x), ...
    energy_label: str = ""  # what `energy` returns, for figures: "Φ(x)", "−E(x)"
    data_fit: DataFit | None = None
    base_stage: BaseStage | None = None
    batch_state: tuple[str, ...] = ()  # State fields whose leaves are split over `data`
    # whether `log_density` is normalised (a flow's) for a recipe Config; else the 2-D
    # evaluation normalises it on a grid
    log_density_normalised: Callable[[Any], bool] = lambda config: False

    def __post_init__(self):
        unknown = [e for e in self.extras if e not in EXTRAS]
        if unknown:
            raise ValueError(f"unknown extras {unknown}; choose from {list(EXTRAS)}")
        if ("energy" in self.extras) != bool(self.energy_label):
            raise ValueError("a recipe with the energy extra names it in energy_label, no other")
        if self.solver_ok and self.solver_ok not in self.sampler_stats:
            raise ValueError(f"solver_ok={self.solver_ok!r} is not among sampler_stats")

    def has(self, extra: str) -> bool:
        return extra in self.extras

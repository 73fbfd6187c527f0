"""The recipe kit: pieces every recipe uses — the typed optimizer section and the state that
owns it, draws split over the batch devices, the example shape a state carries, entry checks,
and the declaration of what a recipe offers (`Capabilities`). Typed config sections, their
checks and the dict conversion live in `jaxgen.methods.config` (re-exported here).

The recipe contract: a recipe module has `Config` (a frozen dataclass whose fields are frozen
section dataclasses: `model`, `method`, `optim` with one `Optim` per trained network, `sample`),
`init`, `train_step`, `sample` and `CAPABILITIES`, which `experiments/` reads instead of
inspecting the module. Configs are built from plain nested dicts by `config_from_dict` (unknown
fields and impossible values are one-line `ConfigError`s naming the full path).

Entry checks (`check_batch`, `check_count`, `check_inputs`, ...) live in
`jaxgen.methods.checks` and are re-exported here.
"""

import dataclasses
import functools
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp

from jaxgen.methods.checks import (  # noqa: F401 (re-exported: the recipes' one import)
    check_batch,
    check_count,
    check_inputs,
    check_network_input,
    check_shape,
    check_state_batch,
    example_shape_field,
    sample_shape,
)
from jaxgen.methods.config import (  # noqa: F401 (re-exported: the recipes' one import)
    RENAMED_FIELDS,
    ConfigError,
    FieldError,
    NoSettings,
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
    section_differences,
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
    # > 0 (adam): clip each element to ±(moment_clip·√v̂ + moment_clip_offset) from Adam's second
    # moment, from the second update on (Du & Mordatch; VAEBM: 3, 0.1; jaxgen.optim.moment_clip)
    moment_clip: float = 0.0
    moment_clip_offset: float = 0.1
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
            "moment_clip": (
                self.moment_clip >= 0 and (self.moment_clip == 0 or self.optimizer == "adam"),
                "must be >= 0 (0 = no clipping), and > 0 only with optimizer adam",
            ),
            "moment_clip_offset": (self.moment_clip_offset >= 0, "must be >= 0"),
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


def init_params(module, key, *example_args) -> dict:
    """The parameters of the Flax `module` for `example_args`, initialised under `jit` (eager
    conv init is slow on CPU) on an "rbg" key drawn from `key`: XLA's CPU backend compiles
    threefry for every parameter leaf slowly (DDGAN's CIFAR-10 G: 15 s with threefry, 7 s
    with rbg)."""
    seed = jax.random.randint(key, (), 0, jnp.iinfo(jnp.int32).max)
    return jax.jit(module.init)(jax.random.key(seed, impl="rbg"), *example_args)["params"]


def module_kwargs(section, module, **extra) -> dict:
    """The fields of the config `section` that the Flax module class `module` declares under
    the same names (lists as tuples), updated with `extra`: a network's arguments without
    re-typing each one. A field renamed on one side only is silently not passed (the module's
    default is used), so keep the two names together."""
    names = {f.name for f in dataclasses.fields(module)} - {"parent", "name"}
    kw = {
        f.name: tuple(v) if isinstance(v := getattr(section, f.name), list) else v
        for f in dataclasses.fields(section)
        if f.name in names
    }
    return {**kw, **extra}


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

    def init_default_base(self, config, example_batch, *, key) -> tuple[str, Any, Any]:
        """`(name, Config, fresh state)` of `default_base(config)`, initialised on
        `example_batch`: a base for shapes, timing and tests, never a trained one."""
        from jaxgen.methods import get_recipe  # the registry imports every recipe, this one too

        name, base_config = self.default_base(config)
        return name, base_config, get_recipe(name).init(base_config, example_batch, key=key)


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

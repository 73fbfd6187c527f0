"""Pieces every recipe uses: field validation, the typed optimizer section, the `Config`
conversion from nested dicts, and the declaration of what a recipe offers.

The recipe contract: a recipe module has `Config` (a frozen dataclass whose fields are frozen
section dataclasses: `model`, `method`, `optim` with one `Optim` per trained network, `sample`),
`init`, `train_step`, `sample` and `CAPABILITIES`, which `experiments/` reads instead of
inspecting the module. Configs are built from plain nested dicts by `config_from_dict` (unknown
fields and impossible values are one-line `ConfigError`s naming the full path).
"""

import dataclasses
import typing
from collections.abc import Callable, Mapping
from typing import Any

from jaxgen.optim import DECAYS, OPTIMIZERS, make_optimizer


class FieldError(ValueError):
    """A Config field holds an impossible value; `field` names it within its section."""

    def __init__(self, field: str, value, why: str):
        super().__init__(f"{field}={value!r}: {why}")
        self.field, self.value, self.why = field, value, why


def validate(section, ranges: dict, choices: dict | None = None) -> None:
    """Raise `FieldError` for the first field out of range (`ranges`: name -> (ok, why) or
    name -> ok) or not among its allowed values (`choices`: name -> allowed)."""
    for name, check in ranges.items():
        ok, why = check if isinstance(check, tuple) else (check, "out of range")
        if not ok:
            raise FieldError(name, getattr(section, name), why)
    for name, allowed in (choices or {}).items():
        if getattr(section, name) not in allowed:
            raise FieldError(name, getattr(section, name), f"choose one of {list(allowed)}")


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


def make_tx(optim: Optim):
    """The optax transformation of one network's `Optim` section."""
    kwargs = {f.name: getattr(optim, f.name) for f in dataclasses.fields(optim)}
    kwargs.pop("ema_rate")
    return make_optimizer(kwargs.pop("optimizer"), kwargs.pop("lr"), **kwargs)


EXTRAS = ("energy", "log_density", "interpolate", "translate")


class ConfigError(ValueError):
    """A config field is unknown, mistyped or impossible; the message names its full path."""


@dataclasses.dataclass(frozen=True)
class DataFit:
    """A fit to the training data made once before training (FDRL's data-dependent prior).

    `needed(config)`: whether this config needs it; `fit(config, x)`: the fitted arrays (a
    pytree) from the whole unaugmented training set `x` `[N, ...]`; `shapes(config, example_shape)`:
    their `jax.ShapeDtypeStruct`s, so a checkpoint's abstract state costs no fit. `init` takes the
    result as `fitted=`."""

    needed: Callable[[Any], bool]
    fit: Callable[[Any, Any], Any]
    shapes: Callable[[Any, tuple], Any]


@dataclasses.dataclass(frozen=True)
class BaseStage:
    """The recipe starts from a finished run of recipe `recipe`, named by the config field
    `method.base_workdir`. That run's config and newest checkpoint are read and checked (same
    data set, then `check(config, base_config) -> reason or None` on the two recipe Configs),
    and its restored state is passed to `init` as `base=`. The recipe keeps the frozen
    parameters it needs inside its own state, so the new run's checkpoints stand alone."""

    recipe: str
    check: Callable[[Any, Any], str | None] = lambda config, base_config: None


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
    sample_sharding: bool = False  # `sample(..., sharding=)` splits samples over devices
    data_fit: DataFit | None = None
    base_stage: BaseStage | None = None
    batch_state: tuple[str, ...] = ()  # State fields whose leaves are split over `data`

    def __post_init__(self):
        unknown = [e for e in self.extras if e not in EXTRAS]
        if unknown:
            raise ValueError(f"unknown extras {unknown}; choose from {list(EXTRAS)}")
        if self.solver_ok and self.solver_ok not in self.sampler_stats:
            raise ValueError(f"solver_ok={self.solver_ok!r} is not among sampler_stats")

    def has(self, extra: str) -> bool:
        return extra in self.extras


def _is_section(value) -> bool:
    return dataclasses.is_dataclass(value) and not isinstance(value, type)


def config_to_dict(config) -> dict:
    """Nested plain dict of a Config's fields (section dataclasses become dicts)."""
    return {
        f.name: config_to_dict(v) if _is_section(v := getattr(config, f.name)) else v
        for f in dataclasses.fields(config)
    }


def _coerce(value, kind, path: str):
    """`value` as the annotated type `kind` (float, int, bool, str, tuple[T, ...]), or a
    `ConfigError` naming `path`."""
    if typing.get_origin(kind) is tuple:
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{path}={value!r}: expected a tuple")
        (item, *_) = typing.get_args(kind)
        return tuple(_coerce(v, item, f"{path}[{i}]") for i, v in enumerate(value))
    if kind is float and isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    ok = isinstance(value, kind) and (kind is bool or not isinstance(value, bool))
    if not ok:
        raise ConfigError(f"{path}={value!r}: expected {kind.__name__}")
    return value


def config_from_dict(cls, tree: Mapping, *, path: str = "config"):
    """`cls(**tree)` for a (nested) section dataclass `cls`, recursing into section fields.

    Fields missing from `tree` keep their defaults. An unknown key, a value of the wrong type or
    a value the section refuses is one `ConfigError` naming the full path (`config.optim.gen.lr`).
    """
    default, hints = cls(), typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    kwargs = {}
    for key, value in tree.items():
        where = f"{path}.{key}"
        if key not in names:
            raise ConfigError(f"unknown config field {where} (fields: {', '.join(sorted(names))})")
        d = getattr(default, key)
        if _is_section(d):
            if not isinstance(value, Mapping):
                raise ConfigError(f"{where} is a section; set its fields ({where}.<name>)")
            kwargs[key] = config_from_dict(type(d), value, path=where)
        else:
            kwargs[key] = _coerce(value, hints[key], where)
    try:
        return cls(**kwargs)
    except FieldError as e:
        raise ConfigError(f"{path}.{e}") from None


def replace_fields(config, updates: Mapping[str, Any]):
    """A copy of `config` with dotted fields replaced: `{"sample.t_end": 2.0}`."""
    tree = config_to_dict(config)
    for dotted, value in updates.items():
        node = tree
        *parents, leaf = dotted.split(".")
        for name in parents:
            if not isinstance(node.get(name), dict):
                raise ConfigError(f"unknown config section config.{dotted}")
            node = node[name]
        node[leaf] = value
    return config_from_dict(type(config), tree)

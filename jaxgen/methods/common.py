"""Pieces every recipe's `Config` uses: field validation and the typed optimizer section."""

import dataclasses

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

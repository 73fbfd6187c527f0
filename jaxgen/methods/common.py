"""Pieces every recipe's `Config` uses: its validation and its optimizer."""

from jaxgen.train.optim import make_optimizer

# Config fields passed to `make_optimizer` when a recipe's Config has them
OPTIMIZER_FIELDS = (
    "b1",
    "b2",
    "weight_decay",
    "warmup_steps",
    "decay",
    "total_steps",
    "decay_steps",
    "decay_factor",
    "grad_clip",
)


def make_tx(config):
    """`make_optimizer(config.optimizer, config.lr, ...)` with the Config's optimizer fields."""
    kwargs = {f: getattr(config, f) for f in OPTIMIZER_FIELDS if hasattr(config, f)}
    return make_optimizer(config.optimizer, config.lr, **kwargs)


def validate(config, ranges: dict, choices: dict) -> None:
    """One `ValueError` naming the first field out of range (`ranges`: name -> ok) or not among
    its allowed values (`choices`: name -> allowed)."""
    for name, ok in ranges.items():
        if not ok:
            raise ValueError(f"{name}={getattr(config, name)!r} is out of range")
    for name, allowed in choices.items():
        if getattr(config, name) not in allowed:
            raise ValueError(f"{name}={getattr(config, name)!r}: choose one of {list(allowed)}")

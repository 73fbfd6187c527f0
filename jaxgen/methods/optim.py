"""The optimizer of a recipe's `Config`, shared by the method modules."""

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

"""Shared CLI plumbing: flags, config validation, recipe config, workdir layout, restore."""

import dataclasses
import json
import re
import sys
from pathlib import Path

import jax
import ml_collections
import numpy as np
from absl import flags
from ml_collections import config_flags

from jaxgen.data import DATASET_NAMES, TOY2D_NAMES, make_stream
from jaxgen.methods import get_recipe
from jaxgen.train.checkpoint import CheckpointError, Checkpoints

FLAGS = flags.FLAGS
RECIPE_SECTIONS = ("model", "method", "optim", "sample")


class ConfigError(ValueError):
    """A config field is unknown, mistyped or impossible; the message names it."""


def define_common_flags() -> None:
    config_flags.DEFINE_config_file("config", None, "experiment config file", lock_config=True)
    flags.DEFINE_string("workdir", None, "run directory (checkpoints, metrics, samples)")


def parse_flags(argv: list[str]) -> ml_collections.ConfigDict:
    """Parse `argv`; on any bad flag or config field print one line and exit with status 2."""
    try:
        FLAGS(argv)
        if FLAGS.config is None:
            raise ConfigError("--config is required")
        config = FLAGS.config
        if config.runlocal:
            config = _smoke_keeping_overrides(config, argv)
        validate(config)
        return config
    except (AttributeError, KeyError) as e:  # an override names a field the config lacks
        _die(_unknown_field_message(e, argv))
    except (flags.Error, ConfigError, ValueError, TypeError, OSError) as e:
        _die(str(e).splitlines()[0] if str(e) else type(e).__name__)


def _unknown_field_message(e: Exception, argv: list[str]) -> str:
    """One line for ml_collections' unknown-field errors, whose text arrives repr-escaped."""
    text = str(e.args[0] if e.args else e)
    mean = re.search(r'Did you mean "(\w+)" instead of "(\w+)"', text)
    found = re.search(r"(\w+)", text)
    key = mean.group(2) if mean else (found.group(1) if found else "?")
    given = [a.split("=")[0].lstrip("-") for a in argv if a.startswith("--config.")]
    named = [g for g in given if key in g.split(".")]
    field = named[0] if named else f"config.{key}"
    return f"unknown config field {field}" + (f' (did you mean "{mean.group(1)}"?)' if mean else "")


def _smoke_keeping_overrides(config, argv):
    """The smoke variant, with fields given explicitly on the command line left as given."""
    from experiments.configs.common import smoke

    paths = [a[len("--config.") :].split("=")[0] for a in argv if a.startswith("--config.")]
    kept = {p: _get(config, p) for p in paths if p != "runlocal"}
    config = smoke(config)
    for p, value in kept.items():
        *parents, leaf = p.split(".")
        node = config
        for name in parents:
            node = node[name]
        node[leaf] = value
    return config


def _get(config, path: str):
    for name in path.split("."):
        config = config[name]
    return config


def _die(message: str) -> None:
    print(f"error: {message}", file=sys.stderr)
    sys.exit(2)


def _check(ok: bool, field: str, value, why: str) -> None:
    if not ok:
        raise ConfigError(f"config.{field}={value!r}: {why}")


def validate(c: ml_collections.ConfigDict) -> None:
    """Common checks of the fields every config has; the recipe's `Config` checks the rest."""
    _check(
        c.data.name in DATASET_NAMES,
        "data.name",
        c.data.name,
        f"choose one of {list(DATASET_NAMES)}",
    )
    n_dev = c.train.num_devices or jax.device_count()
    _check(
        0 < n_dev <= jax.device_count(),
        "train.num_devices",
        c.train.num_devices,
        f"this machine has {jax.device_count()} devices",
    )
    _check(
        c.data.batch_size > 0 and c.data.batch_size % n_dev == 0,
        "data.batch_size",
        c.data.batch_size,
        f"must be positive and divisible by the number of devices ({n_dev})",
    )
    _check(c.train.num_steps >= 0, "train.num_steps", c.train.num_steps, "must be >= 0")
    for f in ("log_every", "keep", "steps_per_call"):
        _check(c.train[f] > 0, f"train.{f}", c.train[f], "must be > 0")
    _check(
        c.train.select_samples > 0, "train.select_samples", c.train.select_samples, "must be > 0"
    )
    for f in ("ckpt_every", "sample_every", "select_every"):
        _check(c.train[f] >= 0, f"train.{f}", c.train[f], "must be >= 0 (0 = never)")
    _check(
        c.train.nonfinite in ("stop", "skip", "rollback"),
        "train.nonfinite",
        c.train.nonfinite,
        "choose stop, skip or rollback",
    )
    _check(c.eval.num_samples > 0, "eval.num_samples", c.eval.num_samples, "must be > 0")
    recipe_config(c)


def recipe_config(c: ml_collections.ConfigDict):
    """The recipe's frozen `Config` from the `model`, `method`, `optim`, `sample` sections."""
    recipe = get_recipe(c.recipe)
    fields = {f.name: f for f in dataclasses.fields(recipe.Config)}
    kwargs, section_of = {}, {}
    for section in RECIPE_SECTIONS:
        for key, value in c[section].items():
            _check(key in fields, f"{section}.{key}", value, f"not a field of {c.recipe}.Config")
            kwargs[key] = tuple(value) if isinstance(value, list) else value
            section_of[key] = section
    if "total_steps" in fields:
        kwargs.setdefault("total_steps", c.train.num_steps)
    try:
        return recipe.Config(**kwargs)
    except ValueError as e:
        name = str(e).split("=")[0]
        raise ConfigError(f"config.{section_of.get(name, 'method')}.{e}") from None


def stream_for(c, *, split: str = "train"):
    return make_stream(
        c.data.name,
        c.data.batch_size,
        c.seed,
        split=split,
        flip=c.data.flip and split == "train",
        pad_to_32=c.data.pad_to_32,
        data_dir=c.data.data_dir or None,
    )


def is_toy2d(c) -> bool:
    return c.data.name in TOY2D_NAMES


def example_shape(c) -> tuple[int, ...]:
    """The shape of one training example (reads the data set)."""
    return tuple(stream_for(c).batch(0)["x"].shape[1:])


def workdir_paths(workdir: str) -> dict[str, Path]:
    root = Path(workdir)
    return {
        "root": root,
        "ckpt": root / "checkpoints",
        "samples": root / "samples",
        "eval": root / "eval",
    }


def restore_latest(c, workdir: str, *, shape: tuple[int, ...] | None = None):
    """The newest checkpoint's `(state, meta)`; exits with one line when there is none.

    `shape` is one example's shape (`example_shape(c)`, which reads the data, when None)."""
    recipe, rc = get_recipe(c.recipe), recipe_config(c)
    shape = example_shape(c) if shape is None else tuple(shape)
    first = {"x": np.zeros((1, *shape), np.float32)}
    abstract = jax.eval_shape(lambda: recipe.init(rc, first, key=jax.random.PRNGKey(0)))
    ckpt = workdir_paths(workdir)["ckpt"]
    if not ckpt.exists():
        _die(f"no checkpoints in {ckpt}; train first")
    try:
        store = Checkpoints(ckpt)
        if store.latest_step() is None:
            _die(f"no checkpoints in {ckpt}; train first")
        return store.restore(abstract)
    except CheckpointError as e:
        _die(str(e))


def save_config(c, workdir: str) -> None:
    path = Path(workdir) / "config.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(c.to_dict(), indent=1, default=str))

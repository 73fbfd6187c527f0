"""What a resume may change: the fields that define a run are recorded in every checkpoint
and compared with the config before anything is written; deliberate changes (a longer
`train.num_steps`, other log / checkpoint intervals, evaluation settings) pass."""

import json
from pathlib import Path

from experiments.experiment import load_saved_config, recipe_config
from jaxgen.methods import get_recipe
from jaxgen.methods.common import ConfigError, config_to_dict, migrate_renamed

# the fields (and sections) that define a run: changing one breaks the promise that a resumed
# run equals an uninterrupted one
RUN_FIELDS = (
    "recipe",
    "seed",
    "data.name",
    "data.batch_size",
    "data.flip",
    "data.pad_to_32",
    "data.classes",
    "data.train_limit",
    "data.source",
    "data.source_classes",
    "model",
    "method",
    "optim",
)


def run_identity(c) -> dict:
    """`{dotted field: value}` of the run-defining fields of ConfigDict `c`, JSON-normalised
    (tuples become lists), so it compares equal with the copy read back from a checkpoint.
    `optim` is the one the recipe trains with: a cosine decay's `total_steps` of 0 resolved
    to `train.num_steps` (lengthening such a run changes its schedule)."""
    out = {}
    for name in RUN_FIELDS:
        if name == "optim":
            value = config_to_dict(recipe_config(c))["optim"]
        else:
            node = c
            for part in name.split("."):
                node = node[part]
            value = node.to_dict() if hasattr(node, "to_dict") else node
        out.update(_flatten(name, value))
    return json.loads(json.dumps(out, default=str))


def _defaults(recipe: str) -> dict:
    """The identity entries of the recipe's `Config` defaults, standing in for fields a
    checkpoint of an older jaxgen did not record."""
    tree = config_to_dict(get_recipe(recipe).Config())
    out = {"data.classes": [], "data.source": "", "data.source_classes": []}  # added later
    out["data.train_limit"] = 0
    for section in ("model", "method", "optim"):
        out.update(_flatten(section, tree.get(section, {})))
    return json.loads(json.dumps(out, default=str))


def _flatten(prefix: str, value) -> dict:
    if isinstance(value, dict):
        flat = {}
        for k, v in value.items():
            flat.update(_flatten(f"{prefix}.{k}", v))
        return flat
    return {prefix: value}


def recorded_identity(meta: dict, workdir: str) -> dict | None:
    """The identity saved with a checkpoint, or (checkpoints from before it was saved) the one
    of the run's `config.json`; None when neither exists. Fields renamed since it was written
    appear under their new names (`jaxgen.methods.common.RENAMED_FIELDS`)."""
    if "run" in meta:
        return migrate_renamed(meta["run"].get("recipe", ""), meta["run"])
    path = Path(workdir) / "config.json"
    if not path.exists():
        return None
    try:
        return run_identity(load_saved_config(path))
    except (ValueError, KeyError, AttributeError):  # a record this version cannot read
        return None


def check_resume(c, recorded: dict | None, where: str) -> None:
    """`ConfigError` naming every run-defining field that differs from `recorded` (the
    checkpoints in `where`), unless listed in `c.train.allow_changes` (comma-separated dotted
    prefixes)."""
    if recorded is None:
        return
    if recorded.get("recipe", c.recipe) != c.recipe:
        raise ConfigError(
            f"resume refused: {where} holds a {recorded['recipe']!r} run and this config trains "
            f"{c.recipe!r}; use a new --workdir"
        )
    now, defaults = run_identity(c), _defaults(c.recipe)
    before = {k: recorded.get(k, defaults.get(k, "<absent>")) for k in now}  # new fields
    allowed = tuple(a.strip() for a in c.train.get("allow_changes", "").split(",") if a.strip())
    changed = [
        k
        for k in sorted(now)  # a field this version no longer has is not a change
        if now[k] != before[k] and not any(k == a or k.startswith(a + ".") for a in allowed)
    ]
    if not changed:
        return
    shown = "; ".join(f"{k} was {before[k]!r}, now {now[k]!r}" for k in changed[:4])
    if any(k.endswith(".total_steps") for k in changed):
        shown += " (a cosine decay ends at train.num_steps unless optim.*.total_steps is set)"
    more = f" (and {len(changed) - 4} more)" if len(changed) > 4 else ""
    raise ConfigError(
        f"resume refused: the run in {where} differs: {shown}{more}; use a new --workdir, or "
        f"pass --config.train.allow_changes={','.join(changed)} to resume anyway"
    )

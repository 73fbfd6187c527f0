"""What a resume, a sample or an evaluation may change: the fields that define a run are recorded
in every checkpoint and compared with the config before anything is written or drawn;
deliberate changes (a longer `train.num_steps`, other log / checkpoint intervals, evaluation
and sampler settings) pass."""

import json
from pathlib import Path

from experiments.experiment import load_saved_config, recipe_config
from experiments.run_files import workdir_paths
from jaxgen.methods import get_recipe
from jaxgen.methods.common import ConfigError, config_to_dict, migrate_renamed
from jaxgen.train.checkpoint import CheckpointError, Checkpoints

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

# identity fields that set how a trained model is sampled or computed, not what was trained:
# `sample` and `evaluate` may change them (the `sample` section is not in the identity at all)
SAMPLER_FIELDS = {
    # the ODE sampler's (and the log-density's) tolerances; the K steps unrolled or
    # rematerialised compute the same chain
    "shortrun_ebm": ("method.rtol", "method.atol", "method.unroll", "method.checkpoint"),
    "vaebm": ("method.unroll",),  # the chain's steps in one loop body: the same chain
    "vapo": ("model.batch_splits",),  # the layers on batch slices: the same numbers
}
# a stage keeps its frozen base inside its own checkpoints: where that base came from does not
# change what the stage samples
BASE_FIELDS = ("method.base_workdir", "method.base_step")


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


def _allowed(text: str) -> tuple[str, ...]:
    """The dotted prefixes of an `allow_changes` field ("optim.gen.lr, seed")."""
    return tuple(a.strip() for a in str(text).split(",") if a.strip())


def _changes(c, recorded: dict, allowed: tuple[str, ...]) -> tuple[list[str], dict, dict]:
    """`(changed fields, recorded values, this config's values)`: the run-defining fields of
    `c` that differ from `recorded` and are not under a prefix in `allowed`. A field added
    since `recorded` was written counts as its default; one removed since is not a change."""
    now, defaults = run_identity(c), _defaults(c.recipe)
    before = {k: recorded.get(k, defaults.get(k, "<absent>")) for k in now}
    changed = [
        k
        for k in sorted(now)
        if now[k] != before[k] and not any(k == a or k.startswith(a + ".") for a in allowed)
    ]
    return changed, before, now


def _cosine_note(changed) -> str:
    if any(k.endswith(".total_steps") for k in changed):
        return " (a cosine decay ends at train.num_steps unless optim.*.total_steps is set)"
    return ""


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
    changed, before, now = _changes(c, recorded, _allowed(c.train.get("allow_changes", "")))
    if not changed:
        return
    shown = "; ".join(f"{k} was {before[k]!r}, now {now[k]!r}" for k in changed[:4])
    shown += _cosine_note(changed)
    more = f" (and {len(changed) - 4} more)" if len(changed) > 4 else ""
    raise ConfigError(
        f"resume refused: the run in {where} differs: {shown}{more}; use a new --workdir, or "
        f"pass --config.train.allow_changes={','.join(changed)} to resume anyway"
    )


def sampler_fields(c) -> tuple[str, ...]:
    """The identity fields of `c`'s recipe that `sample` / `evaluate` may change freely
    (`SAMPLER_FIELDS`; a base stage's `BASE_FIELDS`)."""
    base = BASE_FIELDS if get_recipe(c.recipe).CAPABILITIES.base_stage is not None else ()
    return SAMPLER_FIELDS.get(c.recipe, ()) + base


def check_sampling(c, recorded: dict | None, where: str, *, what: str = "sample") -> None:
    """`ConfigError` (`what` refused: ...) naming every field that defines the trained model and
    differs between `recorded` (the identity saved with the run in `where`) and `c`, except the
    recipe's sampler settings (`sampler_fields`) and the prefixes listed in
    `c.eval.allow_changes` (comma-separated, as `train.allow_changes`)."""
    if recorded is None:
        return
    if recorded.get("recipe", c.recipe) != c.recipe:
        raise ConfigError(
            f"{what} refused: the run in {where} is a {recorded['recipe']!r} run and this "
            f"config is for {c.recipe!r}; give the config the run was trained with"
        )
    allowed = sampler_fields(c) + _allowed(c.eval.get("allow_changes", ""))
    changed, before, now = _changes(c, recorded, allowed)
    if not changed:
        return
    shown = changed[:4]
    more = f" (and {len(changed) - 4} more)" if len(changed) > 4 else ""
    trained = _and([f"{k}={_value(before[k])}" for k in shown])
    has = _and([_value(now[k]) for k in shown])
    raise ConfigError(
        f"{what} refused: the run in {where} was trained with {trained}{more}, this config has "
        f"{has}{_cosine_note(changed)}; pass --config.eval.allow_changes={','.join(changed)} "
        f"to {what} it anyway"
    )


def _value(v) -> str:
    return repr(v) if isinstance(v, str) else str(v)


def _and(items: list[str]) -> str:
    """`a`, `a and b`, `a, b and c`."""
    return items[0] if len(items) == 1 else f"{', '.join(items[:-1])} and {items[-1]}"


def checked_restore(exp, workdir: str, step: int | None = None, *, what: str = "sample"):
    """`exp.restore_latest(workdir, step)` (`(state, meta)`) of a run whose recorded identity
    agrees with the config (`check_sampling`): checked on the newest (or `step`'s) checkpoint
    metadata before any state is read, and again on the checkpoint restored (an unreadable
    newer one is skipped)."""
    meta = _stored_meta(workdir, step)
    if meta is not None:
        check_sampling(exp.c, recorded_identity(meta, workdir), workdir, what=what)
    state, meta = exp.restore_latest(workdir, step)
    check_sampling(exp.c, recorded_identity(meta, workdir), workdir, what=what)
    return state, meta


def _stored_meta(workdir: str, step: int | None) -> dict | None:
    """The metadata of checkpoint `step` (newest when None) in `workdir`, without its state;
    None when there is no such checkpoint or it cannot be read (restoring says so, or skips
    it and the restored one is checked)."""
    ckpt = workdir_paths(workdir)["ckpt"]
    if not ckpt.is_dir():
        return None
    try:
        store = Checkpoints(ckpt)
    except CheckpointError:
        return None
    try:
        steps = store.all_steps()
        if not steps or (step is not None and step not in steps):
            return None
        return store.read_meta(step)
    except CheckpointError:
        return None
    finally:
        store.close()

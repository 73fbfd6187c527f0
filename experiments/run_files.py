"""The files of a run directory that every command reads: where things are, the saved config
(with fields renamed since it was written under their new names), and the checks and writes
they share: `check_workdir` (a `--workdir` that is a file), `save_json` (atomic)."""

import json
from pathlib import Path

import ml_collections

from jaxgen.io import atomic_write_text, load_side_json
from jaxgen.methods.common import ConfigError, migrate_renamed_tree

BASE_CONFIG = "base_config.json"  # a base stage's config, copied into the run that builds on it
BASE_RUN = "base_run.json"  # which base run and checkpoint step the run started from
DATA_FIT = "data_fit.npz"  # the recipe's data fit (FDRL's prior), once per run

# what a damaged saved config is, and its fix, by file name (else: a run's config.json)
_CONFIG_DAMAGE = {
    BASE_CONFIG: (
        "the base run's config kept in this run",
        "restore it from a copy, or delete it to read method.base_workdir's config.json again",
    ),
}
_RUN_CONFIG_DAMAGE = (
    "the run's saved config",
    "restore it from a copy or move the run aside",
)


def workdir_paths(workdir: str) -> dict[str, Path]:
    root = Path(workdir)
    return {
        "root": root,
        "ckpt": root / "checkpoints",
        "samples": root / "samples",
        "eval": root / "eval",
    }


def check_workdir(path) -> None:
    """One `ConfigError` when `--workdir` `path`, or the nearest of its folders that exists, is
    not a directory (a regular file given by mistake); a path that does not exist yet is fine."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise ConfigError(f"--workdir {path} is a file, not a directory")
    blocked = next((p for p in path.parents if p.exists() and not p.is_dir()), None)
    if blocked is not None:
        raise ConfigError(f"--workdir {path}: {blocked} is a file, not a directory")


def load_saved_config(path) -> ml_collections.ConfigDict:
    """A run's saved `config.json` (or a base stage's `base_config.json`) as a ConfigDict,
    fields renamed since it was written under their new names
    (`jaxgen.methods.common.RENAMED_FIELDS`). A damaged file (cut short, empty, not JSON) is
    one `SideFileError` naming it and the fix."""
    what, fix = _CONFIG_DAMAGE.get(Path(path).name, _RUN_CONFIG_DAMAGE)
    tree = load_side_json(path, what, fix)
    return ml_collections.ConfigDict(migrate_renamed_tree(tree.get("recipe", ""), tree))


def save_json(path, tree) -> Path:
    """`tree` as indented JSON (values JSON lacks as their `str`) to `path`, atomically, so a
    killed or disk-full write leaves the previous file whole."""
    return atomic_write_text(path, json.dumps(tree, indent=1, default=str) + "\n")

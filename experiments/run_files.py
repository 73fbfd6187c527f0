"""The files of a run directory that every command reads: where things are, and the saved
config (with fields renamed since it was written under their new names)."""

import json
from pathlib import Path

import ml_collections

from jaxgen.methods.common import migrate_renamed_tree

BASE_CONFIG = "base_config.json"  # a base stage's config, copied into the run that builds on it
BASE_RUN = "base_run.json"  # which base run and checkpoint step the run started from
DATA_FIT = "data_fit.npz"  # the recipe's data fit (FDRL's prior), once per run


def workdir_paths(workdir: str) -> dict[str, Path]:
    root = Path(workdir)
    return {
        "root": root,
        "ckpt": root / "checkpoints",
        "samples": root / "samples",
        "eval": root / "eval",
    }


def load_saved_config(path) -> ml_collections.ConfigDict:
    """A run's saved `config.json` as a ConfigDict, fields renamed since it was written under
    their new names (`jaxgen.methods.common.RENAMED_FIELDS`)."""
    tree = json.loads(Path(path).read_text())
    return ml_collections.ConfigDict(migrate_renamed_tree(tree.get("recipe", ""), tree))

"""Atomic, resumable checkpoints (orbax `CheckpointManager`).

A checkpoint holds the whole state pytree (params, optimizer state, EMA, step, key, and any
method buffers) plus JSON metadata (data cursor, config). orbax writes into a temporary folder
and renames it when complete, so a killed run never leaves a half-written "latest" checkpoint.
Errors name the directory and never delete anything.
"""

import logging
from pathlib import Path

import jax
import orbax.checkpoint as ocp

logging.getLogger("absl").setLevel(logging.WARNING)


class CheckpointError(RuntimeError):
    """A checkpoint could not be read or does not match the model being restored."""


class Checkpoints:
    """Save and restore `(state, meta)` under `directory`, keeping the newest `max_to_keep`."""

    def __init__(self, directory: str | Path, *, max_to_keep: int = 3):
        self.directory = Path(directory).absolute()
        options = ocp.CheckpointManagerOptions(max_to_keep=max_to_keep, create=True)
        try:
            self._mngr = ocp.CheckpointManager(
                self.directory,
                options=options,
                item_handlers={
                    "state": ocp.StandardCheckpointHandler(),
                    "meta": ocp.JsonCheckpointHandler(),
                },
            )
        except Exception as e:
            raise CheckpointError(f"cannot open checkpoint directory {self.directory}: {e}") from e

    def latest_step(self) -> int | None:
        return self._mngr.latest_step()

    def all_steps(self) -> list[int]:
        return list(self._mngr.all_steps())

    def save(self, step: int, state, meta: dict, *, wait: bool = True) -> None:
        empty = [
            jax.tree_util.keystr(p)
            for p, x in jax.tree_util.tree_leaves_with_path(state)
            if hasattr(x, "size") and x.size == 0
        ]
        if empty:  # orbax refuses these only after a 60 s signalling timeout
            raise CheckpointError(f"cannot checkpoint zero-size arrays: {', '.join(empty)}")
        args = ocp.args.Composite(state=ocp.args.StandardSave(state), meta=ocp.args.JsonSave(meta))
        self._mngr.save(int(step), args=args, force=True)
        if wait:
            self._mngr.wait_until_finished()

    def restore(self, abstract_state, step: int | None = None):
        """Restore `(state, meta)` at `step` (newest when None) into the structure, shapes and
        shardings of `abstract_state` (a state pytree or its `jax.ShapeDtypeStruct`s).

        Raises `CheckpointError`: "does not match" when the saved arrays differ in structure or
        shape from `abstract_state` (another architecture or method), "unreadable or corrupt"
        when the files cannot be read. Nothing is ever deleted.
        """
        step = self.latest_step() if step is None else step
        if step is None:
            raise CheckpointError(f"no checkpoint in {self.directory}")
        where = self.directory / str(step)
        target = jax.tree.map(ocp.utils.to_shape_dtype_struct, abstract_state)
        try:
            saved = self._mngr.item_metadata(step)["state"].tree
        except Exception as e:
            raise _corrupt(where, e) from None
        mismatch = _first_mismatch(_shapes(saved), _shapes(target))
        if mismatch:
            raise CheckpointError(
                f"checkpoint {where} does not match this model/config (another architecture or "
                f"method?): {mismatch}"
            )
        args = ocp.args.Composite(
            state=ocp.args.StandardRestore(target), meta=ocp.args.JsonRestore()
        )
        try:
            out = self._mngr.restore(step, args=args)
        except Exception as e:
            raise _corrupt(where, e) from None
        return out.state, dict(out.meta)

    def close(self) -> None:
        self._mngr.wait_until_finished()
        self._mngr.close()


def _corrupt(where, e: Exception) -> CheckpointError:
    first = str(e).splitlines()[0][:300] if str(e) else ""
    return CheckpointError(
        f"checkpoint {where} is unreadable or corrupt ({type(e).__name__}: {first}); "
        "nothing was deleted"
    )


def _key_name(k) -> str:
    for attr in ("name", "key", "idx"):
        if hasattr(k, attr):
            return str(getattr(k, attr))
    return str(k)


def _shapes(tree) -> dict[str, tuple]:
    """`{"potential/params/dense_0/kernel": shape}` for the array leaves of `tree`."""
    flat, _ = jax.tree_util.tree_flatten_with_path(tree, is_leaf=lambda x: hasattr(x, "shape"))
    return {
        "/".join(_key_name(k) for k in path): tuple(leaf.shape)
        for path, leaf in flat
        if hasattr(leaf, "shape")
    }


def _first_mismatch(saved: dict, wanted: dict) -> str | None:
    missing = sorted(set(wanted) - set(saved))
    extra = sorted(set(saved) - set(wanted))
    if missing or extra:
        parts = [
            f"{label}: {', '.join(paths[:3])}{' ...' if len(paths) > 3 else ''}"
            for label, paths in (("only in the model", missing), ("only in the checkpoint", extra))
            if paths
        ]
        return "; ".join(parts)
    for path, shape in wanted.items():
        if saved[path] != shape:
            return f"{path} has shape {saved[path]} in the checkpoint, {shape} in the model"
    return None

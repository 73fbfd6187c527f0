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
            self._mngr = ocp.CheckpointManager(self.directory, options=options)
        except Exception as e:
            raise CheckpointError(f"cannot open checkpoint directory {self.directory}: {e}") from e

    def latest_step(self) -> int | None:
        return self._mngr.latest_step()

    def all_steps(self) -> list[int]:
        return list(self._mngr.all_steps())

    def save(self, step: int, state, meta: dict, *, wait: bool = True) -> None:
        args = ocp.args.Composite(state=ocp.args.StandardSave(state), meta=ocp.args.JsonSave(meta))
        self._mngr.save(int(step), args=args, force=True)
        if wait:
            self._mngr.wait_until_finished()

    def restore(self, abstract_state, step: int | None = None):
        """Restore `(state, meta)` at `step` (newest when None) into the structure, shapes and
        shardings of `abstract_state` (a state pytree or its `jax.ShapeDtypeStruct`s)."""
        step = self.latest_step() if step is None else step
        where = self.directory / str(step)
        if step is None:
            raise CheckpointError(f"no checkpoint in {self.directory}")
        target = jax.tree.map(ocp.utils.to_shape_dtype_struct, abstract_state)
        args = ocp.args.Composite(
            state=ocp.args.StandardRestore(target), meta=ocp.args.JsonRestore()
        )
        try:
            out = self._mngr.restore(step, args=args)
        except (ValueError, KeyError, TypeError) as e:
            raise CheckpointError(
                f"checkpoint {where} does not match this model/config (different architecture or "
                f"method?): {str(e).splitlines()[0][:300]}"
            ) from None
        except Exception as e:
            raise CheckpointError(
                f"checkpoint {where} is unreadable or corrupt ({type(e).__name__}: "
                f"{str(e).splitlines()[0][:300] if str(e) else ''}); nothing was deleted"
            ) from None
        return out.state, dict(out.meta)

    def close(self) -> None:
        self._mngr.wait_until_finished()
        self._mngr.close()

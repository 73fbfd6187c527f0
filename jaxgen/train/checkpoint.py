"""Atomic, resumable checkpoints (orbax `CheckpointManager`).

A checkpoint holds the whole state pytree (params, optimizer state, EMA, step, key, and any
method buffers) plus JSON metadata (data cursor, config). orbax writes into a temporary folder
and renames it when complete, so a killed run never leaves a half-written "latest" checkpoint.
Errors name the directory and never delete anything.
"""

import contextlib
import errno
import functools
import logging
import os
import re
import shutil
from pathlib import Path

import jax
import numpy as np
import orbax.checkpoint as ocp

from jaxgen.parallel.hosts import any_process, barrier, is_primary

logging.getLogger("absl").setLevel(logging.WARNING)


@contextlib.contextmanager
def _quiet_orbax():
    """orbax logs each unreadable file or failed write at ERROR (its own log and asyncio's
    "exception was never retrieved") before raising; the raised error says it once."""
    loggers = [logging.getLogger(name) for name in ("absl", "asyncio")]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        for logger, level in zip(loggers, levels, strict=True):
            logger.setLevel(level)


# orbax's replica-parallel save (its default off GPU) has every replica of a replicated array write
# a slice of it, cut by `lax.slice_in_dim` with static bounds: one XLA compile per (shape, slice)
# on every save, ~45 ms each on this CPU and 344 of them in DDGAN's smallest image state (16 s of a
# 90 s smoke run). Below 4 MiB per slice the parallel write saves nothing, so only larger arrays
# (a pod's big kernels) are still split; the bytes on disk are the same either way.
MIN_SLICE_BYTES_FOR_REPLICA_PARALLEL = 4 << 20


@functools.cache
def _register_array_handler() -> None:
    """Once per process: orbax's `jax.Array` handler with the replica-parallel threshold above
    (otherwise its default handler, array metadata store included)."""
    from orbax.checkpoint._src.metadata import array_metadata_store

    handler = ocp.type_handlers.ArrayHandler(
        array_metadata_store=array_metadata_store.Store(),
        min_slice_bytes_for_replica_parallel=MIN_SLICE_BYTES_FOR_REPLICA_PARALLEL,
    )
    with _quiet_orbax():  # absl warns of the override
        ocp.type_handlers.register_type_handler(jax.Array, handler, override=True)


class CheckpointError(RuntimeError):
    """A checkpoint could not be read, written, or does not match the model being restored."""


class UnreadableCheckpointError(CheckpointError):
    """A checkpoint's files cannot be read (truncated, corrupted, half-copied)."""


class Checkpoints:
    """Save and restore `(state, meta)` under `directory`, keeping the newest `max_to_keep`."""

    def __init__(self, directory: str | Path, *, max_to_keep: int = 3):
        self.directory = Path(directory).absolute()
        _register_array_handler()
        options = ocp.CheckpointManagerOptions(max_to_keep=max_to_keep, create=True)
        try:
            with _quiet_orbax():  # it reads every step's metadata; unreadable ones are ours
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
        with _quiet_orbax():
            return self._mngr.latest_step()

    def all_steps(self) -> list[int]:
        with _quiet_orbax():
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
        try:
            with _quiet_orbax():  # a failed write is logged by each of orbax's threads
                self._mngr.save(int(step), args=args, force=True)
                if wait:
                    self._mngr.wait_until_finished()
        except Exception as e:
            if jax.process_count() > 1 and int(step) in self.all_steps():
                # written; the barrier after it failed: another process of the run is gone
                raise
            older = [s for s in self.all_steps() if s < int(step)]
            raise _write_failed(self.directory / str(step), e, bool(older)) from None

    def read_meta(self, step: int | None = None) -> dict:
        """The JSON metadata saved with checkpoint `step` (newest when None), without the state."""
        step = self.latest_step() if step is None else step
        where = self.directory / str(step)
        try:
            with _quiet_orbax():
                args = ocp.args.Composite(meta=ocp.args.JsonRestore())
                out = self._mngr.restore(step, args=args)
        except Exception as e:
            raise _corrupt(where, e) from None
        return dict(out.meta)

    def restore_newest(self, abstract_state, *, say=print, move_aside: bool = True):
        """`(state, meta)` of the newest checkpoint that can be read, trying older ones when a
        newer one is unreadable. Only once an older one has restored are the unreadable newer
        ones moved to `<directory>_unreadable/` (never deleted; by process 0; `move_aside=False`
        leaves them, for readers that do not hold the workdir's lock), each with one warning
        line. When none can be read, the newest one's error is raised and nothing is moved. A
        checkpoint of another model still raises (`restore`)."""
        steps = sorted(self.all_steps(), reverse=True)
        if not steps:
            raise CheckpointError(f"no checkpoint in {self.directory}")
        unreadable = []
        for step in steps:
            try:
                out = self._restore_everywhere(abstract_state, step)
            except UnreadableCheckpointError as e:
                unreadable.append((step, e))
                continue
            self._set_aside(unreadable, step, say, move_aside)
            return out
        raise unreadable[0][1]

    def _restore_everywhere(self, abstract_state, step):
        """`restore`, with every process of a multi-host run agreeing whether it worked."""
        try:
            out, error = self.restore(abstract_state, step), None
        except UnreadableCheckpointError as e:
            out, error = None, e
        if any_process(error is not None) and error is None:
            error = UnreadableCheckpointError(
                f"checkpoint {self.directory / str(step)} is unreadable on another process"
            )
        if error is not None:
            raise error
        return out

    def _set_aside(self, unreadable, used: int, say, move_aside: bool) -> None:
        for step, e in unreadable:
            moved = self._move_aside(step) if move_aside and is_primary() else None
            where = f"moved to {moved}" if moved else "left in place"
            say(f"warning: {_short(e)}; {where}, using step {used}")
        if unreadable and move_aside:
            barrier("moved aside unreadable checkpoints")
            with _quiet_orbax():
                self._mngr.reload()

    def _move_aside(self, step: int) -> Path | None:
        aside = self.directory.parent / f"{self.directory.name}_unreadable"
        target = aside / str(step)
        n = 1
        while target.exists():
            target, n = aside / f"{step}.{n}", n + 1
        try:
            aside.mkdir(exist_ok=True)
            shutil.move(str(self.directory / str(step)), str(target))
        except OSError:
            return None
        return target

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
        target = jax.tree.map(_with_sharding, abstract_state)
        try:
            with _quiet_orbax():
                saved = self._mngr.item_metadata(step)["state"].tree
            if saved is None:
                raise ValueError("no state metadata")
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
            with _quiet_orbax():
                out = self._mngr.restore(step, args=args)
        except Exception as e:
            if _not_the_files(e):  # memory, layout: the checkpoint itself may be fine
                raise CheckpointError(f"could not restore {where}: {_first_line(e)}") from None
            raise _corrupt(where, e) from None
        return out.state, dict(out.meta)

    def close(self) -> None:
        self._mngr.wait_until_finished()
        self._mngr.close()


def _first_line(e: Exception) -> str:
    text = str(e).splitlines()[0][:300] if str(e) else ""
    return f"{type(e).__name__}: {text}"


def _not_the_files(e: Exception) -> bool:
    """Errors of this machine, not of the checkpoint's files: out of memory, a sharding that
    does not divide an array."""
    text = f"{type(e).__name__} {e}".lower()
    return any(w in text for w in ("out of memory", "indivisible", "divisible by", "sharding"))


def _short(e: Exception) -> str:
    return str(e).split("; nothing was")[0]


def _with_sharding(leaf):
    """The restore target of one leaf: its own sharding, else replicated over every device
    (so a checkpoint written by another topology, e.g. a pod, restores here)."""
    out = ocp.utils.to_shape_dtype_struct(leaf)
    if getattr(out, "sharding", None) is not None:
        return out
    mesh = jax.sharding.Mesh(np.asarray(jax.devices()), ("all",))
    sharding = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec())
    return jax.ShapeDtypeStruct(out.shape, out.dtype, sharding=sharding)


def _corrupt(where, e: Exception) -> CheckpointError:
    return UnreadableCheckpointError(
        f"checkpoint {where} is unreadable or corrupt ({_first_line(e)}); nothing was deleted"
    )


def _root_os_error(e: BaseException) -> OSError | None:
    """The first `OSError` in `e`'s chain of causes (orbax wraps them in its own errors), or
    one rebuilt from tensorstore's `[os_error_code='28']` text."""
    seen = set()
    while e is not None and id(e) not in seen:
        if isinstance(e, OSError) and e.errno:
            return e
        code = re.search(r"os_error_code='(\d+)'", str(e))
        if code:
            return OSError(int(code.group(1)), os.strerror(int(code.group(1))))
        seen.add(id(e))
        e = e.__cause__ or e.__context__
    return None


_WRITE_ERRNOS = {
    errno.ENOSPC: "the disk is full",
    errno.EDQUOT: "the disk quota is exceeded",
    errno.EROFS: "the file system is read-only",
    errno.EACCES: "permission denied",
    errno.EPERM: "permission denied",
}


def _write_failed(where, e: Exception, older: bool) -> CheckpointError:
    """One line for a failed save, naming the OS cause when there is one; older checkpoints are
    untouched (orbax writes into a temporary folder and renames it only when complete)."""
    os_error = _root_os_error(e)
    if os_error is not None:
        cause = _WRITE_ERRNOS.get(os_error.errno, os_error.strerror or str(os_error))
        detail = (
            f"{cause} ({os_error.strerror}{', ' + os_error.filename if os_error.filename else ''})"
        )
    else:
        detail = _first_line(e)
    return CheckpointError(
        f"could not write checkpoint {where}: {detail}; "
        + (
            "the older checkpoints are intact, and the same command resumes from the newest "
            "once the cause is fixed"
            if older
            else "there is no earlier checkpoint: the same command starts again once the cause "
            "is fixed"
        )
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

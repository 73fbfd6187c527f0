"""State fields kept once per run, outside the checkpoints.

Some state never changes while a run trains: FDRL's data-dependent prior is a mean and a
Cholesky factor fitted to the data before step 0 (604 MB at 64×64×3, 9.7 GB at 128×128×3).
Writing it into every checkpoint multiplies the disk and the write time by the number of
checkpoints for nothing. `FixedFieldCheckpoints` wraps a `Checkpoints` store: each save writes
the state with every field of `fields` replaced by a stub of shape (1,)*ndim, and each restore
reads the stubs and puts back the run's values, which `load()` returns once (numpy, by field
name) and which are placed with the restore target's sharding. `save_fields` / `load_fields`
keep them in one `.npz` written by an atomic rename; a damaged one is one line naming it and the
fix (`jaxgen.io.SideFileError`).
"""

from pathlib import Path

import jax
import numpy as np

from jaxgen.io import atomic_savez, load_side_npz
from jaxgen.train.checkpoint import CheckpointError, _with_sharding

# what a damaged fields file is, and its fix: the fixed fields are a run's data fit, which is
# deterministic and refitted when its file is missing
FIELDS_WHAT = "the run's data fit"
FIELDS_FIX = "delete it: the trainer refits it bit-identically on the training data"


def save_fields(path: str | Path, values: dict) -> None:
    """Write `values` (field name -> array) to `path` (`.npz`), atomically."""
    atomic_savez(path, values)


def load_fields(path: str | Path) -> dict:
    """The arrays `save_fields` wrote to `path`, by field name; a damaged file (cut short,
    empty, not an `.npz`) is one `SideFileError` naming it and the fix (delete it)."""
    return load_side_npz(path, FIELDS_WHAT, FIELDS_FIX)


def host_value(x) -> np.ndarray:
    """A replicated array's full value on this host (multi-host safe: no gather)."""
    if isinstance(x, jax.Array) and not x.is_fully_addressable:
        return np.asarray(x.addressable_data(0))
    return np.asarray(x)


def _place(value: np.ndarray, sharding):
    return jax.make_array_from_callback(value.shape, sharding, lambda index: value[index])


def _stub(leaf):
    shape = (1,) * len(leaf.shape)
    if isinstance(leaf, jax.Array):
        return _place(np.zeros(shape, leaf.dtype), leaf.sharding)
    return jax.ShapeDtypeStruct(shape, leaf.dtype, sharding=getattr(leaf, "sharding", None))


def stubbed(state, fields):
    """`state` (a `flax.struct` dataclass of arrays or `ShapeDtypeStruct`s) with each field in
    `fields` replaced by its (1,)*ndim stub."""
    return state.replace(**{f: jax.tree.map(_stub, getattr(state, f)) for f in fields})


class FixedFieldCheckpoints:
    """A `Checkpoints` store whose checkpoints hold stubs for `fields`; their values come from
    `load() -> {field: array}` (called at the first restore; `source` names where they come
    from, with the fix, in the error for a wrong shape). Everything else is delegated."""

    def __init__(self, store, fields, load, source: str = ""):
        self._store, self.fields, self._load, self._values = store, tuple(fields), load, None
        self._source = source

    def __getattr__(self, name):
        return getattr(self._store, name)

    def save(self, step: int, state, meta: dict, **kwargs) -> None:
        self._store.save(step, stubbed(state, self.fields), meta, **kwargs)

    def restore(self, abstract_state, step: int | None = None):
        state, meta = self._store.restore(stubbed(abstract_state, self.fields), step)
        return self._filled(state, abstract_state), meta

    def restore_newest(self, abstract_state, **kwargs):
        state, meta = self._store.restore_newest(stubbed(abstract_state, self.fields), **kwargs)
        return self._filled(state, abstract_state), meta

    def _filled(self, state, abstract_state):
        if self._values is None:
            self._values = self._load()
        filled = {}
        for field in self.fields:
            want, value = getattr(abstract_state, field), self._values.get(field)
            if value is None or tuple(value.shape) != tuple(want.shape):
                got = "missing" if value is None else f"shape {tuple(value.shape)}"
                where = f" in {self._source}" if self._source else ""
                raise CheckpointError(
                    f"the run's fixed state field {field!r}{where} is {got}; this model needs "
                    f"shape {tuple(want.shape)}"
                )
            sharding = _with_sharding(want).sharding
            filled[field] = _place(np.asarray(value, want.dtype), sharding)
        return state.replace(**filled)

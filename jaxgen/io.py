"""Side files of a run (a data fit, evaluation rounds, reference statistics, saved configs):
written atomically, so a reader sees the old file or the whole new one, never a partial file;
read back with one line naming the file and its fix when a file is damaged anyway (cut short
by a copy, emptied, overwritten).

- `atomic_write(path, write)`, `atomic_write_text(path, text)`, `atomic_savez(path, arrays)`:
  a temporary file beside `path`, flushed to disk (fsync), then renamed onto it; a full disk is
  `OSError(ENOSPC, ..., path)` naming `path` (numpy's short writes included), and the temporary
  file is removed.
- `load_side_npz` / `load_side_npy` / `load_side_json`: a file's content, or `SideFileError`
  (an `OSError` whose message is the one line `PATH: <what> is unreadable (<why>); <fix>`).
  Nothing is deleted: the fix says what to do.
"""

import errno
import json
import os
import re
import struct
import tempfile
import zipfile
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

import numpy as np

# numpy's `tofile` (np.save to a real file) reports a short write without an errno
_SHORT_WRITE = re.compile(r"\d+ requested and \d+ written")
_DISK_FULL = (errno.ENOSPC, errno.EDQUOT)


class SideFileError(OSError):
    """A run's side file that cannot be read: its message is one line naming the file, what it
    holds, what is wrong and the fix (`strerror` is None, so the CLIs print the message)."""


def atomic_write(path, write: Callable[[BinaryIO], None]) -> Path:
    """Call `write(f)` on a temporary file beside `path`, fsync it, then rename it onto `path`.

    The parent folder is created; the file gets mode 0644 (`mkstemp` makes 0600 files); on any
    error the temporary file is removed and `path` is left as it was. A full disk (or quota),
    including numpy's "N requested and M written", is raised as `OSError(ENOSPC, ..., path)`.
    Returns `path`.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name + ".", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException as e:
        if os.path.exists(tmp):
            os.unlink(tmp)
        if isinstance(e, OSError) and _is_disk_full(e):
            code = e.errno if e.errno in _DISK_FULL else errno.ENOSPC
            raise OSError(code, os.strerror(code), str(path)) from None
        raise
    _sync_folder(path.parent)
    return path


def _is_disk_full(e: OSError) -> bool:
    return e.errno in _DISK_FULL or (e.errno is None and bool(_SHORT_WRITE.search(str(e))))


def _sync_folder(folder: Path) -> None:
    """Flush the rename to disk (best effort: some file systems cannot open a folder)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def atomic_write_text(path, text: str) -> Path:
    """`text` (UTF-8) to `path`, atomically (`atomic_write`)."""
    return atomic_write(path, lambda f: f.write(text.encode()))


def atomic_savez(path, arrays: dict) -> Path:
    """The arrays `arrays` (name -> array) to the `.npz` file `path`, atomically."""
    arrays = {k: np.asarray(v) for k, v in arrays.items()}
    return atomic_write(path, lambda f: np.savez(f, **arrays))


# what a damaged file raises while it is parsed (a missing or unreadable file is an OSError,
# raised as it is)
_DAMAGED = (
    ValueError,
    EOFError,
    KeyError,
    zipfile.BadZipFile,
    zlib.error,
    struct.error,
    UnicodeDecodeError,
)


def _read_side(path, what: str, fix: str, magic: bytes, kind: str, read: Callable):
    path = Path(path)
    with open(path, "rb") as f:
        head = f.read(len(magic) or 1)
    why = None
    if not head:
        why = "empty"
    elif not head.startswith(magic):
        why = f"not {kind}"
    else:
        try:
            return read(path)
        except _DAMAGED as e:
            text = str(e).splitlines()[0] if str(e) else type(e).__name__
            why = f"cut short or corrupt: {text}"
    raise SideFileError(f"{path}: {what} is unreadable ({why}); {fix}")


def _npz_arrays(path: Path) -> dict:
    with np.load(path, allow_pickle=False) as z:
        return {k: z[k] for k in z.files}  # reads every member: a damaged one fails here


def _json_object(path: Path) -> dict:
    tree = json.loads(path.read_text(encoding="utf-8"))
    if not isinstance(tree, dict):
        raise ValueError(f"a JSON {type(tree).__name__}, not an object")
    return tree


def load_side_npz(path, what: str, fix: str) -> dict:
    """The arrays (name -> numpy array) of the `.npz` file `path`; a damaged file is one
    `SideFileError` naming `path`, `what` it holds and the `fix`."""
    return _read_side(path, what, fix, b"PK", "an .npz archive", _npz_arrays)


def load_side_npy(path, what: str, fix: str) -> np.ndarray:
    """The array of the `.npy` file `path` (`SideFileError` when damaged, as `load_side_npz`)."""
    return _read_side(
        path, what, fix, b"\x93NUMPY", "an .npy file", lambda p: np.load(p, allow_pickle=False)
    )


def load_side_json(path, what: str, fix: str) -> dict:
    """The JSON object in `path` (`SideFileError` when damaged, as `load_side_npz`)."""
    return _read_side(path, what, fix, b"", "JSON", _json_object)

"""Weights for the FID Inception-v3: pytorch-fid state dict <-> Flax variables, pinned by SHA-256.

The standard file is pytorch-fid's `pt_inception-2015-12-05-6726825d.pth` (95,628,359 bytes), a
torch state dict of the 2015 TF Inception graph. Nothing is downloaded: the user supplies the file
(argument or `$JAXGEN_INCEPTION_WEIGHTS`). Two formats are read:

- `.pth`: the original file; its SHA-256 must equal `PT_FID_WEIGHTS_SHA256`. Needs torch.
- `.npz`: written by `python -m jaxgen.metrics.inception_weights in.pth out.npz`, the same keys as
  float32 arrays plus `__source_sha256__` (the verified digest of the `.pth` it came from) and
  `__content_sha256__` (a digest of the arrays, checked on load). No torch needed at run time.
  (An `.npz` file's own bytes carry zip timestamps, so its file hash cannot be pinned.)

Errors: a missing file raises `InceptionWeightsUnavailable` (a `FileNotFoundError`); any other bad
file (not a regular file, unreadable, not an `.npz` archive, arrays that are not the network's, a
digest that does not match) raises an `InceptionWeightsError` (a `ValueError`) whose one-line
message names the file and what is wrong with it. `experiments.evaluate` turns both into "FID
unavailable" and runs the other metrics.

Key mapping (torch -> Flax), for every `BasicConv2d` at `<path>` (e.g. `Mixed_6b.branch7x7_2`):
`<path>.conv.weight` [O, I, kh, kw] -> params `<path>/conv/kernel` [kh, kw, I, O];
`<path>.bn.weight|bias` -> params `<path>/bn/scale|bias`;
`<path>.bn.running_mean|running_var` -> batch_stats `<path>/bn/mean|var`
(`num_batches_tracked` is ignored); `fc.weight` [1008, 2048] -> params `fc/kernel` [2048, 1008],
`fc.bias` -> params `fc/bias`.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import sys
from collections.abc import Mapping

import jax
import jax.numpy as jnp
import numpy as np
from flax import traverse_util

from jaxgen.metrics.inception import FIDInception, InceptionV3

PT_FID_WEIGHTS_FILENAME = "pt_inception-2015-12-05-6726825d.pth"
# Full digest of the pytorch-fid release asset; its first 8 hex digits are the torch-hub suffix.
PT_FID_WEIGHTS_SHA256 = "6726825d0af5f729cebd5821db510b11b1cfad8faad88a03f1befd49fb9129b2"
ENV_VAR = "JAXGEN_INCEPTION_WEIGHTS"

# (Flax collection, Flax leaf) for each torch parameter suffix; `transpose` maps torch -> Flax.
_LEAVES = {
    "conv.weight": ("params", ("conv", "kernel"), (2, 3, 1, 0)),
    "bn.weight": ("params", ("bn", "scale"), None),
    "bn.bias": ("params", ("bn", "bias"), None),
    "bn.running_mean": ("batch_stats", ("bn", "mean"), None),
    "bn.running_var": ("batch_stats", ("bn", "var"), None),
    "weight": ("params", ("kernel",), (1, 0)),  # fc only
    "bias": ("params", ("bias",), None),  # fc only
}
_TO_TORCH = {(coll, leaf): (suffix, perm) for suffix, (coll, leaf, perm) in _LEAVES.items()}


class InceptionWeightsUnavailable(FileNotFoundError):
    """No weights file at the configured path ("unavailable: no Inception weights at <path>")."""


class InceptionWeightsError(ValueError):
    """The file at the configured path is not usable Inception weights; the one-line message
    names the file and what is wrong with it."""


class InceptionWeightsHashError(InceptionWeightsError):
    """The weights file is not the pinned one (message names expected and actual SHA-256)."""


class InceptionWeightsInvalid(InceptionWeightsError):
    """The file is not an Inception weights file ("not an Inception weights file: <path> (why)")
    or cannot be read."""


class InceptionWeightsNeedTorch(InceptionWeightsError, ImportError):
    """A `.pth` was given but torch is not installed (also an `ImportError`)."""


_CONVERT_HINT = "convert the .pth with `python -m jaxgen.metrics.inception_weights in.pth out.npz`"


def _invalid(path, why: str) -> InceptionWeightsInvalid:
    return InceptionWeightsInvalid(f"not an Inception weights file: {path} ({_one_line(why)})")


def _unreadable(path, e: OSError) -> InceptionWeightsInvalid:
    return InceptionWeightsInvalid(
        f"cannot read Inception weights file {path}: {e.strerror or _describe(e)}"
    )


def _one_line(text) -> str:
    lines = str(text).strip().splitlines()
    return lines[0].strip() if lines else ""


def _describe(e: BaseException) -> str:
    """`Type: first line of the message` of an exception."""
    msg = _one_line(e)
    return f"{type(e).__name__}: {msg}" if msg else type(e).__name__


def resolve_weights_path(path: str | os.PathLike | None = None) -> str:
    """`path`, else `$JAXGEN_INCEPTION_WEIGHTS`, else the placeholder "$JAXGEN_INCEPTION_WEIGHTS
    (unset)" (which never exists)."""
    if path is not None and str(path):
        return os.fspath(path)
    return os.environ.get(ENV_VAR) or f"${ENV_VAR} (unset)"


def unavailable_reason(path: str | os.PathLike | None = None) -> str | None:
    """One-line reason why no weights can be loaded ("unavailable: ..."), or None if a regular
    file is there (its content is checked by `load_variables`)."""
    resolved = resolve_weights_path(path)
    if os.path.isfile(resolved):
        return None
    if os.path.isdir(resolved):
        return f"unavailable: {_invalid(resolved, 'a directory, not a file')}"
    return f"unavailable: no Inception weights at {resolved}"


def sha256_file(path: str | os.PathLike) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _check_hash(actual: str, expected: str | None, what: str) -> None:
    """`what` is e.g. "SHA-256 of <path>"; one line naming both digests on a mismatch."""
    if expected is not None and actual != expected:
        raise InceptionWeightsHashError(
            f"{what} ({actual}) does not match the pinned pytorch-fid weights "
            f"{PT_FID_WEIGHTS_FILENAME} (expected SHA-256 {expected})"
        )


def variable_shapes() -> dict:
    """Shapes of the Flax variables {"params": ..., "batch_stats": ...} (no computation)."""
    x = jax.ShapeDtypeStruct((1, 75, 75, 3), jnp.float32)
    shapes = jax.eval_shape(InceptionV3().init, jax.random.key(0), x)
    return jax.tree.map(lambda s: tuple(s.shape), dict(shapes))


def _torch_key(collection: str, flax_path: tuple[str, ...]) -> tuple[str, tuple | None]:
    """("params", ("Mixed_5b", "branch1x1", "conv", "kernel")) -> ("Mixed_5b.branch1x1.conv.weight",
    permutation from torch to Flax layout or None)."""
    for n in (2, 1):
        if (collection, flax_path[-n:]) in _TO_TORCH:
            suffix, perm = _TO_TORCH[(collection, flax_path[-n:])]
            return ".".join((*flax_path[:-n], suffix)), perm
    raise KeyError(f"no torch name for {collection}/{'/'.join(flax_path)}")


def _flat_variables(tree) -> dict[tuple[str, tuple[str, ...]], object]:
    return {
        (coll, path): leaf
        for coll in ("params", "batch_stats")
        for path, leaf in traverse_util.flatten_dict(tree[coll]).items()
    }


def state_dict_shapes() -> dict[str, tuple[int, ...]]:
    """Expected pytorch-fid state-dict keys and torch-layout shapes (num_batches_tracked aside)."""
    out = {}
    for (coll, path), shape in _flat_variables(variable_shapes()).items():
        key, perm = _torch_key(coll, path)
        out[key] = tuple(shape[i] for i in np.argsort(perm)) if perm else tuple(shape)
    return out


def state_dict_to_variables(state_dict: Mapping[str, np.ndarray]) -> dict:
    """pytorch-fid state dict (torch layout arrays) -> Flax variables (float32 numpy leaves).

    Strict: a missing or unexpected key or a wrong shape raises ValueError naming it.
    """
    expected = state_dict_shapes()
    given = {k: v for k, v in state_dict.items() if not k.endswith("num_batches_tracked")}
    missing, unexpected = sorted(set(expected) - set(given)), sorted(set(given) - set(expected))
    if missing or unexpected:
        raise ValueError(
            f"state dict keys differ: missing {missing[:5]}, unexpected {unexpected[:5]}"
        )
    flat = {}
    for coll, path in _flat_variables(variable_shapes()):
        key, perm = _torch_key(coll, path)
        value = np.asarray(given[key], np.float32)
        if value.shape != expected[key]:
            raise ValueError(f"{key}: shape {value.shape}, expected {expected[key]}")
        flat[(coll, *path)] = np.ascontiguousarray(value.transpose(perm) if perm else value)
    return traverse_util.unflatten_dict(flat)


def variables_to_state_dict(variables) -> dict[str, np.ndarray]:
    """Flax variables -> pytorch-fid state dict (torch layout, float32 numpy); the inverse."""
    out = {}
    for (coll, path), leaf in _flat_variables(variables).items():
        key, perm = _torch_key(coll, path)
        value = np.asarray(leaf, np.float32)
        out[key] = np.ascontiguousarray(value.transpose(np.argsort(perm)) if perm else value)
    return out


def content_sha256(state_dict: Mapping[str, np.ndarray]) -> str:
    """Digest of a state dict's arrays (sorted keys, dtype, shape, bytes); format-independent."""
    digest = hashlib.sha256()
    for key in sorted(state_dict):
        value = np.ascontiguousarray(state_dict[key])
        digest.update(f"{key}|{value.dtype.str}|{value.shape}|".encode())
        digest.update(value.tobytes())
    return digest.hexdigest()


def _file_sha256(path) -> str:
    try:
        return sha256_file(path)
    except OSError as e:
        raise _unreadable(path, e) from None


def read_pth(path, *, expected_sha256: str | None = PT_FID_WEIGHTS_SHA256) -> dict[str, np.ndarray]:
    """Read the pytorch-fid `.pth` (hash-checked before unpickling) as float32 numpy arrays."""
    _check_hash(_file_sha256(path), expected_sha256, f"SHA-256 of {path}")
    try:
        import torch
    except ImportError:
        raise InceptionWeightsNeedTorch(
            f"cannot read Inception weights file {path}: reading a .pth needs torch; convert it "
            "once elsewhere with `python -m jaxgen.metrics.inception_weights in.pth out.npz`"
        ) from None
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
        return {
            k: v.detach().numpy().astype(np.float32)
            for k, v in state.items()
            if not k.endswith("num_batches_tracked")
        }
    except Exception as e:  # torch raises many types on a file that is not a state dict
        raise _invalid(path, f"torch cannot read it as a state dict: {_describe(e)}") from None


def save_npz(state_dict: Mapping[str, np.ndarray], path, *, source_sha256: str) -> None:
    """Write the state dict (float32) plus source and content digests to `path` (.npz)."""
    arrays = {k: np.asarray(v, np.float32) for k, v in state_dict.items()}
    np.savez(
        path,
        __source_sha256__=np.array(source_sha256),
        __content_sha256__=np.array(content_sha256(arrays)),
        **arrays,
    )


_NPZ_DIGESTS = ("__source_sha256__", "__content_sha256__")


def _npz_arrays(path) -> dict[str, np.ndarray]:
    """Every array of the `.npz` at `path` (no pickles), or `InceptionWeightsInvalid`."""
    try:
        with open(path, "rb") as f:
            magic = f.read(4)
    except OSError as e:
        raise _unreadable(path, e) from None
    if magic != b"PK\x03\x04":  # np.load would try to unpickle anything that is not a zip
        raise _invalid(path, f"not an .npz archive; {_CONVERT_HINT}")
    try:
        with np.load(path, allow_pickle=False) as data:
            return {k: data[k] for k in data.files}
    except Exception as e:  # zipfile, zlib and numpy raise many types on a damaged archive
        raise _invalid(path, f"unreadable .npz, {_describe(e)}; {_CONVERT_HINT}") from None


def read_npz(path, *, expected_sha256: str | None = PT_FID_WEIGHTS_SHA256) -> dict[str, np.ndarray]:
    """Read a converted `.npz`; check its recorded source digest and its content digest."""
    arrays = _npz_arrays(path)
    absent = [k for k in _NPZ_DIGESTS if k not in arrays]
    if absent:
        raise _invalid(path, f"no {' or '.join(absent)} entry; {_CONVERT_HINT}")
    try:
        source, recorded = (str(arrays.pop(k)[()]) for k in _NPZ_DIGESTS)
        actual = content_sha256(arrays)
    except (TypeError, ValueError) as e:
        raise _invalid(path, f"unexpected entries, {_describe(e)}") from None
    _check_hash(source, expected_sha256, f"recorded source SHA-256 of {path}")
    if actual != recorded:
        raise InceptionWeightsHashError(
            f"content SHA-256 of {path} ({actual}) does not match the one recorded in it "
            f"({recorded}): the file is corrupt; {_CONVERT_HINT} again"
        )
    return arrays


def load_variables(path=None, *, expected_sha256: str | None = PT_FID_WEIGHTS_SHA256) -> dict:
    """Flax variables from a `.pth` or converted `.npz` at `path` / `$JAXGEN_INCEPTION_WEIGHTS`.

    `expected_sha256=None` skips the pin (only for test weights).
    """
    resolved = resolve_weights_path(path)
    if os.path.isdir(resolved):
        raise _invalid(resolved, "a directory, not a file")
    reason = unavailable_reason(resolved)
    if reason:
        raise InceptionWeightsUnavailable(reason)
    reader = read_npz if resolved.endswith(".npz") else read_pth
    state_dict = reader(resolved, expected_sha256=expected_sha256)
    try:
        return state_dict_to_variables(state_dict)
    except ValueError as e:  # keys or shapes are not the network's
        raise _invalid(resolved, str(e)) from None


def convert(src, dst, *, expected_sha256: str | None = PT_FID_WEIGHTS_SHA256) -> str:
    """`.pth` -> `.npz`, checked against the network's keys and shapes; returns the .pth digest."""
    source_sha = _file_sha256(src)
    state = read_pth(src, expected_sha256=expected_sha256)
    try:
        state_dict_to_variables(state)  # validates keys and shapes
    except ValueError as e:
        raise _invalid(src, str(e)) from None
    save_npz(state, dst, source_sha256=source_sha)
    return source_sha


def load_fid_inception(
    path: str | os.PathLike | None = None, *, batch_size: int = 32, **kwargs
) -> FIDInception:
    """The FID network with weights from `path` or `$JAXGEN_INCEPTION_WEIGHTS` (.pth or .npz).

    Strict: raises `InceptionWeightsUnavailable` ("unavailable: no Inception weights at <path>")
    when the file is missing, and an `InceptionWeightsError` (a ValueError with one line naming
    the file and the problem) for any other bad file: `InceptionWeightsHashError` when it is not
    the pinned file, `InceptionWeightsInvalid` when it is not an Inception weights file at all.
    `kwargs` go to `load_variables` (e.g. `expected_sha256=None` for test
    weights).
    """
    variables = load_variables(path, **kwargs)
    pinned = kwargs.get("expected_sha256", PT_FID_WEIGHTS_SHA256)
    return FIDInception(
        variables,
        batch_size=batch_size,
        name="fid_inception_pt_2015_12_05",
        weights_hash=pinned or "unverified",
    )


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m jaxgen.metrics.inception_weights",
        description=f"Convert pytorch-fid's {PT_FID_WEIGHTS_FILENAME} to a torch-free .npz.",
    )
    parser.add_argument("src", help="the pytorch-fid .pth file")
    parser.add_argument("dst", help="output .npz")
    parser.add_argument(
        "--expected-sha256",
        default=PT_FID_WEIGHTS_SHA256,
        help="pinned digest of src (default: the standard file); 'none' disables the check",
    )
    args = parser.parse_args(argv)
    expected = None if args.expected_sha256.lower() == "none" else args.expected_sha256
    reason = unavailable_reason(args.src)
    if reason:
        print(reason, file=sys.stderr)
        return 1
    try:
        digest = convert(args.src, args.dst, expected_sha256=expected)
    except ValueError as e:  # InceptionWeightsError and friends: one line each
        print(f"error: {e}", file=sys.stderr)
        return 1
    print(f"wrote {args.dst} (source SHA-256 {digest}); use it with {ENV_VAR}={args.dst}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

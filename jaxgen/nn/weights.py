"""Packaged msgpack weights of the project's own trained networks: the FD-<dataset> feature
extractors (`jaxgen.metrics.features`) and the perceptual network (`jaxgen.nn.perceptual`).

The files live in `jaxgen/metrics/weights/<name>.msgpack` (package data of `jaxgen.metrics`;
`flax.serialization` msgpack of the params dict); a network's `hash` is the SHA-256 of its file.
This module names that folder by path only, so `jaxgen.nn` never imports `jaxgen.metrics`.
"""

import hashlib
from pathlib import Path

import jax
import numpy as np
from flax import serialization

WEIGHTS_DIR = Path(__file__).resolve().parents[1] / "metrics" / "weights"
TRAIN_COMMAND = "python -m tools.train_feature_extractors"


def read_weights(spec, path, *, kind: str, train_args: str = "") -> tuple[dict, str]:
    """`(params, sha256 hex of the file)` of the msgpack weights at `path` for `spec`'s network;
    one-line FileNotFoundError (naming the training command) or ValueError (not msgpack, or
    shapes that do not fit)."""
    path = Path(path)
    if not path.exists():
        command = f"{TRAIN_COMMAND} {train_args}".strip()
        raise FileNotFoundError(f"{kind} weights missing: {path}. Train them with `{command}`")
    try:
        raw = path.read_bytes()
        params = serialization.msgpack_restore(raw)
    except Exception as e:  # msgpack raises several unrelated types on corrupt input
        first = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise ValueError(f"weights {path} are not a flax msgpack file: {first}") from e
    check_structure(spec, params, path)
    return params, hashlib.sha256(raw).hexdigest()


def check_structure(spec, params, path) -> None:
    """ValueError unless `params` has the tree structure and shapes of `spec`'s network (`spec`:
    any spec with `.name` and `.init_params(key)`)."""
    expected = jax.eval_shape(spec.init_params, jax.random.PRNGKey(0))
    exp_shapes = jax.tree.map(lambda a: tuple(a.shape), expected)
    try:
        got_shapes = jax.tree.map(lambda a: tuple(np.shape(a)), params)
        same = jax.tree.structure(exp_shapes) == jax.tree.structure(got_shapes)
    except (TypeError, ValueError):
        same = False
    if not same or exp_shapes != got_shapes:
        raise ValueError(
            f"weights {path} do not match the architecture of {spec.name} "
            f"(expected parameter shapes {exp_shapes})"
        )

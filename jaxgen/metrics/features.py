"""Small deterministic CNN classifiers used as feature extractors for the image data sets here.

Fréchet distance in these features is reported as "FD-<dataset>", never as FID: the networks are
the project's own (trained by `tools/train_feature_extractors.py`, accuracy in
`docs/bench/feature_extractors.json`), not Inception-v3, so the numbers are not comparable to
published FIDs.

Architecture (per spec in `FEATURE_EXTRACTORS`): [conv 3x3 -> ReLU -> max-pool 2x2] per entry of
`channels`, flatten, Dense(feature_dim) -> ReLU (the feature), Dense(num_classes) (the logits).
Weights live in `jaxgen/metrics/weights/<name>.msgpack` (`flax.serialization` msgpack of the
params dict; read and checked by `jaxgen.nn.weights`); an extractor's `hash` is the SHA-256 of
that file.

`CHECK_EXTRACTORS` holds a second, independently trained extractor per data set (other channels,
feature size and seed): scores of a model trained with a loss on some network's features are
checked in it too (`load_extractor(dataset, check=True)`, `eval.check_features`).
"""

from dataclasses import dataclass
from pathlib import Path

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from flax import serialization

from jaxgen.io import atomic_write
from jaxgen.nn.weights import WEIGHTS_DIR, check_structure, read_weights

_RANGE_TOL = 1e-4  # slack on the [-1, 1] range check (float rounding of rescaled pixels)


class FeatureCNN(nn.Module):
    """`[B, H, W, C]` images in [-1, 1] -> (features `[B, feature_dim]`, logits `[B, K]`)."""

    channels: tuple[int, ...]
    feature_dim: int = 128
    num_classes: int = 10

    @nn.compact
    def __call__(self, x):
        for c in self.channels:
            x = nn.relu(nn.Conv(c, (3, 3), padding="SAME")(x))
            x = nn.max_pool(x, (2, 2), strides=(2, 2))
        x = x.reshape(x.shape[0], -1)
        features = nn.relu(nn.Dense(self.feature_dim)(x))
        return features, nn.Dense(self.num_classes)(features)


@dataclass(frozen=True)
class ExtractorSpec:
    """A registered extractor: its name, data set, input shape `(H, W, C)` and architecture."""

    name: str
    dataset: str
    image_shape: tuple[int, int, int]
    channels: tuple[int, ...]
    feature_dim: int = 128
    num_classes: int = 10

    @property
    def weights_path(self) -> Path:
        return WEIGHTS_DIR / f"{self.name}.msgpack"

    def module(self) -> FeatureCNN:
        return FeatureCNN(self.channels, self.feature_dim, self.num_classes)

    def init_params(self, key):
        """Fresh parameters (a dict of arrays) from the PRNG `key`."""
        dummy = jnp.zeros((1, *self.image_shape), jnp.float32)
        return self.module().init(key, dummy)["params"]


FEATURE_EXTRACTORS: dict[str, ExtractorSpec] = {
    "fashion_mnist": ExtractorSpec("fashion_mnist_cnn_v1", "fashion_mnist", (28, 28, 1), (32, 64)),
    "digits": ExtractorSpec("digits_cnn_v1", "digits", (8, 8, 1), (32, 64)),
}
# independent second opinions: another architecture and training seed than FEATURE_EXTRACTORS
CHECK_EXTRACTORS: dict[str, ExtractorSpec] = {
    "fashion_mnist": ExtractorSpec(
        "fashion_mnist_cnn_check_v1", "fashion_mnist", (28, 28, 1), (24, 48, 96), feature_dim=96
    ),
}


def _spec(dataset: str, check: bool = False) -> ExtractorSpec:
    registry = CHECK_EXTRACTORS if check else FEATURE_EXTRACTORS
    if dataset not in registry:
        what = "check extractor" if check else "feature extractor"
        raise ValueError(f"no {what} for data set {dataset!r}; choose one of {sorted(registry)}")
    return registry[dataset]


def save_extractor_weights(spec, params, path=None) -> Path:
    """Write `params` as flax msgpack to `path` (default: the spec's package file), atomically.
    `spec`: any spec with `.name`, `.weights_path` and `.init_params(key)`."""
    path = Path(path) if path is not None else spec.weights_path
    params = jax.tree.map(np.asarray, params)
    check_structure(spec, params, path)
    return atomic_write(path, lambda f: f.write(serialization.to_bytes(params)))


def apply_in_batches(fn, x: np.ndarray, batch_size: int):
    """`fn` over rows of `x` `[N, ...]` (N >= 1) in batches of exactly `batch_size` (the last one
    zero-padded, so a jitted `fn` compiles once); returns `fn`'s output pytree as numpy arrays
    with N rows."""
    outs = []
    for start in range(0, len(x), batch_size):
        chunk = x[start : start + batch_size]
        valid = len(chunk)
        if valid < batch_size:
            pad = np.zeros((batch_size - valid, *chunk.shape[1:]), chunk.dtype)
            chunk = np.concatenate([chunk, pad])
        outs.append(jax.tree.map(lambda a, v=valid: np.asarray(a)[:v], fn(chunk)))
    return jax.tree.map(lambda *parts: np.concatenate(parts), *outs)


def check_images(images, who: str, image_shape=None) -> np.ndarray:
    """`images` as float32 `[N, H, W, C]` in [-1, 1] (of `image_shape` = (H, W, C) if given), or
    one ValueError naming `who` and the problem (shape, integer dtype, nan/inf, range)."""
    x = np.asarray(images)
    if x.ndim != 4 or x.shape[0] < 1 or (image_shape and tuple(x.shape[1:]) != tuple(image_shape)):
        want = "[N, {}, {}, {}]".format(*image_shape) if image_shape else "[N, H, W, C]"
        raise ValueError(f"{who} expects images {want} with N >= 1, got shape {x.shape}")
    if not np.issubdtype(x.dtype, np.floating):
        raise ValueError(
            f"{who} expects float images in [-1, 1], got dtype {x.dtype}; scale raw "
            "pixels with jaxgen.data.to_unit_range(images, max_value)"
        )
    x = x.astype(np.float32)
    if not np.all(np.isfinite(x)):
        raise ValueError(f"{who}: images contain non-finite values (nan or inf)")
    lo, hi = float(x.min()), float(x.max())
    if lo < -1.0 - _RANGE_TOL or hi > 1.0 + _RANGE_TOL:
        raise ValueError(
            f"{who} expects images in [-1, 1], got values in [{lo:g}, {hi:g}]; scale "
            "raw pixels with jaxgen.data.to_unit_range(images, max_value)"
        )
    return x


class Extractor:
    """A loaded feature extractor. `features`/`logits` take float images `[N, H, W, C]` in [-1, 1]
    and return float32 numpy arrays, computed by one jitted function on fixed-size batches (the
    last batch is padded), so results do not depend on N or on the call."""

    def __init__(self, spec: ExtractorSpec, params, weights_hash: str, *, batch_size: int = 256):
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.spec = spec
        self.name = spec.name
        self.hash = weights_hash
        self.params = jax.tree.map(jnp.asarray, params)
        self.batch_size = int(batch_size)
        module = spec.module()
        self._apply = jax.jit(lambda p, x: module.apply({"params": p}, x))

    @property
    def feature_dim(self) -> int:
        return self.spec.feature_dim

    def _check_images(self, images) -> np.ndarray:
        return check_images(images, self.name, self.spec.image_shape)

    def features_and_logits(self, images) -> tuple[np.ndarray, np.ndarray]:
        """(features `[N, feature_dim]`, logits `[N, num_classes]`) of `images` `[N, H, W, C]`."""
        x = self._check_images(images)
        return apply_in_batches(lambda b: self._apply(self.params, b), x, self.batch_size)

    def features(self, images) -> np.ndarray:
        """Penultimate-layer features `[N, feature_dim]` (float32) of `images` `[N, H, W, C]`."""
        return self.features_and_logits(images)[0]

    def logits_fn(self):
        """The classifier as a traceable function `x [B, H, W, C] -> [B, num_classes]` logits
        (no checks, no batching), to compose inside jitted code, e.g. FDRL's guidance."""
        module, params = self.spec.module(), self.params
        return lambda x: module.apply({"params": params}, x)[1]

    def logits(self, images) -> np.ndarray:
        """Class logits `[N, num_classes]` (float32) of `images` `[N, H, W, C]`."""
        return self.features_and_logits(images)[1]


def load_extractor(
    dataset: str, *, weights_path=None, batch_size: int = 256, check: bool = False
) -> Extractor:
    """The feature extractor of `dataset` ("fashion_mnist" or "digits") with its weights loaded;
    `check=True`: its independent check extractor (`CHECK_EXTRACTORS`) instead.

    `weights_path` overrides the packaged file `jaxgen/metrics/weights/<name>.msgpack`.
    """
    spec = _spec(dataset, check)
    path = Path(weights_path) if weights_path is not None else spec.weights_path
    kind, args = ("check-extractor", "--which check") if check else ("feature-extractor", "")
    params, sha = read_weights(spec, path, kind=kind, train_args=args)
    return Extractor(spec, params, sha, batch_size=batch_size)

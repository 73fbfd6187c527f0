"""A small VGG-style network of the project's own, for perceptual (feature-matching) losses.

No pretrained VGG-16 can be fetched here, so the perceptual loss of Generative Latent Flow uses
`PerceptualVGG`, trained on the data set's labels by `tools/train_feature_extractors.py
--which perceptual` (accuracy in `docs/bench/feature_extractors.json`). It is deliberately not
the FD-<dataset> network (`FEATURE_EXTRACTORS`): a loss on the evaluation features would game the
metric. Models trained with it are checked in `CHECK_EXTRACTORS` too (`eval.check_features`).

Architecture (per `PerceptualSpec.channels`): per block `i`, conv3x3 `conv{i}_1` -> ReLU ->
conv3x3 `conv{i}_2` -> ReLU -> max-pool 2x2; global average pool -> Dense `head` (the logits,
used only to train). The taps are the pre-ReLU outputs of each `conv{i}_2` (as VGG's conv1_2,
conv2_2, conv3_2). Weights: `jaxgen/metrics/weights/<name>.msgpack` (read by `jaxgen.nn.weights`);
`hash` is its SHA-256. It lives in `jaxgen.nn`, not `jaxgen.metrics`, because it is a training
loss; `jaxgen.metrics` re-exports it.
"""

from dataclasses import dataclass
from pathlib import Path

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxgen.nn.weights import WEIGHTS_DIR, read_weights


class PerceptualVGG(nn.Module):
    """`[B, H, W, C]` images in [-1, 1] -> (taps, logits `[B, num_classes]`); tap `i` is
    `[B, H / 2**i, W / 2**i, channels[i]]` (sizes floored), e.g. for 28x28x1 and (32, 64, 128):
    `[B, 28, 28, 32]`, `[B, 14, 14, 64]`, `[B, 7, 7, 128]`."""

    channels: tuple[int, ...]
    num_classes: int = 10

    @nn.compact
    def __call__(self, x):
        taps = []
        for i, c in enumerate(self.channels, start=1):
            x = nn.relu(nn.Conv(c, (3, 3), padding="SAME", name=f"conv{i}_1")(x))
            tap = nn.Conv(c, (3, 3), padding="SAME", name=f"conv{i}_2")(x)
            taps.append(tap)
            x = nn.max_pool(nn.relu(tap), (2, 2), strides=(2, 2))
        logits = nn.Dense(self.num_classes, name="head")(x.mean(axis=(1, 2)))
        return tuple(taps), logits


@dataclass(frozen=True)
class PerceptualSpec:
    """A registered perceptual network: name, data set, input shape `(H, W, C)`, architecture."""

    name: str
    dataset: str
    image_shape: tuple[int, int, int]
    channels: tuple[int, ...]
    num_classes: int = 10

    @property
    def weights_path(self) -> Path:
        return WEIGHTS_DIR / f"{self.name}.msgpack"

    def module(self) -> PerceptualVGG:
        return PerceptualVGG(self.channels, self.num_classes)

    def init_params(self, key):
        """Fresh parameters (a dict of arrays) from the PRNG `key`."""
        dummy = jnp.zeros((1, *self.image_shape), jnp.float32)
        return self.module().init(key, dummy)["params"]

    def tap_shapes(self) -> tuple[tuple[int, int, int], ...]:
        """`(H_i, W_i, C_i)` of each tap for one image."""
        h, w, _ = self.image_shape
        return tuple((h // 2**i, w // 2**i, c) for i, c in enumerate(self.channels))


PERCEPTUAL_NETWORKS: dict[str, PerceptualSpec] = {
    "fashion_mnist_vgg_v1": PerceptualSpec(
        "fashion_mnist_vgg_v1", "fashion_mnist", (28, 28, 1), (32, 64, 128)
    ),
}


class PerceptualNetwork:
    """A loaded perceptual network: `.name`, `.hash`, `.image_shape`, `.params` (jnp arrays) and
    pure `.taps(params, x)` / `.apply(params, x)`, safe inside `jax.jit` and `jax.grad`."""

    def __init__(self, spec: PerceptualSpec, params, weights_hash: str):
        self.spec = spec
        self.name = spec.name
        self.hash = weights_hash
        self.image_shape = tuple(spec.image_shape)
        self.params = jax.tree.map(jnp.asarray, params)
        self._module = spec.module()

    def apply(self, params, x):
        """(taps, logits `[B, num_classes]`) of images `x` `[B, H, W, C]` in [-1, 1]; one
        ValueError at trace time when an image is not `image_shape`."""
        if tuple(x.shape[1:]) != self.image_shape or x.ndim != 4:
            raise ValueError(
                f"{self.name} expects images [B, {', '.join(map(str, self.image_shape))}], "
                f"got shape {tuple(x.shape)}"
            )
        return self._module.apply({"params": params}, x)

    def check_fits(self, image_shape, layers: int, who: str, *, layers_field="layers") -> None:
        """One `ValueError` unless the data's `image_shape` (H, W, C) is this network's and it
        has at least `layers` feature maps (`layers_field`: the setting's name in the error)."""
        if tuple(self.image_shape) != tuple(image_shape):
            raise ValueError(
                f"{who}: the perceptual network {self.name} takes images {self.image_shape}, "
                f"the data's are {tuple(image_shape)}"
            )
        taps = len(self.spec.tap_shapes())
        if layers > taps:
            raise ValueError(
                f"{who}: {layers_field}={layers}, but {self.name} has {taps} feature maps"
            )

    def taps(self, params, x) -> tuple:
        """Pre-ReLU activations of each block's second conv: a tuple of `[B, H_i, W_i, C_i]`
        (`spec.tap_shapes()`) for images `x` `[B, H, W, C]` in [-1, 1]."""
        return self.apply(params, x)[0]


def _spec(name: str) -> PerceptualSpec:
    if name not in PERCEPTUAL_NETWORKS:
        raise ValueError(
            f"no perceptual network {name!r}; choose one of {sorted(PERCEPTUAL_NETWORKS)}"
        )
    return PERCEPTUAL_NETWORKS[name]


def load_perceptual(name: str, *, weights_path=None) -> PerceptualNetwork:
    """The registered perceptual network `name` with its weights loaded; `weights_path`
    overrides the packaged file `jaxgen/metrics/weights/<name>.msgpack`."""
    spec = _spec(name)
    path = Path(weights_path) if weights_path is not None else spec.weights_path
    params, sha = read_weights(
        spec, path, kind="perceptual-network", train_args="--which perceptual"
    )
    return PerceptualNetwork(spec, params, sha)

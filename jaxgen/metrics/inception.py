"""Inception-v3 as used for FID / IS: the 2015 TF graph, in the pytorch-fid variant, in Flax.

The network reproduces pytorch-fid's `InceptionV3(resize_input=True, normalize_input=True)`
built by `fid_inception_v3()`: torchvision's Inception-v3 layout with the FID blocks patched in

- `Mixed_5b..5d` (A), `Mixed_6b..6e` (C), `Mixed_7b` (E_1): the pooling branch is a 3x3/1
  average pool whose padded zeros are *not* counted (TF semantics, `count_include_pad=False`);
- `Mixed_7c` (E_2): the pooling branch is a 3x3/1 *max* pool (a quirk of the TF graph);
- every conv has no bias and is followed by BatchNorm (eps 1e-3, running statistics) and ReLU;
- `fc` maps the 2048-d pool3 features to 1008 logits (the TF graph's softmax layer; used for IS).

Input handling (`preprocess`): our images are NHWC in [-1, 1]; pytorch-fid takes NCHW in [0, 1],
resizes bilinearly to 299x299 (`F.interpolate(mode="bilinear", align_corners=False)`, no
antialiasing) and maps to [-1, 1] with `2x - 1`. We do the same steps: `(x + 1) / 2`, the
resize (`jax.image.resize(..., "bilinear", antialias=False)`, which uses the same half-pixel
grid and edge clamping; measured max |diff| vs torch <= 5e-7 for sizes 8..1000), then `2x - 1`.
Grey images (C = 1) are repeated to 3 channels. Nothing is quantised here: a caller that wants
the usual "uint8 PNG" protocol rounds its samples to 256 levels first.

Weights come from `jaxgen.metrics.inception_weights` (converted from pytorch-fid's
`pt_inception-2015-12-05-6726825d.pth`), which also builds the loaded network
(`load_fid_inception`), so this module imports nothing of it. Parameter names mirror the torch
state dict, so `Mixed_6b.branch7x7_2.conv.weight` lives at
`params["Mixed_6b"]["branch7x7_2"]["conv"]["kernel"]`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

INPUT_SIZE = 299
NUM_LOGITS = 1008
Variables = Any  # {"params": ..., "batch_stats": ...}


def _pair(v: int | Sequence[int]) -> tuple[int, int]:
    return (v, v) if isinstance(v, int) else (int(v[0]), int(v[1]))


class BasicConv(nn.Module):
    """Conv (no bias) -> BatchNorm (eps 1e-3, running stats) -> ReLU; torchvision `BasicConv2d`.

    `kernel`, `stride`, `padding` are (h, w) pairs or ints, as in torch. [N, H, W, Cin] ->
    [N, H', W', features].
    """

    features: int
    kernel: int | tuple[int, int] = 1
    stride: int | tuple[int, int] = 1
    padding: int | tuple[int, int] = 0

    @nn.compact
    def __call__(self, x):
        ph, pw = _pair(self.padding)
        x = nn.Conv(
            self.features,
            _pair(self.kernel),
            strides=_pair(self.stride),
            padding=((ph, ph), (pw, pw)),
            use_bias=False,
            name="conv",
        )(x)
        x = nn.BatchNorm(use_running_average=True, epsilon=1e-3, name="bn")(x)
        return nn.relu(x)


def _avg_pool_3x3_same(x):
    """3x3/1 average pool, padding 1, padded zeros not counted (TF `SAME`). [N,H,W,C] -> same."""
    return nn.avg_pool(x, (3, 3), (1, 1), ((1, 1), (1, 1)), count_include_pad=False)


def _max_pool_3x3(x, stride: int, pad: int):
    """3x3 max pool with -inf padding. [N, H, W, C] -> [N, H', W', C]."""
    return nn.max_pool(x, (3, 3), (stride, stride), ((pad, pad), (pad, pad)))


class InceptionA(nn.Module):
    """FIDInceptionA (Mixed_5b..5d). [N, 35, 35, Cin] -> [N, 35, 35, 224 + pool_features]."""

    pool_features: int

    @nn.compact
    def __call__(self, x):
        b1 = BasicConv(64, name="branch1x1")(x)
        b5 = BasicConv(48, name="branch5x5_1")(x)
        b5 = BasicConv(64, 5, padding=2, name="branch5x5_2")(b5)
        b3 = BasicConv(64, name="branch3x3dbl_1")(x)
        b3 = BasicConv(96, 3, padding=1, name="branch3x3dbl_2")(b3)
        b3 = BasicConv(96, 3, padding=1, name="branch3x3dbl_3")(b3)
        bp = BasicConv(self.pool_features, name="branch_pool")(_avg_pool_3x3_same(x))
        return jnp.concatenate([b1, b5, b3, bp], axis=-1)


class InceptionB(nn.Module):
    """InceptionB (Mixed_6a, grid reduction). [N, 35, 35, 288] -> [N, 17, 17, 768]."""

    @nn.compact
    def __call__(self, x):
        b3 = BasicConv(384, 3, stride=2, name="branch3x3")(x)
        bd = BasicConv(64, name="branch3x3dbl_1")(x)
        bd = BasicConv(96, 3, padding=1, name="branch3x3dbl_2")(bd)
        bd = BasicConv(96, 3, stride=2, name="branch3x3dbl_3")(bd)
        return jnp.concatenate([b3, bd, _max_pool_3x3(x, 2, 0)], axis=-1)


class InceptionC(nn.Module):
    """FIDInceptionC (Mixed_6b..6e), factorised 7x7. [N, 17, 17, 768] -> [N, 17, 17, 768]."""

    channels_7x7: int

    @nn.compact
    def __call__(self, x):
        c7 = self.channels_7x7
        b1 = BasicConv(192, name="branch1x1")(x)
        b7 = BasicConv(c7, name="branch7x7_1")(x)
        b7 = BasicConv(c7, (1, 7), padding=(0, 3), name="branch7x7_2")(b7)
        b7 = BasicConv(192, (7, 1), padding=(3, 0), name="branch7x7_3")(b7)
        bd = BasicConv(c7, name="branch7x7dbl_1")(x)
        bd = BasicConv(c7, (7, 1), padding=(3, 0), name="branch7x7dbl_2")(bd)
        bd = BasicConv(c7, (1, 7), padding=(0, 3), name="branch7x7dbl_3")(bd)
        bd = BasicConv(c7, (7, 1), padding=(3, 0), name="branch7x7dbl_4")(bd)
        bd = BasicConv(192, (1, 7), padding=(0, 3), name="branch7x7dbl_5")(bd)
        bp = BasicConv(192, name="branch_pool")(_avg_pool_3x3_same(x))
        return jnp.concatenate([b1, b7, bd, bp], axis=-1)


class InceptionD(nn.Module):
    """InceptionD (Mixed_7a, grid reduction). [N, 17, 17, 768] -> [N, 8, 8, 1280]."""

    @nn.compact
    def __call__(self, x):
        b3 = BasicConv(192, name="branch3x3_1")(x)
        b3 = BasicConv(320, 3, stride=2, name="branch3x3_2")(b3)
        b7 = BasicConv(192, name="branch7x7x3_1")(x)
        b7 = BasicConv(192, (1, 7), padding=(0, 3), name="branch7x7x3_2")(b7)
        b7 = BasicConv(192, (7, 1), padding=(3, 0), name="branch7x7x3_3")(b7)
        b7 = BasicConv(192, 3, stride=2, name="branch7x7x3_4")(b7)
        return jnp.concatenate([b3, b7, _max_pool_3x3(x, 2, 0)], axis=-1)


class InceptionE(nn.Module):
    """FIDInceptionE_1 (`pool="avg"`, Mixed_7b) / E_2 (`pool="max"`, Mixed_7c).

    [N, 8, 8, Cin] -> [N, 8, 8, 2048].
    """

    pool: str = "avg"

    @nn.compact
    def __call__(self, x):
        b1 = BasicConv(320, name="branch1x1")(x)
        b3 = BasicConv(384, name="branch3x3_1")(x)
        b3 = jnp.concatenate(
            [
                BasicConv(384, (1, 3), padding=(0, 1), name="branch3x3_2a")(b3),
                BasicConv(384, (3, 1), padding=(1, 0), name="branch3x3_2b")(b3),
            ],
            axis=-1,
        )
        bd = BasicConv(448, name="branch3x3dbl_1")(x)
        bd = BasicConv(384, 3, padding=1, name="branch3x3dbl_2")(bd)
        bd = jnp.concatenate(
            [
                BasicConv(384, (1, 3), padding=(0, 1), name="branch3x3dbl_3a")(bd),
                BasicConv(384, (3, 1), padding=(1, 0), name="branch3x3dbl_3b")(bd),
            ],
            axis=-1,
        )
        pooled = _avg_pool_3x3_same(x) if self.pool == "avg" else _max_pool_3x3(x, 1, 1)
        bp = BasicConv(192, name="branch_pool")(pooled)
        return jnp.concatenate([b1, b3, bd, bp], axis=-1)


class InceptionV3(nn.Module):
    """FID Inception-v3 trunk + fc. Input [N, H, W, 3] already in [-1, 1] (H, W >= 75; 299 for
    FID). Returns (pool3 [N, 2048], logits [N, 1008])."""

    @nn.compact
    def __call__(self, x):
        x = BasicConv(32, 3, stride=2, name="Conv2d_1a_3x3")(x)
        x = BasicConv(32, 3, name="Conv2d_2a_3x3")(x)
        x = BasicConv(64, 3, padding=1, name="Conv2d_2b_3x3")(x)
        x = _max_pool_3x3(x, 2, 0)
        x = BasicConv(80, 1, name="Conv2d_3b_1x1")(x)
        x = BasicConv(192, 3, name="Conv2d_4a_3x3")(x)
        x = _max_pool_3x3(x, 2, 0)
        x = InceptionA(32, name="Mixed_5b")(x)
        x = InceptionA(64, name="Mixed_5c")(x)
        x = InceptionA(64, name="Mixed_5d")(x)
        x = InceptionB(name="Mixed_6a")(x)
        for name, c7 in (
            ("Mixed_6b", 128),
            ("Mixed_6c", 160),
            ("Mixed_6d", 160),
            ("Mixed_6e", 192),
        ):
            x = InceptionC(c7, name=name)(x)
        x = InceptionD(name="Mixed_7a")(x)
        x = InceptionE("avg", name="Mixed_7b")(x)
        x = InceptionE("max", name="Mixed_7c")(x)
        pool3 = jnp.mean(x, axis=(1, 2))
        logits = nn.Dense(NUM_LOGITS, name="fc")(pool3)
        return pool3, logits


def preprocess(images):
    """Our images -> network input, as pytorch-fid with `resize_input` and `normalize_input`.

    images: [N, H, W, C] in [-1, 1], C in {1, 3}. Returns [N, 299, 299, 3] float32 in [-1, 1]:
    to [0, 1], bilinear resize (torch `align_corners=False`, no antialias; identity at 299), back
    to [-1, 1].
    """
    x = jnp.asarray(images, jnp.float32)
    if x.ndim != 4 or x.shape[-1] not in (1, 3):
        raise ValueError(f"expected images [N, H, W, 1 or 3], got shape {x.shape}")
    if x.shape[-1] == 1:
        x = jnp.repeat(x, 3, axis=-1)
    x = (x + 1.0) / 2.0
    if x.shape[1:3] != (INPUT_SIZE, INPUT_SIZE):
        shape = (x.shape[0], INPUT_SIZE, INPUT_SIZE, 3)
        x = jax.image.resize(x, shape, "bilinear", antialias=False)
    return 2.0 * x - 1.0


def _forward(variables: Variables, images):
    """[N, H, W, C] in [-1, 1] -> (pool3 [N, 2048], logits [N, 1008])."""
    return InceptionV3().apply(variables, preprocess(images))


_forward_jit = jax.jit(_forward)  # shared by all instances: one compilation per input shape


class FIDInception:
    """Jitted, batched FID Inception-v3 on host arrays.

    `features(images)` -> pool3 [N, 2048]; `logits(images)` -> [N, 1008] (for IS);
    `features_and_logits(images)` -> both. `images`: [N, H, W, C] in [-1, 1], C in {1, 3}.
    Inputs are cut into batches of `batch_size` (the last one zero-padded, so one compilation per
    image size); outputs are float32 numpy arrays.
    """

    def __init__(
        self,
        variables: Variables,
        *,
        batch_size: int = 32,
        name: str = "inception",
        weights_hash: str = "unverified",
    ):
        self.variables = jax.tree.map(jnp.asarray, variables)
        self.batch_size = int(batch_size)
        self.name = name
        self.hash = weights_hash  # SHA-256 the weights were checked against (reference stats)

    def features_and_logits(self, images) -> tuple[np.ndarray, np.ndarray]:
        from jaxgen.metrics.features import apply_in_batches, check_images

        images = check_images(images, self.name)
        size = min(self.batch_size, len(images))
        return apply_in_batches(lambda b: _forward_jit(self.variables, b), images, size)

    def features(self, images) -> np.ndarray:
        return self.features_and_logits(images)[0]

    def logits(self, images) -> np.ndarray:
        return self.features_and_logits(images)[1]

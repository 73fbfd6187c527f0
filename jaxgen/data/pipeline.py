"""Deterministic batch streams with a resumable cursor.

Batch `i` of a stream is a pure function of `(seed, i)`: for generated 2-D sets it is a fresh
draw keyed by `fold_in(seed, i)`; for finite sets it is rows `[iB, (i+1)B)` of the endless
concatenation of per-epoch permutations (epoch e permuted by `default_rng([seed, e])`). The cursor
saved in a checkpoint is just the next `i`, so a resumed run sees exactly the batches an
uninterrupted run would have seen. Each host takes its contiguous slice of the global batch.
"""

import dataclasses
from dataclasses import dataclass
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np

from jaxgen.data.images import ImageSource, fashion_mnist_files, load_digits, load_fashion_mnist
from jaxgen.data.tfds_sources import TFDS_NAMES, check_tfds_images, load_tfds_images
from jaxgen.data.toy2d import TOY2D_NAMES, sample_toy2d

TOY_CHUNK = 64  # 2-D batches are drawn this many at a time (one dispatch), then served from memory


@partial(jax.jit, static_argnums=(0, 1))
def _toy2d_chunk(name: str, batch_size: int, seed, first):
    """Batches `first .. first + TOY_CHUNK - 1`, `[TOY_CHUNK, batch_size, 2]`; batch i is
    `sample_toy2d(name, batch_size, fold_in(PRNGKey(seed), i))`."""
    keys = jax.vmap(lambda i: jax.random.fold_in(jax.random.PRNGKey(seed), i))(
        first + jnp.arange(TOY_CHUNK)
    )
    return jax.vmap(lambda k: sample_toy2d(name, batch_size, k))(keys)


IMAGE_NAMES = ("digits", "fashion_mnist", *TFDS_NAMES)
DATASET_NAMES = (*TOY2D_NAMES, *IMAGE_NAMES)


def load_images(
    name: str,
    split: str = "train",
    *,
    pad_to_32: bool = False,
    data_dir: str | None = None,
    classes=(),
    train_limit: int = 0,
) -> ImageSource:
    """The image source called `name` (see the data contract in the architecture doc); with
    `classes`, only the images of those labels (`class_subset`); `train_limit` > 0: only the
    first `train_limit` images of the train split (a protocol's subset, e.g. DDGAN's first 120k
    LSUN church images: the config field `data.train_limit`)."""
    if train_limit < 0:
        raise ValueError(f"train_limit must be >= 0 (0: the whole split), got {train_limit}")
    limit = train_limit if split == "train" and train_limit else None
    if name == "digits":
        src = load_digits(split)
    elif name == "fashion_mnist":
        src = load_fashion_mnist(split, pad_to_32=pad_to_32)
    elif name in TFDS_NAMES:
        src = load_tfds_images(name, split, data_dir=data_dir, limit=limit)
    else:
        raise ValueError(f"unknown image data set {name!r}; choose one of {list(IMAGE_NAMES)}")
    if limit is not None and len(src) > limit:
        src = dataclasses.replace(src, images=src.images[:limit], labels=src.labels[:limit])
    return class_subset(src, classes, name) if classes else src


class ClassSubsetError(ValueError):
    """`classes` names a label the data set does not have."""


def class_subset(src: ImageSource, classes, name: str = "the data set") -> ImageSource:
    """The images of `src` whose label is one of `classes` (in their original order), e.g. the
    Fashion-MNIST groups of an unpaired translation; one clear error for a label the set lacks."""
    classes = tuple(int(k) for k in classes)
    present = np.unique(src.labels)
    missing = sorted(set(classes) - set(present.tolist()))
    if missing:
        raise ClassSubsetError(
            f"classes {missing} are not labels of {name} (its labels: "
            f"{present.min()}..{present.max()})"
        )
    keep = np.isin(src.labels, classes)
    return ImageSource(src.images[keep], src.labels[keep], src.max_value)


def check_images_available(name: str, split: str = "train", *, data_dir: str | None = None) -> None:
    """Raise what `load_images(name, split, ...)` would raise for missing data (a
    `DatasetMissingError`: one line naming the set, where it looked and how to get it) without
    reading the images, so a long job can stop before it starts."""
    if name == "digits":
        return  # bundled with scikit-learn
    if name == "fashion_mnist":
        fashion_mnist_files(split)
    elif name in TFDS_NAMES:
        check_tfds_images(name, split, data_dir=data_dir)
    else:
        raise ValueError(f"unknown image data set {name!r}; choose one of {list(IMAGE_NAMES)}")


# one example's shape per data set, known without reading it (abstract states, AOT compiles)
IMAGE_SHAPES = {
    "digits": (8, 8, 1),
    "fashion_mnist": (28, 28, 1),
    "cifar10": (32, 32, 3),
    "celeba64": (64, 64, 3),
    "celeba64_crop160": (64, 64, 3),
    "lsun_church64": (64, 64, 3),
    "celeba_hq256": (256, 256, 3),
    "lsun_church256": (256, 256, 3),
    "lsun_church128": (128, 128, 3),
}


def example_shape(name: str, *, pad_to_32: bool = False) -> tuple[int, ...]:
    """The shape of one example of data set `name` (`(2,)` for the 2-D sets; Fashion-MNIST is
    32 × 32 with `pad_to_32`), without reading the data."""
    if name in TOY2D_NAMES:
        return (2,)
    if name not in IMAGE_SHAPES:
        raise ValueError(f"unknown data set {name!r}; choose one of {list(DATASET_NAMES)}")
    h, w, c = IMAGE_SHAPES[name]
    return (32, 32, c) if pad_to_32 and name == "fashion_mnist" else (h, w, c)


def to_unit_range(images, max_value: float) -> np.ndarray:
    """Pixels in [0, max_value] -> float32 in [-1, 1]."""
    return (np.asarray(images, np.float32) * (2.0 / max_value) - 1.0).astype(np.float32)


@dataclass
class BatchStream:
    """Random-access batches: `stream.batch(i)` is this host's rows of global batch `i`.

    Batches are dicts: `{"x": [b, 2]}` for 2-D sets, `{"x": [b, H, W, C] in [-1, 1], "label": [b]}`
    for images, where b = batch_size / process_count.
    """

    name: str
    batch_size: int
    seed: int
    image_source: ImageSource | None = None  # the images (None for the 2-D sets)
    flip: bool = False
    process_index: int = 0
    process_count: int = 1

    def __post_init__(self):
        if self.batch_size <= 0 or self.batch_size % self.process_count:
            raise ValueError(
                f"data.batch_size={self.batch_size} must be positive and divisible by the number "
                f"of hosts ({self.process_count})"
            )
        if self.image_source is not None and len(self.image_source) < self.batch_size:
            raise ValueError(
                f"data.batch_size={self.batch_size} exceeds the {len(self.image_source)} "
                f"examples of {self.name}"
            )
        self._perms: dict[int, np.ndarray] = {}
        self._toy_chunk: tuple[int, np.ndarray | None] = (-1, None)

    @property
    def local_slice(self) -> slice:
        b = self.batch_size // self.process_count
        return slice(self.process_index * b, (self.process_index + 1) * b)

    def _perm(self, epoch: int) -> np.ndarray:
        if epoch not in self._perms:
            if len(self._perms) > 2:
                self._perms.pop(min(self._perms))
            rng = np.random.default_rng([self.seed, epoch])
            self._perms[epoch] = rng.permutation(len(self.image_source))
        return self._perms[epoch]

    def _indices(self, i: int) -> np.ndarray:
        n = len(self.image_source)
        flat = np.arange(i * self.batch_size, (i + 1) * self.batch_size, dtype=np.int64)
        rows = flat[self.local_slice]
        epochs, pos = rows // n, rows % n
        return np.array([self._perm(int(e))[p] for e, p in zip(epochs, pos, strict=True)])

    def batch(self, i: int) -> dict:
        if self.image_source is None:
            c = i // TOY_CHUNK
            if self._toy_chunk[0] != c:
                chunk = _toy2d_chunk(self.name, self.batch_size, self.seed, c * TOY_CHUNK)
                self._toy_chunk = (c, np.asarray(chunk))
            return {"x": self._toy_chunk[1][i % TOY_CHUNK][self.local_slice]}
        idx = self._indices(i)
        x = to_unit_range(self.image_source.images[idx], self.image_source.max_value)
        if self.flip:
            rng = np.random.default_rng([self.seed, i, 1])
            flips = rng.random(self.batch_size)[self.local_slice] < 0.5
            x = np.where(flips[:, None, None, None], x[:, :, ::-1], x)
        return {"x": x, "label": self.image_source.labels[idx]}

    def with_seed_offset(self, offset: int) -> "BatchStream":
        """This stream with seed + `offset` (another batch order, e.g. after a rollback)."""
        return dataclasses.replace(self, seed=self.seed + offset)

    def __iter__(self):
        return self.iterate(0)

    def iterate(self, cursor: int):
        """Yields `(i, batch)` for i = cursor, cursor + 1, ..."""
        i = cursor
        while True:
            yield i, self.batch(i)
            i += 1


def make_stream(
    name: str,
    batch_size: int,
    seed: int,
    *,
    split: str = "train",
    flip: bool = False,
    pad_to_32: bool = False,
    data_dir: str | None = None,
    process_index: int | None = None,
    process_count: int | None = None,
    classes=(),
    train_limit: int = 0,
) -> BatchStream:
    """A `BatchStream` over data set `name` (only the images of `classes`, if given) for this
    host (jax's process index by default)."""
    if name not in DATASET_NAMES:
        raise ValueError(f"unknown data set {name!r}; choose one of {list(DATASET_NAMES)}")
    source = None
    if name in TOY2D_NAMES and classes:
        raise ValueError(f"classes={tuple(classes)}: the 2-D set {name!r} has no labels")
    if name not in TOY2D_NAMES:
        kw = dict(pad_to_32=pad_to_32, data_dir=data_dir, classes=classes, train_limit=train_limit)
        source = load_images(name, split, **kw)
    return BatchStream(
        name,
        batch_size,
        seed,
        source,
        flip and source is not None,
        jax.process_index() if process_index is None else process_index,
        jax.process_count() if process_count is None else process_count,
    )


@dataclass
class PairedStream:
    """Batches of a target stream with a source stream's images beside them, under "source"
    (unpaired translation: the source domain is the prior). Batch `i` pairs batch `i` of each;
    the source stream has its own seed, so the pairing is random and reproducible."""

    target: BatchStream
    source_stream: BatchStream

    @property
    def name(self) -> str:
        return self.target.name

    @property
    def image_source(self) -> ImageSource | None:  # the target's images (the data fit's input)
        return self.target.image_source

    @property
    def source(self):
        """Removed name (it returned the *target's* images): one release of an error."""
        raise AttributeError(
            "PairedStream.source was the target's images; use .image_source (the target's) or "
            ".source_stream (the source domain's batches)"
        )

    @property
    def batch_size(self) -> int:
        return self.target.batch_size

    def with_seed_offset(self, offset: int) -> "PairedStream":
        return PairedStream(
            self.target.with_seed_offset(offset), self.source_stream.with_seed_offset(offset)
        )

    def batch(self, i: int) -> dict:
        return {**self.target.batch(i), "source": self.source_stream.batch(i)["x"]}

    __iter__ = BatchStream.__iter__
    iterate = BatchStream.iterate

"""tfds-backed image sets (CIFAR-10, CelebA-64 (two crops), LSUN church at 64² and 256²,
CelebA-HQ 256²) in a local `data_dir`.

Uses `tfds.data_source` (array_record, no TensorFlow needed) with downloads disabled. A missing
data set stops with one message (a `DatasetMissingError`) naming the data set, the folder searched
and how to prepare it; tfds's own log lines about it are held back.
"""

import contextlib
import logging
import os
from pathlib import Path

import numpy as np

from jaxgen.data.images import DatasetMissingError, ImageSource

_TFDS = {
    "cifar10": ("cifar10", {"train": "train", "test": "test"}),
    "celeba64": ("celeb_a", {"train": "train", "test": "test"}),
    # the GLF chapter's CelebA: centre crop 160 (as Lucic et al. 2018), then 64 × 64
    "celeba64_crop160": ("celeb_a", {"train": "train", "test": "test"}),
    "lsun_church64": ("lsun/church_outdoor", {"train": "train", "test": "validation"}),
    # DDGAN's 256² sets (docs/methods/ddgan.md §6): CelebA-HQ has one split of 30k images (the
    # FID reference is the training set); LSUN church: the DDGAN config keeps the first 120k
    # training images (data.train_limit)
    "celeba_hq256": ("celeb_a_hq/256", {"train": "train", "test": "train"}),
    "lsun_church256": ("lsun/church_outdoor", {"train": "train", "test": "validation"}),
    # FDRL's LSUN church (docs/methods/fdrl.md §5): the whole image resized to 128², no crop
    "lsun_church128": ("lsun/church_outdoor", {"train": "train", "test": "validation"}),
}
TFDS_NAMES = tuple(sorted(_TFDS))
# (centre crop (None: the shorter side; 0: none, the aspect ratio is not kept), output side)
_RESIZE = {
    "celeba64": (140, 64),
    "celeba64_crop160": (160, 64),
    "lsun_church64": (None, 64),
    "celeba_hq256": (None, 256),
    "lsun_church256": (None, 256),
    "lsun_church128": (0, 128),
}


def center_crop_resize(image: np.ndarray, crop: int | None, size: int) -> np.ndarray:
    """Centre-crop `[H, W, C]` uint8 to `crop`² (the shorter side when None, no crop when 0),
    then antialiased resize to `size`² (CelebA: crop 140 → 64; LSUN: shorter side → 64)."""
    from PIL import Image

    h, w = image.shape[:2]
    if crop == 0:  # no crop: the whole image, squeezed to a square
        patch = image
    else:
        c = min(h, w) if crop is None else crop
        top, left = (h - c) // 2, (w - c) // 2
        patch = image[top : top + c, left : left + c]
    out = Image.fromarray(patch.squeeze(-1) if patch.shape[-1] == 1 else patch)
    out = np.asarray(out.resize((size, size), Image.Resampling.LANCZOS))
    return out.reshape(size, size, -1)


@contextlib.contextmanager
def _held_absl_records():
    """Hold back the absl log records emitted inside the block (tfds warns about missing
    folders before raising); yields the list, for the caller to pass on on success."""
    logger = logging.getLogger("absl")
    held: list[logging.LogRecord] = []

    def hold(record):
        held.append(record)
        return False

    logger.addFilter(hold)
    try:
        yield held
    finally:
        logger.removeFilter(hold)


def _missing_message(name: str, split: str, data_dir: str | None, error: Exception) -> str:
    """One line: which set, the data_dir searched, what is there, how to prepare it."""
    from tensorflow_datasets.core.constants import get_default_data_dir

    builder_name, splits = _TFDS[name]
    root = Path(os.path.expanduser(data_dir or get_default_data_dir()))
    where = f"data_dir={root}" + (
        "" if data_dir else " (the tfds default; set config.data.data_dir)"
    )
    prepared = sorted(p.parent for p in (root / builder_name).glob("*/dataset_info.json"))
    if prepared:
        cause = str(error).strip().splitlines()
        detail = f"{type(error).__name__}: {cause[0]}" if cause else type(error).__name__
        what = f"the tfds data set {builder_name!r} in {prepared[-1]} cannot be read ({detail})"
    else:
        what = (
            f"no prepared tfds data set {builder_name!r} (split {splits[split]}) in {where} "
            f"(no {root / builder_name}/<version>/dataset_info.json)"
        )
    return (
        f"{name}: {what}. Prepare it on a machine with the files (`tfds build {builder_name} "
        "--file_format=array_record`, with --manual_dir where the set needs one) and copy the "
        "folder here; nothing is downloaded at run time."
    )


def _open(name: str, split: str, data_dir: str | None):
    import tensorflow_datasets as tfds

    builder_name, splits = _TFDS[name]
    with _held_absl_records() as held:
        try:
            source = tfds.data_source(
                builder_name, split=splits[split], data_dir=data_dir, download=False
            )
        except Exception as e:  # tfds raises several types for "not prepared"
            error = e
        else:
            error = None
    if error is not None:
        raise DatasetMissingError(_missing_message(name, split, data_dir, error)) from None
    for record in held:  # it opened: tfds's messages were not about a missing set
        logging.getLogger("absl").handle(record)
    return source


def check_tfds_images(name: str, split: str = "train", *, data_dir: str | None = None) -> None:
    """`DatasetMissingError` (one line) unless split `split` of `name` opens; reads no images."""
    if name not in _TFDS:
        raise ValueError(f"unknown tfds image set {name!r}; choose one of {list(TFDS_NAMES)}")
    _open(name, split, data_dir)


def load_tfds_images(
    name: str, split: str = "train", *, data_dir: str | None = None, limit: int | None = None
) -> ImageSource:
    """Images of a tfds data set as uint8 `[N, H, W, 3]` (CelebA/LSUN cropped and resized to
    64², or 256² for the 256 sets); `limit`: only the first `limit` images (DDGAN's LSUN church
    protocol keeps the first 120k training images: its config sets `data.train_limit`). Held
    in memory: 120k images at 256² are 23.6 GB."""
    if name not in _TFDS:
        raise ValueError(f"unknown tfds image set {name!r}; choose one of {list(TFDS_NAMES)}")
    source = _open(name, split, data_dir)
    n = len(source) if limit is None else min(limit, len(source))
    images, labels = [], []
    for i in range(n):
        ex = source[i]
        img = np.asarray(ex["image"], np.uint8)
        if name in _RESIZE:
            img = center_crop_resize(img, *_RESIZE[name])
        images.append(img)
        labels.append(int(ex.get("label", -1)) if "label" in ex else -1)
    return ImageSource(np.stack(images), np.asarray(labels, np.int32), 255.0)

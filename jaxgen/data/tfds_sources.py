"""tfds-backed image sets (CIFAR-10, CelebA-64, LSUN church 64) read from a local `data_dir`.

Uses `tfds.data_source` (array_record, no TensorFlow needed) with downloads disabled. A missing
data set stops with one message naming the folder and how to prepare it.
"""

import numpy as np

from jaxgen.data.images import DatasetMissingError, ImageSource

_TFDS = {
    "cifar10": ("cifar10", {"train": "train", "test": "test"}),
    "celeba64": ("celeb_a", {"train": "train", "test": "test"}),
    "lsun_church64": ("lsun/church_outdoor", {"train": "train", "test": "validation"}),
}
TFDS_NAMES = tuple(sorted(_TFDS))


def center_crop_resize(image: np.ndarray, crop: int | None, size: int) -> np.ndarray:
    """Centre-crop `[H, W, C]` uint8 to `crop`² (the shorter side when None), then antialiased
    resize to `size`² (CelebA: crop 140 → 64; LSUN: shorter side → 64)."""
    from PIL import Image

    h, w = image.shape[:2]
    c = min(h, w) if crop is None else crop
    top, left = (h - c) // 2, (w - c) // 2
    patch = image[top : top + c, left : left + c]
    out = Image.fromarray(patch.squeeze(-1) if patch.shape[-1] == 1 else patch)
    out = np.asarray(out.resize((size, size), Image.Resampling.LANCZOS))
    return out.reshape(size, size, -1)


def _open(name: str, split: str, data_dir: str | None):
    import tensorflow_datasets as tfds

    builder_name, splits = _TFDS[name]
    try:
        return tfds.data_source(
            builder_name, split=splits[split], data_dir=data_dir, download=False
        )
    except Exception as e:  # tfds raises several types for "not prepared"
        raise DatasetMissingError(
            f"{name}: no prepared tfds data set {builder_name!r} (split {splits[split]}) in "
            f"data_dir={data_dir or '~/tensorflow_datasets'} ({type(e).__name__}). Prepare it on a "
            "machine with the files (`tfds build` with file_format=array_record, or a manual_dir) "
            "and copy the folder here; nothing is downloaded at run time."
        ) from None


def load_tfds_images(
    name: str, split: str = "train", *, data_dir: str | None = None, limit: int | None = None
) -> ImageSource:
    """Images of a tfds data set as uint8 `[N, H, W, 3]` (CelebA/LSUN cropped and resized to 64)."""
    if name not in _TFDS:
        raise ValueError(f"unknown tfds image set {name!r}; choose one of {list(TFDS_NAMES)}")
    source = _open(name, split, data_dir)
    n = len(source) if limit is None else min(limit, len(source))
    images, labels = [], []
    for i in range(n):
        ex = source[i]
        img = np.asarray(ex["image"], np.uint8)
        if name == "celeba64":
            img = center_crop_resize(img, 140, 64)
        elif name == "lsun_church64":
            img = center_crop_resize(img, None, 64)
        images.append(img)
        labels.append(int(ex.get("label", -1)) if "label" in ex else -1)
    return ImageSource(np.stack(images), np.asarray(labels, np.int32), 255.0)

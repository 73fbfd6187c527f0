"""Image data sets read from local files only; nothing is ever downloaded.

Every loader returns an `ImageSource`: `images [N, H, W, C]` (uint8 or float) with the value
`max_value` meaning white, and `labels [N]`. Pipelines scale to [-1, 1].
"""

import gzip
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

FASHION_MNIST_DIRS = ("/usr/share/datasets/fashion-mnist",)
_FASHION_FILES = {
    "train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
    "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"),
}


class DatasetMissingError(FileNotFoundError):
    """A data set's files are not on this machine; the message says how to provide them."""


@dataclass(frozen=True)
class ImageSource:
    images: np.ndarray  # [N, H, W, C]
    labels: np.ndarray  # [N]
    max_value: float  # pixel value of white (255 for uint8, 16 for sklearn digits)

    def __len__(self) -> int:
        return len(self.images)


def _check_split(split: str, allowed=("train", "test")) -> None:
    if split not in allowed:
        raise ValueError(f"unknown split {split!r}; choose one of {list(allowed)}")


def load_digits(split: str = "train") -> ImageSource:
    """scikit-learn's 8×8 digits (1797 images, values 0–16) as `[N, 8, 8, 1]`.

    Fixed split: every 6th image (index ≡ 0 mod 6, 300 images) is `test`, the other 1497 `train`.
    """
    _check_split(split, ("train", "test", "all"))
    from sklearn.datasets import load_digits as sk_load_digits

    d = sk_load_digits()
    images = d.images.astype(np.float32)[..., None]
    labels = d.target.astype(np.int32)
    if split != "all":
        is_test = np.arange(len(images)) % 6 == 0
        keep = is_test if split == "test" else ~is_test
        images, labels = images[keep], labels[keep]
    return ImageSource(images, labels, 16.0)


def _read_idx(path: Path) -> np.ndarray:
    with gzip.open(path, "rb") as f:
        raw = f.read()
    ndim = raw[3]
    dims = [int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim)]
    return np.frombuffer(raw, np.uint8, offset=4 + 4 * ndim).reshape(dims)


def _fashion_missing(path: Path) -> DatasetMissingError:
    return DatasetMissingError(
        f"Fashion-MNIST file missing: {path}. Install the data with `apt-get install "
        "dataset-fashion-mnist`, or set JAXGEN_DATA_DIR to a folder with the four IDX .gz files."
    )


def fashion_mnist_dir() -> Path:
    """The directory holding the Fashion-MNIST IDX files: `JAXGEN_DATA_DIR` (or its
    `fashion-mnist/` subfolder) when set, else the Debian package's folder."""
    override = os.environ.get("JAXGEN_DATA_DIR")
    if override:
        candidates = [Path(override), Path(override) / "fashion-mnist"]
    else:
        candidates = [Path(d) for d in FASHION_MNIST_DIRS]
    for c in candidates:
        if (c / _FASHION_FILES["train"][0]).exists():
            return c
    raise _fashion_missing(candidates[0] / _FASHION_FILES["train"][0])


def load_fashion_mnist(split: str = "train", *, pad_to_32: bool = False) -> ImageSource:
    """Fashion-MNIST `[N, 28, 28, 1]` uint8 (60k train, 10k test), optionally zero-padded to 32²."""
    _check_split(split)
    root = fashion_mnist_dir()
    img_file, lbl_file = _FASHION_FILES[split]
    for name in (img_file, lbl_file):
        if not (root / name).exists():
            raise _fashion_missing(root / name)
    images = _read_idx(root / img_file)[..., None]
    labels = _read_idx(root / lbl_file).astype(np.int32)
    if pad_to_32:
        images = np.pad(images, ((0, 0), (2, 2), (2, 2), (0, 0)))
    return ImageSource(images, labels, 255.0)

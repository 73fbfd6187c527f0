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
    try:
        with gzip.open(path, "rb") as f:
            raw = f.read()
        ndim = raw[3]
        dims = [int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim)]
        return np.frombuffer(raw, np.uint8, offset=4 + 4 * ndim).reshape(dims)
    except (OSError, EOFError, ValueError, IndexError) as e:  # not gzip, truncated, bad header
        why = f"{type(e).__name__}: {str(e).splitlines()[0]}" if str(e) else type(e).__name__
        raise ValueError(
            f"Fashion-MNIST file {path} is not a gzipped IDX file ({why}); {_FASHION_HOW}"
        ) from None


_FASHION_HOW = (
    "install the Debian package dataset-fashion-mnist (`apt-get install dataset-fashion-mnist`; "
    f"it puts the files in {FASHION_MNIST_DIRS[0]}, read when JAXGEN_DATA_DIR is unset) or put "
    f"the four IDX files ({', '.join(f for pair in _FASHION_FILES.values() for f in pair)}) in "
    "$JAXGEN_DATA_DIR/fashion-mnist/ (or $JAXGEN_DATA_DIR itself); nothing is downloaded"
)


def _fashion_candidates() -> tuple[list[Path], str]:
    """The folders searched for the IDX files, and where that list came from."""
    override = os.environ.get("JAXGEN_DATA_DIR")
    if override:
        return [Path(override), Path(override) / "fashion-mnist"], f"JAXGEN_DATA_DIR={override}"
    return [Path(d) for d in FASHION_MNIST_DIRS], "JAXGEN_DATA_DIR unset"


def _fashion_missing(paths: list[Path], where: str) -> DatasetMissingError:
    looked = " or ".join(str(p) for p in paths)
    return DatasetMissingError(
        f"Fashion-MNIST files missing: no {looked} ({where}). To get them, {_FASHION_HOW}."
    )


def fashion_mnist_dir() -> Path:
    """The directory holding the Fashion-MNIST IDX files: `JAXGEN_DATA_DIR` (or its
    `fashion-mnist/` subfolder) when set, else the Debian package's folder. Raises
    `DatasetMissingError` naming every place it looked and how to provide the files."""
    candidates, where = _fashion_candidates()
    first = _FASHION_FILES["train"][0]
    for c in candidates:
        if (c / first).exists():
            return c
    raise _fashion_missing([c / first for c in candidates], where)


def fashion_mnist_files(split: str = "train") -> tuple[Path, Path]:
    """The (images, labels) IDX files of `split`; `DatasetMissingError` (one line: which file,
    where, how to get it) unless both are there."""
    _check_split(split)
    root = fashion_mnist_dir()
    paths = tuple(root / name for name in _FASHION_FILES[split])
    for path in paths:
        if not path.exists():
            raise _fashion_missing([path], _fashion_candidates()[1])
    return paths


def load_fashion_mnist(split: str = "train", *, pad_to_32: bool = False) -> ImageSource:
    """Fashion-MNIST `[N, 28, 28, 1]` uint8 (60k train, 10k test), optionally zero-padded to 32²."""
    img_file, lbl_file = fashion_mnist_files(split)
    images = _read_idx(img_file)[..., None]
    labels = _read_idx(lbl_file).astype(np.int32)
    if pad_to_32:
        images = np.pad(images, ((0, 0), (2, 2), (2, 2), (0, 0)))
    return ImageSource(images, labels, 255.0)

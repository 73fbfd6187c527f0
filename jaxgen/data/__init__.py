"""Data sets (generated 2-D, digits, Fashion-MNIST, tfds-backed images) and batch streams."""

from jaxgen.data.images import DatasetMissingError, ImageSource, load_digits, load_fashion_mnist
from jaxgen.data.ood import OOD_NAMES, ood_images
from jaxgen.data.pipeline import (
    DATASET_NAMES,
    IMAGE_NAMES,
    IMAGE_SHAPES,
    BatchStream,
    PairedStream,
    check_images_available,
    class_subset,
    example_shape,
    load_images,
    make_stream,
    to_unit_range,
)
from jaxgen.data.toy2d import TOY2D_NAMES, mixture_modes, sample_toy2d

__all__ = [
    "DATASET_NAMES",
    "IMAGE_NAMES",
    "OOD_NAMES",
    "TOY2D_NAMES",
    "IMAGE_SHAPES",
    "BatchStream",
    "PairedStream",
    "DatasetMissingError",
    "ImageSource",
    "check_images_available",
    "class_subset",
    "example_shape",
    "load_digits",
    "load_fashion_mnist",
    "load_images",
    "make_stream",
    "mixture_modes",
    "ood_images",
    "sample_toy2d",
    "to_unit_range",
]

"""The independent-pixel baseline (jaxgen/metrics/pixel_baseline.py): counts, bits/dim in closed
form, samples that follow the fitted marginals, and one-line errors."""

import numpy as np
import pytest

from jaxgen.metrics.pixel_baseline import (
    fit_pixel_histogram,
    pixel_bits_per_dim,
    sample_pixel_histogram,
)


def test_bits_per_dim_closed_form():
    # one 1×2 image channel: pixel 0 always 0 (4 of 4), pixel 1 half 0, half 255
    images = np.array([[[[0], [0]]], [[[0], [0]]], [[[0], [255]]], [[[0], [255]]]], np.uint8)
    probs = fit_pixel_histogram(images, alpha=1e-9)
    np.testing.assert_allclose(probs[0, 0, 0, 0], 1.0, atol=1e-6)
    np.testing.assert_allclose(probs[0, 1, 0, [0, 255]], [0.5, 0.5], atol=1e-6)
    # bits: pixel 0 costs 0, pixel 1 costs 1 -> 0.5 bits/dim for every image
    np.testing.assert_allclose(pixel_bits_per_dim(probs, images), 0.5, atol=1e-6)


def test_smoothing_keeps_unseen_levels_finite():
    images = np.zeros((10, 2, 2, 1), np.uint8)
    probs = fit_pixel_histogram(images, alpha=1.0)
    # 10 + 1 of 10 + 256 on level 0; an unseen level costs log2(266) bits
    np.testing.assert_allclose(probs[0, 0, 0, 0], 11 / 266)
    bpd = pixel_bits_per_dim(probs, np.full((1, 2, 2, 1), 7, np.uint8))
    np.testing.assert_allclose(bpd, np.log2(266))


def test_uniform_pixels_cost_eight_bits():
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(200_000, 1, 1, 1))
    probs = fit_pixel_histogram(images)
    assert abs(pixel_bits_per_dim(probs, images[:1000]).mean() - 8.0) < 0.02


def test_samples_follow_the_marginals():
    rng = np.random.default_rng(1)
    images = np.stack(
        [rng.choice([0, 128], size=5000, p=[0.3, 0.7]), rng.choice([255], size=5000)], 1
    ).reshape(5000, 1, 2, 1)
    x = sample_pixel_histogram(fit_pixel_histogram(images, alpha=1e-9), 4000, seed=0)
    assert x.shape == (4000, 1, 2, 1) and x.dtype == np.float32
    centre = lambda k: 2 * k / 255 - 1
    np.testing.assert_allclose(np.mean(x[:, 0, 0, 0] == np.float32(centre(0))), 0.3, atol=0.03)
    assert np.all(x[:, 0, 1, 0] == np.float32(centre(255)))


@pytest.mark.parametrize(
    "images, match",
    [
        (np.zeros((3, 4, 4), np.uint8), r"\[N, H, W, C\]"),
        (np.full((3, 4, 4, 1), 0.5), "integer levels"),
        (np.full((3, 4, 4, 1), 300), r"integer levels in 0\.\.255"),
    ],
)
def test_bad_images_give_one_line(images, match):
    with pytest.raises(ValueError, match=match):
        fit_pixel_histogram(images)


def test_shape_mismatch_names_both():
    probs = fit_pixel_histogram(np.zeros((2, 4, 4, 1), np.uint8))
    with pytest.raises(ValueError, match="do not match"):
        pixel_bits_per_dim(probs, np.zeros((2, 8, 8, 1), np.uint8))


def test_digits_levels():
    images = np.arange(17).reshape(17, 1, 1, 1)
    probs = fit_pixel_histogram(images, levels=17, alpha=1e-9)
    np.testing.assert_allclose(pixel_bits_per_dim(probs, images), np.log2(17), rtol=1e-6)
    x = sample_pixel_histogram(probs, 500, seed=0)
    assert x.min() >= -1 and x.max() <= 1 and len(np.unique(x)) == 17

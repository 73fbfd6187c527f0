"""Checks of jaxgen.data: the 2-D set definitions, batch streams, image loaders and tfds sources.

Statistical checks use fixed keys (so they are deterministic) and tolerances of several standard
errors of the estimated quantity (so a correct implementation passes for any key).
"""

import gzip
import itertools
import logging
import math
import os
import socket
import subprocess
import sys
from pathlib import Path

import jax
import numpy as np
import pytest
from scipy import stats

from jaxgen.data import (
    TOY2D_NAMES,
    BatchStream,
    DatasetMissingError,
    ImageSource,
    check_images_available,
    load_digits,
    load_fashion_mnist,
    load_images,
    make_stream,
    mixture_modes,
    sample_toy2d,
    to_unit_range,
)
from jaxgen.data import images as images_module
from jaxgen.data.tfds_sources import center_crop_resize, load_tfds_images

N_STAT = 40_000  # sample size of the statistical checks
Z = 5.0  # tolerance in standard errors
SYSTEM_FASHION_DIR = Path(images_module.FASHION_MNIST_DIRS[0])
FASHION_FILES = (
    "train-images-idx3-ubyte.gz",
    "train-labels-idx1-ubyte.gz",
    "t10k-images-idx3-ubyte.gz",
    "t10k-labels-idx1-ubyte.gz",
)
needs_fashion = pytest.mark.skipif(
    not all((SYSTEM_FASHION_DIR / f).exists() for f in FASHION_FILES),
    reason=f"Debian package dataset-fashion-mnist not installed ({SYSTEM_FASHION_DIR})",
)


def _draw(name, n=N_STAT, seed=0) -> np.ndarray:
    return np.asarray(sample_toy2d(name, n, jax.random.PRNGKey(seed)), np.float64)


def _fraction_tol(p, n):
    return Z * math.sqrt(p * (1 - p) / n)


# --------------------------------------------------------------------------- 2-D sets: purity


def test_toy2d_names_cover_the_data_contract():
    assert set(TOY2D_NAMES) == {
        "8gaussians",
        "25gaussians",
        "9gaussians",
        "swissroll",
        "swissroll_fdrl",
        "moons",
        "checkerboard",
        "rings",
    }


@pytest.mark.parametrize("name", TOY2D_NAMES)
def test_toy2d_is_a_pure_function_of_name_n_key(name):
    key = jax.random.PRNGKey(3)
    a = sample_toy2d(name, 257, key)
    b = sample_toy2d(name, 257, jax.random.PRNGKey(3))
    c = sample_toy2d(name, 257, jax.random.PRNGKey(4))
    assert a.shape == (257, 2) and a.dtype == np.float32
    assert np.all(np.isfinite(np.asarray(a)))
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    # a different key gives (almost) entirely different points
    assert np.mean(np.all(np.asarray(a) == np.asarray(c), axis=1)) < 0.01


def test_toy2d_unknown_name_raises():
    with pytest.raises(ValueError, match="unknown 2-D data set"):
        sample_toy2d("nope", 4, jax.random.PRNGKey(0))


# --------------------------------------------------------------------------- 2-D sets: statistics


@pytest.mark.parametrize(
    "name, k, std",
    [("8gaussians", 8, 0.1), ("25gaussians", 25, 0.05), ("9gaussians", 9, 0.1)],
)
def test_gaussian_mixture_statistics(name, k, std):
    x = _draw(name)
    centers, std_reported = mixture_modes(name)
    assert centers.shape == (k, 2) and std_reported == std
    d2 = np.sum((x[:, None, :] - centers[None]) ** 2, axis=-1)
    nearest = np.argmin(d2, axis=1)
    frac = np.bincount(nearest, minlength=k) / len(x)
    np.testing.assert_allclose(frac, 1.0 / k, atol=_fraction_tol(1.0 / k, len(x)))
    resid = x - centers[nearest]  # components are >= 15 std apart: assignment is exact
    # per-coordinate mean 0 (SE std/sqrt(n)) and std `std` (SE std/sqrt(2n))
    np.testing.assert_allclose(resid.mean(0), 0.0, atol=Z * std / math.sqrt(len(x)))
    np.testing.assert_allclose(resid.std(0), std, atol=Z * std / math.sqrt(2 * len(x)))
    # isotropic: the two coordinates are uncorrelated (SE of a correlation ~ 1/sqrt(n))
    assert abs(np.corrcoef(resid.T)[0, 1]) < Z / math.sqrt(len(x))


def test_mixture_modes_definitions():
    c8, s8 = mixture_modes("8gaussians")
    angles = np.arange(8) * np.pi / 4
    np.testing.assert_allclose(c8, 2 * np.stack([np.cos(angles), np.sin(angles)], 1), atol=1e-6)
    assert s8 == 0.1
    c25, s25 = mixture_modes("25gaussians")
    grid = {(a, b) for a in (-4, -2, 0, 2, 4) for b in (-4, -2, 0, 2, 4)}
    assert {tuple(p) for p in c25.tolist()} == grid and s25 == 0.05
    c9, s9 = mixture_modes("9gaussians")
    assert {tuple(p) for p in c9.tolist()} == {(a, b) for a in (-2, 0, 2) for b in (-2, 0, 2)}
    assert s9 == 0.1
    # a copy: mutating it does not change the data set
    c8[:] = 99.0
    assert np.abs(mixture_modes("8gaussians")[0]).max() < 2.01


@pytest.mark.parametrize("name", ["moons", "swissroll", "checkerboard", "rings", "nope"])
def test_mixture_modes_rejects_non_mixtures(name):
    with pytest.raises(ValueError, match="not a Gaussian-mixture"):
        mixture_modes(name)


def test_checkerboard_occupies_the_eight_even_squares_uniformly():
    x = _draw("checkerboard")
    assert np.all(x >= -4.0) and np.all(x < 4.0)
    cell = np.floor(x / 2.0).astype(int)  # square index in {-2,-1,0,1}^2
    assert np.all((cell.sum(1) % 2) == 0), "points on the empty squares"
    ids = (cell[:, 0] + 2) * 4 + (cell[:, 1] + 2)
    counts = np.bincount(ids, minlength=16)
    occupied = counts[counts > 0]
    assert len(occupied) == 8
    np.testing.assert_allclose(occupied / len(x), 1 / 8, atol=_fraction_tol(1 / 8, len(x)))
    # uniform inside the squares: offset within a square ~ U[0, 2): mean 1, var 1/3
    off = x - 2.0 * cell
    np.testing.assert_allclose(off.mean(0), 1.0, atol=Z * math.sqrt(1 / 3 / len(x)))
    np.testing.assert_allclose(off.var(0), 1 / 3, atol=Z * math.sqrt(4 / 45 / len(x)))


def test_rings_radii_noise_and_angles():
    x = _draw("rings")
    radii = np.array([0.75, 1.5, 2.25, 3.0])
    r = np.linalg.norm(x, axis=1)
    which = np.argmin(np.abs(r[:, None] - radii[None]), axis=1)  # rings are 9 noise-std apart
    frac = np.bincount(which, minlength=4) / len(x)
    np.testing.assert_allclose(frac, 0.25, atol=_fraction_tol(0.25, len(x)))
    for j, rad in enumerate(radii):
        resid = r[which == j] - rad
        m = len(resid)
        # |R e + eps| = R + eps_r + eps_t^2 / (2R) + ...: mean sigma^2/(2R), std sigma
        bias = 0.08**2 / (2 * rad)
        assert abs(resid.mean() - bias) < Z * 0.08 / math.sqrt(m) + 1e-3
        assert abs(resid.std() - 0.08) < Z * 0.08 / math.sqrt(2 * m) + 1e-3
    # uniform angle: E cos = E sin = 0 (each with variance 1/2)
    u = x / r[:, None]
    np.testing.assert_allclose(u.mean(0), 0.0, atol=Z * math.sqrt(0.5 / len(x)))


def test_fdrl_swissroll_matches_the_fdrl_codes_sklearn_call():
    from sklearn.datasets import make_swiss_roll

    n = 20_000
    x = _draw("swissroll_fdrl", n)
    ref, _ = make_swiss_roll(n, noise=0.25, random_state=0)
    ref = ref[:, [0, 2]] / 7.5
    for a, b in [
        (x[:, 0], ref[:, 0]),
        (x[:, 1], ref[:, 1]),
        (x[:, 0] ** 2 + x[:, 1] ** 2, (ref**2).sum(1)),
    ]:
        assert stats.ks_2samp(a, b).pvalue > 1e-3


def test_swissroll_matches_sklearn_definition():
    from sklearn.datasets import make_swiss_roll

    n = 20_000
    x = _draw("swissroll", n)
    ref, _ = make_swiss_roll(n, noise=0.5, random_state=0)
    ref = ref[:, [0, 2]] / 5.0
    # range: the noise-free radius t/5 lies in [1.5 pi, 4.5 pi] / 5; noise 0.1 per coordinate
    r = np.linalg.norm(x, axis=1)
    assert r.min() > 1.5 * np.pi / 5 - 0.6 and r.max() < 4.5 * np.pi / 5 + 0.6
    assert np.abs(x).max() < (4.5 * np.pi + 3.0) / 5
    for a, b in [(x[:, 0], ref[:, 0]), (x[:, 1], ref[:, 1]), (r, np.linalg.norm(ref, axis=1))]:
        assert stats.ks_2samp(a, b).pvalue > 1e-3


def test_moons_matches_sklearn_definition_and_is_centred():
    from sklearn.datasets import make_moons

    n = 20_000
    x = _draw("moons", n)
    ref, _ = make_moons(n, noise=0.1, random_state=0)
    ref = 2.0 * (ref - np.array([0.5, 0.25]))
    for j in range(2):
        assert stats.ks_2samp(x[:, j], ref[:, j]).pvalue > 1e-3
    # centring: the mean of the two arcs is (1/2, 1/4) before the transform, 0 after
    assert np.all(np.abs(x.mean(0)) < Z * x.std(0) / math.sqrt(n))
    # noise-free structure: every point is within ~0.1 of one of the two unit arcs
    q = x / 2.0 + np.array([0.5, 0.25])
    d_upper = np.abs(np.linalg.norm(q, axis=1) - 1.0)
    d_lower = np.abs(np.linalg.norm(q - np.array([1.0, 0.5]), axis=1) - 1.0)
    d = np.minimum(d_upper, d_lower)
    assert np.quantile(d, 0.5) < 0.1 and d.max() < 0.7


# --------------------------------------------------------------------------- batch streams


def _synthetic_source(n, h=5, w=6, c=2, seed=0) -> ImageSource:
    """Random (hence mirror-asymmetric) uint8 images; label i identifies example i."""
    rng = np.random.default_rng(seed)
    imgs = rng.integers(0, 256, size=(n, h, w, c), dtype=np.uint8)
    return ImageSource(imgs, np.arange(n, dtype=np.int32), 255.0)


def test_toy_stream_is_keyed_by_seed_and_index():
    # (name, batch size) = ("8gaussians", 32) everywhere: the jitted sampler compiles once
    s1 = make_stream("8gaussians", 32, seed=5)
    s2 = make_stream("8gaussians", 32, seed=5)
    s3 = make_stream("8gaussians", 32, seed=6)
    for i in (0, 1, 17):
        b = s1.batch(i)
        assert set(b) == {"x"} and b["x"].shape == (32, 2) and b["x"].dtype == np.float32
        np.testing.assert_array_equal(b["x"], s2.batch(i)["x"])
        assert not np.allclose(b["x"], s3.batch(i)["x"])
    assert not np.allclose(s1.batch(0)["x"], s1.batch(1)["x"])
    # the documented key: fold_in(PRNGKey(seed), i)
    ref = sample_toy2d("8gaussians", 32, jax.random.fold_in(jax.random.PRNGKey(5), 17))
    np.testing.assert_allclose(s1.batch(17)["x"], np.asarray(ref), rtol=1e-5, atol=1e-6)


def test_finite_stream_same_seed_same_batches_different_seed_different():
    src = _synthetic_source(60)
    a, b = BatchStream("syn", 20, 3, src), BatchStream("syn", 20, 3, src)
    c = BatchStream("syn", 20, 4, src)
    for i in range(5):
        np.testing.assert_array_equal(a.batch(i)["label"], b.batch(i)["label"])
        np.testing.assert_array_equal(a.batch(i)["x"], b.batch(i)["x"])
    assert any(not np.array_equal(a.batch(i)["label"], c.batch(i)["label"]) for i in range(3))


def test_finite_stream_epochs_are_permutations_when_batch_divides_n():
    n, bs = 60, 20
    src = _synthetic_source(n)
    s = BatchStream("syn", bs, 0, src)
    per_epoch = n // bs
    orders = []
    for e in range(3):
        labels = np.concatenate([s.batch(e * per_epoch + j)["label"] for j in range(per_epoch)])
        np.testing.assert_array_equal(np.sort(labels), np.arange(n))  # each example once
        orders.append(labels)
    assert not np.array_equal(orders[0], orders[1]) and not np.array_equal(orders[1], orders[2])
    assert not np.array_equal(s.batch(0)["label"], s.batch(per_epoch)["label"])
    # rows are the examples named by the labels, scaled to [-1, 1]
    b = s.batch(4)
    np.testing.assert_array_equal(b["x"], to_unit_range(src.images[b["label"]], 255.0))


def test_finite_stream_wraps_around_epochs():
    n, bs = 50, 16  # 16 does not divide 50: batches straddle epoch boundaries
    s = BatchStream("syn", bs, 1, _synthetic_source(n))
    labels = np.concatenate([s.batch(i)["label"] for i in range(10)])  # 160 rows
    for e in range(3):
        np.testing.assert_array_equal(np.sort(labels[e * n : (e + 1) * n]), np.arange(n))
    assert not np.array_equal(labels[:n], labels[n : 2 * n])
    # the straddling batch 3 = last 2 rows of epoch 0 + first 14 rows of epoch 1
    np.testing.assert_array_equal(s.batch(3)["label"], labels[48:64])


def test_digits_stream_epoch_is_the_whole_split_scaled_to_unit_range():
    src = load_digits("train")
    assert len(src) == 1497 and src.max_value == 16.0
    s = make_stream("digits", 499, seed=0)  # 3 * 499 = 1497
    xs = [s.batch(i)["x"] for i in range(3)]
    x = np.concatenate(xs).reshape(1497, -1)
    assert x.dtype == np.float32 and x.min() == -1.0 and x.max() == 1.0
    expected = (src.images.reshape(1497, -1) / 8.0 - 1.0).astype(np.float32)  # 16 -> 1, 0 -> -1
    # same multiset of rows (sort rows lexicographically; digits may contain duplicates)
    srt = lambda a: a[np.lexsort(a.T[::-1])]
    np.testing.assert_array_equal(srt(x), srt(expected))
    assert len(load_digits("test")) == 300 and len(load_digits("all")) == 1797


def test_iterate_resumes_exactly_from_a_cursor():
    src = _synthetic_source(50)
    fresh = list(itertools.islice(BatchStream("syn", 16, 2, src, flip=True).iterate(0), 12))
    assert [i for i, _ in fresh] == list(range(12))
    resumed = list(itertools.islice(BatchStream("syn", 16, 2, src, flip=True).iterate(7), 5))
    assert [i for i, _ in resumed] == list(range(7, 12))
    for (_, a), (_, b) in zip(fresh[7:], resumed, strict=True):
        np.testing.assert_array_equal(a["x"], b["x"])
        np.testing.assert_array_equal(a["label"], b["label"])
    # the same for a generated set
    toy = list(itertools.islice(iter(make_stream("8gaussians", 32, 9)), 4))
    toy_resumed = next(make_stream("8gaussians", 32, 9).iterate(3))
    assert toy_resumed[0] == 3
    np.testing.assert_array_equal(toy[3][1]["x"], toy_resumed[1]["x"])


def test_random_access_does_not_depend_on_access_order():
    """The per-epoch permutation cache must not change any batch."""
    src = _synthetic_source(50)
    ref = BatchStream("syn", 16, 0, src)
    expected = {i: ref.batch(i)["label"] for i in (0, 2, 30, 31)}
    other = BatchStream("syn", 16, 0, src)
    for i in (31, 30, 2, 40, 60, 0, 2, 31):  # visits > 3 epochs, evicting cached permutations
        if i in expected:
            np.testing.assert_array_equal(other.batch(i)["label"], expected[i])


@pytest.mark.parametrize("kind", ["toy", "finite_flip"])
def test_host_slices_concatenate_to_the_global_batch(kind):
    if kind == "toy":
        mk = lambda pi, pc: make_stream("8gaussians", 32, 7, process_index=pi, process_count=pc)
    else:
        src = _synthetic_source(50)
        mk = lambda pi, pc: BatchStream("syn", 32, 7, src, True, pi, pc)
    full = mk(0, 1)
    hosts = [mk(p, 4) for p in range(4)]
    for i in (0, 1, 5):  # batch 1 straddles an epoch boundary of the finite set
        g = full.batch(i)
        parts = [h.batch(i) for h in hosts]
        assert all(p["x"].shape[0] == 8 for p in parts)
        for k in g:
            np.testing.assert_array_equal(np.concatenate([p[k] for p in parts]), g[k])


def test_batch_size_must_divide_among_hosts_and_fit_the_data():
    with pytest.raises(ValueError, match="divisible"):
        make_stream("8gaussians", 18, 0, process_index=0, process_count=4)
    with pytest.raises(ValueError, match="divisible"):
        BatchStream("syn", 10, 0, _synthetic_source(50), process_count=4)
    with pytest.raises(ValueError, match="positive"):
        BatchStream("syn", 0, 0, _synthetic_source(50))
    with pytest.raises(ValueError, match="exceeds"):
        BatchStream("syn", 64, 0, _synthetic_source(50))
    with pytest.raises(ValueError, match="unknown data set"):
        make_stream("nope", 8, 0)


def test_flips_mirror_width_about_half_deterministically():
    src = _synthetic_source(64)
    plain = BatchStream("syn", 64, 11, src, flip=False)
    flip = BatchStream("syn", 64, 11, src, flip=True)
    flip_again = BatchStream("syn", 64, 11, src, flip=True)
    other_seed = BatchStream("syn", 64, 12, src, flip=True)
    masks = []
    for i in range(40):
        p, f = plain.batch(i), flip.batch(i)
        np.testing.assert_array_equal(p["label"], f["label"])
        same = np.all(f["x"] == p["x"], axis=(1, 2, 3))
        mirrored = np.all(f["x"] == p["x"][:, :, ::-1, :], axis=(1, 2, 3))  # [B, H, W, C]
        assert np.all(same ^ mirrored), "each example is either unchanged or mirrored in width"
        masks.append(mirrored)
        np.testing.assert_array_equal(f["x"], flip_again.batch(i)["x"])
    frac = np.mean(masks)
    assert abs(frac - 0.5) < _fraction_tol(0.5, np.size(masks))
    # re-requesting a batch later gives the same flips; another seed gives other flips
    np.testing.assert_array_equal(flip.batch(3)["x"], flip_again.batch(3)["x"])
    plain12 = BatchStream("syn", 64, 12, src, flip=False)
    masks12 = [
        np.all(other_seed.batch(i)["x"] == plain12.batch(i)["x"][:, :, ::-1], axis=(1, 2, 3))
        for i in range(4)
    ]
    assert not np.array_equal(np.concatenate(masks12), np.concatenate(masks[:4]))
    # flips never apply to generated 2-D data
    assert make_stream("8gaussians", 8, 0, flip=True).flip is False


def test_to_unit_range_endpoints():
    u8 = to_unit_range(np.array([0, 255], np.uint8), 255.0)
    assert u8.dtype == np.float32 and u8.tolist() == [-1.0, 1.0]
    assert to_unit_range(np.array([0.0, 8.0, 16.0]), 16.0).tolist() == [-1.0, 0.0, 1.0]


# --------------------------------------------------------------------------- Fashion-MNIST


@pytest.fixture(scope="module")
def fashion():
    if not all((SYSTEM_FASHION_DIR / f).exists() for f in FASHION_FILES):
        pytest.skip(f"Debian package dataset-fashion-mnist not installed ({SYSTEM_FASHION_DIR})")
    env = os.environ.pop("JAXGEN_DATA_DIR", None)
    try:
        return {s: load_fashion_mnist(s) for s in ("train", "test")}
    finally:
        if env is not None:
            os.environ["JAXGEN_DATA_DIR"] = env


def test_fashion_mnist_shapes_labels_and_range(fashion):
    tr, te = fashion["train"], fashion["test"]
    assert tr.images.shape == (60000, 28, 28, 1) and te.images.shape == (10000, 28, 28, 1)
    assert tr.images.dtype == np.uint8 and tr.max_value == 255.0
    assert tr.labels.shape == (60000,) and te.labels.shape == (10000,)
    np.testing.assert_array_equal(np.bincount(tr.labels), np.full(10, 6000))
    np.testing.assert_array_equal(np.bincount(te.labels), np.full(10, 1000))
    assert tr.images.max() == 255 and tr.images.min() == 0
    assert abs(tr.images.mean() - 72.94) < 0.01  # the value measured in ecosystem.md


@needs_fashion
def test_fashion_mnist_pad_to_32_adds_a_zero_border(fashion, monkeypatch):
    monkeypatch.delenv("JAXGEN_DATA_DIR", raising=False)
    padded = load_fashion_mnist("test", pad_to_32=True)
    assert padded.images.shape == (10000, 32, 32, 1) and padded.images.dtype == np.uint8
    np.testing.assert_array_equal(padded.images[:, 2:30, 2:30], fashion["test"].images)
    border = padded.images.copy()
    border[:, 2:30, 2:30] = 0
    assert not border.any()
    np.testing.assert_array_equal(padded.labels, fashion["test"].labels)


@needs_fashion
def test_fashion_mnist_stream_scales_uint8_to_unit_range(monkeypatch):
    monkeypatch.delenv("JAXGEN_DATA_DIR", raising=False)
    s = make_stream("fashion_mnist", 256, 0, split="test", pad_to_32=True)
    b = s.batch(0)
    assert b["x"].shape == (256, 32, 32, 1) and b["x"].dtype == np.float32
    assert b["x"].min() == -1.0 and b["x"].max() == 1.0
    assert np.all(b["x"][:, :2] == -1.0)  # zero padding -> -1
    assert b["label"].shape == (256,) and b["label"].dtype == np.int32


def _missing_setup(monkeypatch, tmp_path) -> Path:
    empty = tmp_path / "empty"
    empty.mkdir()
    monkeypatch.setenv("JAXGEN_DATA_DIR", str(empty))
    monkeypatch.setattr(images_module, "FASHION_MNIST_DIRS", (str(tmp_path / "nonexistent"),))
    return empty


def test_fashion_mnist_missing_says_what_and_how(monkeypatch, tmp_path):
    empty = _missing_setup(monkeypatch, tmp_path)
    for load in (
        lambda: load_fashion_mnist("train"),
        lambda: load_images("fashion_mnist", "test"),
        lambda: make_stream("fashion_mnist", 8, 0),
    ):
        with pytest.raises(DatasetMissingError) as e:
            load()
        msg = str(e.value)
        assert "\n" not in msg
        assert str(empty / "train-images-idx3-ubyte.gz") in msg
        assert "apt-get install dataset-fashion-mnist" in msg
        assert "JAXGEN_DATA_DIR" in msg
    assert list(empty.iterdir()) == []
    assert issubclass(DatasetMissingError, FileNotFoundError)


@needs_fashion
@pytest.mark.parametrize("subdir", ["", "fashion-mnist"])
def test_jaxgen_data_dir_override_is_used(monkeypatch, tmp_path, subdir, fashion):
    root = tmp_path / "data"
    (root / subdir).mkdir(parents=True)
    for f in FASHION_FILES:
        (root / subdir / f).symlink_to(SYSTEM_FASHION_DIR / f)
    monkeypatch.setenv("JAXGEN_DATA_DIR", str(root))
    monkeypatch.setattr(images_module, "FASHION_MNIST_DIRS", (str(tmp_path / "nonexistent"),))
    assert images_module.fashion_mnist_dir() == root / subdir
    te = load_fashion_mnist("test")
    np.testing.assert_array_equal(te.images, fashion["test"].images)
    np.testing.assert_array_equal(te.labels, fashion["test"].labels)


@needs_fashion
def test_fashion_mnist_partial_install_names_the_missing_file(monkeypatch, tmp_path):
    root = _missing_setup(monkeypatch, tmp_path)
    for f in FASHION_FILES[:2]:  # train files only
        (root / f).symlink_to(SYSTEM_FASHION_DIR / f)
    assert len(load_fashion_mnist("train")) == 60000
    with pytest.raises(DatasetMissingError, match="t10k-images-idx3-ubyte.gz"):
        load_fashion_mnist("test")


@needs_fashion
def test_fashion_mnist_partial_install_message_says_how_to_provide(monkeypatch, tmp_path):
    root = _missing_setup(monkeypatch, tmp_path)
    for f in FASHION_FILES[:2]:
        (root / f).symlink_to(SYSTEM_FASHION_DIR / f)
    with pytest.raises(DatasetMissingError) as e:
        load_fashion_mnist("test")
    assert "apt-get install dataset-fashion-mnist" in str(e.value)
    assert "JAXGEN_DATA_DIR" in str(e.value)


def test_fashion_mnist_missing_names_every_folder_searched(monkeypatch, tmp_path):
    empty = _missing_setup(monkeypatch, tmp_path)
    with pytest.raises(DatasetMissingError) as e:
        check_images_available("fashion_mnist", "test")  # reads nothing
    msg = str(e.value)
    for looked in (empty, empty / "fashion-mnist"):
        assert str(looked / "train-images-idx3-ubyte.gz") in msg
    assert f"JAXGEN_DATA_DIR={empty}" in msg and "$JAXGEN_DATA_DIR/fashion-mnist/" in msg
    assert all(f in msg for f in FASHION_FILES) and "nothing is downloaded" in msg
    monkeypatch.delenv("JAXGEN_DATA_DIR")
    with pytest.raises(DatasetMissingError, match="JAXGEN_DATA_DIR unset"):
        load_fashion_mnist("test")


def test_fashion_mnist_damaged_file_is_one_line(monkeypatch, tmp_path):
    root = _missing_setup(monkeypatch, tmp_path)
    for f in FASHION_FILES:
        (root / f).write_bytes(b"not gzip")
    with pytest.raises(ValueError) as e:
        load_fashion_mnist("train")
    assert "not a gzipped IDX file" in str(e.value) and "\n" not in str(e.value)
    with gzip.open(root / FASHION_FILES[0], "wb") as f:
        f.write(b"\x00\x00\x08\x03" + (5).to_bytes(4, "big") * 3)  # header, no pixels
    with pytest.raises(ValueError, match=f"{FASHION_FILES[0]} is not a gzipped IDX file"):
        load_fashion_mnist("train")


def test_train_cli_without_fashion_mnist_prints_one_line(tmp_path):
    """`python -m experiments.train` on Fashion-MNIST with an empty JAXGEN_DATA_DIR: exit 2 and
    one stderr line saying which files are missing, where it looked and how to get them."""
    empty = tmp_path / "empty"
    empty.mkdir()
    env = {
        **os.environ,
        "JAXGEN_DATA_DIR": str(empty),
        "JAX_PLATFORMS": "cpu",
        "TF_CPP_MIN_LOG_LEVEL": "3",
        "XLA_FLAGS": "--xla_force_host_platform_device_count=1",
    }
    cmd = [
        sys.executable,
        "-m",
        "experiments.train",
        "--config=experiments/configs/vapo/fashion_mnist.py",
        f"--workdir={tmp_path / 'run'}",
        "--config.runlocal=True",
    ]
    repo = Path(__file__).resolve().parents[1]
    out = subprocess.run(cmd, cwd=repo, env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 2, out.stderr[-2000:]
    (line,) = out.stderr.splitlines()
    assert line.startswith("error: Fashion-MNIST files missing: ")
    assert str(empty / "train-images-idx3-ubyte.gz") in line
    assert "apt-get install dataset-fashion-mnist" in line and "$JAXGEN_DATA_DIR" in line
    assert list(empty.iterdir()) == []


def test_unknown_split_and_image_name_raise():
    with pytest.raises(ValueError, match="unknown split"):
        load_digits("validation")
    with pytest.raises(ValueError, match="unknown split"):
        load_fashion_mnist("all")
    with pytest.raises(ValueError, match="unknown image data set"):
        load_images("nope")
    with pytest.raises(ValueError, match="unknown tfds image set"):
        load_tfds_images("mnist")


# --------------------------------------------------------------------------- tfds sources


@pytest.fixture
def no_network(monkeypatch):
    """Record (and refuse) any outgoing connection."""
    attempts = []

    def refuse(self, address, *a, **k):
        attempts.append(address)
        raise OSError("network disabled in tests")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket.socket, "connect_ex", refuse)
    return attempts


@pytest.mark.parametrize(
    "name",
    ["cifar10", "celeba64", "lsun_church64", "celeba_hq256", "lsun_church256", "lsun_church128"],
)
def test_tfds_missing_is_one_helpful_line_without_download(name, tmp_path, no_network):
    with pytest.raises(DatasetMissingError) as e:
        load_tfds_images(name, data_dir=str(tmp_path))
    msg = str(e.value)
    assert "\n" not in msg
    assert msg.startswith(f"{name}:") and str(tmp_path) in msg
    assert "nothing is downloaded" in msg and "manual_dir" in msg
    assert e.value.__cause__ is None and e.value.__suppress_context__  # `from None`
    assert no_network == [], f"tfds tried to connect: {no_network}"
    assert list(tmp_path.iterdir()) == [], "nothing may be written into data_dir"


def test_tfds_missing_holds_back_tfds_log_lines(tmp_path, no_network, caplog):
    """tfds logs a warning about the missing folder before it raises; only our line is left."""
    with caplog.at_level(logging.INFO, logger="absl"):
        with pytest.raises(DatasetMissingError):
            check_images_available("cifar10", "test", data_dir=str(tmp_path))
    assert caplog.records == []


def test_tfds_prepared_but_unreadable_says_so(tmp_path, no_network):
    version = tmp_path / "cifar10" / "3.0.2"
    version.mkdir(parents=True)
    (version / "dataset_info.json").write_text("{}")
    with pytest.raises(DatasetMissingError) as e:
        load_tfds_images("cifar10", data_dir=str(tmp_path))
    msg = str(e.value)
    assert msg.startswith(f"cifar10: the tfds data set 'cifar10' in {version} cannot be read (")
    assert "\n" not in msg and "--file_format=array_record" in msg
    assert "nothing is downloaded" in msg and no_network == []


def test_tfds_default_data_dir_is_named(monkeypatch, tmp_path, no_network):
    monkeypatch.setenv("TFDS_DATA_DIR", str(tmp_path / "default"))
    with pytest.raises(DatasetMissingError) as e:
        load_images("celeba64", "test")
    msg = str(e.value)
    assert f"data_dir={tmp_path / 'default'} (the tfds default; set config.data.data_dir)" in msg
    assert "'celeb_a'" in msg and "split test" in msg


@pytest.fixture
def tfds_mock():
    """`tfds.testing.mock_data` with `tfds.data_source` (works without TensorFlow)."""
    tfds = pytest.importorskip("tensorflow_datasets")
    try:
        with tfds.testing.mock_data(num_examples=8):
            probe = tfds.data_source("cifar10", split="train", download=False)
            assert len(probe) == 8
    except Exception as e:  # pragma: no cover - depends on the installed tfds
        pytest.skip(f"tfds.testing.mock_data does not work with tfds.data_source here: {e!r}")
    return lambda: tfds.testing.mock_data(num_examples=8)


def test_cifar10_loads_through_our_loader_under_mock_data(tfds_mock, tmp_path, no_network):
    with tfds_mock():
        src = load_tfds_images("cifar10", "train", data_dir=str(tmp_path))
        test = load_images("cifar10", "test", data_dir=str(tmp_path))
        stream = make_stream("cifar10", 4, 0, data_dir=str(tmp_path), flip=True)
        check_images_available("cifar10", "test", data_dir=str(tmp_path))
        limited = load_tfds_images("cifar10", "train", data_dir=str(tmp_path), limit=3)
    assert src.images.shape == (8, 32, 32, 3) and src.images.dtype == np.uint8
    assert src.max_value == 255.0 and src.labels.dtype == np.int32
    assert np.all((src.labels >= 0) & (src.labels < 10))
    assert test.images.shape == (8, 32, 32, 3)
    np.testing.assert_array_equal(limited.images, src.images[:3])
    b = stream.batch(0)
    assert b["x"].shape == (4, 32, 32, 3) and b["x"].dtype == np.float32
    assert b["x"].min() >= -1.0 and b["x"].max() <= 1.0
    assert no_network == []


def test_celeba_and_lsun_are_cropped_to_64_under_mock_data(tfds_mock, tmp_path):
    with tfds_mock():
        celeba = load_tfds_images("celeba64", data_dir=str(tmp_path))
        lsun = load_tfds_images("lsun_church64", "test", data_dir=str(tmp_path))
    assert celeba.images.shape == (8, 64, 64, 3) and celeba.images.dtype == np.uint8
    assert lsun.images.shape == (8, 64, 64, 3)
    np.testing.assert_array_equal(celeba.labels, -1)  # unlabelled sets


def _framed(h, w, top, left, c, inner, outer):
    img = np.empty((h, w, 3), np.uint8)
    img[:] = outer
    img[top : top + c, left : left + c] = inner
    return img


def test_center_crop_resize_keeps_exactly_the_centre():
    # CelebA geometry: 218 x 178, crop 140 -> 64; the crop starts at (39, 19)
    red, blue = (200, 40, 30), (0, 0, 255)
    img = _framed(218, 178, 39, 19, 140, red, blue)
    out = center_crop_resize(img, 140, 64)
    assert out.shape == (64, 64, 3) and out.dtype == np.uint8
    np.testing.assert_allclose(out.reshape(-1, 3), np.tile(red, (64 * 64, 1)), atol=1)
    # one pixel off-centre would bring blue into the border rows/columns
    shifted = _framed(218, 178, 40, 19, 140, red, blue)
    assert np.abs(center_crop_resize(shifted, 140, 64)[0].astype(int) - red).max() > 2
    # orientation is kept: left half green, right half red inside the crop
    img2 = _framed(218, 178, 39, 19, 140, red, blue)
    img2[39:179, 19:89] = (0, 255, 0)
    out2 = center_crop_resize(img2, 140, 64).astype(int)
    np.testing.assert_allclose(
        out2[:, :28].reshape(-1, 3), np.tile((0, 255, 0), (64 * 28, 1)), atol=1
    )
    np.testing.assert_allclose(out2[:, 36:].reshape(-1, 3), np.tile(red, (64 * 28, 1)), atol=1)


def test_center_crop_resize_shorter_side_and_greyscale():
    # LSUN: crop the shorter side (178) centred: rows 20..198
    img = _framed(218, 178, 20, 0, 178, (90, 90, 90), (250, 250, 250))
    out = center_crop_resize(img, None, 64)
    assert out.shape == (64, 64, 3)
    assert np.abs(out.astype(int) - 90).max() <= 1
    grey = _framed(100, 80, 10, 0, 80, (7, 7, 7), (200, 200, 200))[..., :1]
    g = center_crop_resize(grey, None, 16)
    assert g.shape == (16, 16, 1) and np.abs(g.astype(int) - 7).max() <= 1


def test_center_crop_resize_without_crop_keeps_the_whole_image():
    # FDRL's LSUN (crop 0): the whole 256 x 341 image squeezed to 128², the frame kept
    img = _framed(256, 341, 8, 8, 240, (200, 40, 30), (0, 0, 255))
    out = center_crop_resize(img, 0, 128).astype(int)
    assert out.shape == (128, 128, 3)
    assert np.abs(out[0, 64] - (0, 0, 255)).max() <= 2  # the frame's top edge survives
    assert np.abs(out[:, -1] - (0, 0, 255)).max(axis=-1).max() <= 2  # and its right one


def test_train_limit_keeps_the_first_training_images_only():
    """`data.train_limit` (a protocol's subset, e.g. DDGAN's first 120k LSUN church images) is a
    config field read by `load_images`, not a property of a data set's name."""
    full = load_images("digits", "train")
    head = load_images("digits", "train", train_limit=100)
    np.testing.assert_array_equal(head.images, full.images[:100])
    np.testing.assert_array_equal(head.labels, full.labels[:100])
    test = load_images("digits", "test", train_limit=100)  # other splits are whole
    assert len(test) == len(load_images("digits", "test")) > 100
    with pytest.raises(ValueError, match="train_limit must be >= 0"):
        load_images("digits", "train", train_limit=-1)

"""The committed feature extractors: weights load, hash, determinism, accuracy, input checks."""

import fnmatch
import hashlib
import tomllib
from pathlib import Path

import numpy as np
import pytest

from jaxgen.data import DatasetMissingError, load_images, to_unit_range
from jaxgen.metrics import FEATURE_EXTRACTORS, load_extractor
from jaxgen.metrics.features import WEIGHTS_DIR

REPO = Path(__file__).resolve().parents[1]
# (data set, test images used, minimum accuracy). The full-test-set accuracies are recorded in
# docs/bench/feature_extractors.json (fashion_mnist 0.909 on 10k, digits 0.983 on 300).
ACCURACY_CASES = [("fashion_mnist", 2000, 0.90), ("digits", None, 0.95)]


@pytest.fixture(scope="module", params=sorted(FEATURE_EXTRACTORS))
def extractor(request):
    return load_extractor(request.param)


def _test_split(dataset, limit=None):
    try:
        src = load_images(dataset, "test")
    except DatasetMissingError as e:
        pytest.skip(str(e))
    images, labels = src.images[:limit], src.labels[:limit]
    return to_unit_range(images, src.max_value), np.asarray(labels)


def test_weights_are_small_and_packaged():
    pyproject = tomllib.loads((REPO / "pyproject.toml").read_text())
    globs = pyproject["tool"]["setuptools"]["package-data"]["jaxgen.metrics"]
    for spec in FEATURE_EXTRACTORS.values():
        path = spec.weights_path
        assert path.parent == WEIGHTS_DIR and path.exists(), path
        assert path.stat().st_size < 2_000_000
        rel = path.relative_to(REPO / "jaxgen" / "metrics").as_posix()
        assert any(fnmatch.fnmatch(rel, g) for g in globs), (rel, globs)


def test_hash_is_sha256_of_the_weights_file(extractor):
    expected = hashlib.sha256(extractor.spec.weights_path.read_bytes()).hexdigest()
    assert extractor.hash == expected
    assert extractor.name == extractor.spec.name and extractor.name.endswith("_cnn_v1")


def test_features_shape_and_determinism(extractor):
    h, w, c = extractor.spec.image_shape
    rng = np.random.default_rng(0)
    images = rng.uniform(-1, 1, (300, h, w, c)).astype(np.float32)  # > 1 batch, last padded
    f1 = extractor.features(images)
    f2 = extractor.features(images)
    assert f1.shape == (300, extractor.feature_dim) and f1.dtype == np.float32
    np.testing.assert_array_equal(f1, f2)
    # A row's features do not depend on the other rows or on N.
    np.testing.assert_array_equal(extractor.features(images[:7]), f1[:7])
    feats, logits = extractor.features_and_logits(images[:5])
    assert logits.shape == (5, 10)
    np.testing.assert_array_equal(feats, f1[:5])


@pytest.mark.parametrize("dataset,limit,threshold", ACCURACY_CASES)
def test_committed_extractor_accuracy(dataset, limit, threshold):
    images, labels = _test_split(dataset, limit)
    acc = float(np.mean(load_extractor(dataset).logits(images).argmax(axis=1) == labels))
    assert acc >= threshold, f"{dataset} test accuracy {acc:.4f} < {threshold}"


def test_input_errors(extractor):
    h, w, c = extractor.spec.image_shape
    raw = np.full((4, h, w, c), 255.0, np.float32)
    with pytest.raises(
        ValueError, match=r"expects images in \[-1, 1\], got values in \[255, 255\]"
    ):
        extractor.features(raw)
    with pytest.raises(ValueError, match="got dtype uint8"):
        extractor.features(raw.astype(np.uint8))
    with pytest.raises(ValueError, match=rf"expects images \[N, {h}, {w}, {c}\]"):
        extractor.features(np.zeros((4, h + 1, w, c), np.float32))
    with pytest.raises(ValueError, match="non-finite"):
        extractor.features(np.full((1, h, w, c), np.nan, np.float32))


def test_unknown_dataset_and_missing_weights(tmp_path):
    with pytest.raises(ValueError, match="no feature extractor for data set 'cifar10'"):
        load_extractor("cifar10")
    with pytest.raises(FileNotFoundError, match="train_feature_extractors"):
        load_extractor("digits", weights_path=tmp_path / "none.msgpack")


def test_weights_of_another_architecture_are_rejected():
    with pytest.raises(ValueError, match="do not match the architecture of fashion_mnist_cnn_v1"):
        load_extractor("fashion_mnist", weights_path=FEATURE_EXTRACTORS["digits"].weights_path)

"""The perceptual network (for perceptual losses) and the independent check extractor: loader
errors, taps, gradients, independence from the FD extractor, recorded accuracy, and the "check"
block of the evaluation protocol."""

import json
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import serialization

from experiments import image_eval, protocol
from experiments.configs.common import smoke
from experiments.configs.vapo.fashion_mnist import get_config
from jaxgen.data import DatasetMissingError
from jaxgen.metrics import CHECK_EXTRACTORS, FEATURE_EXTRACTORS, load_extractor
from jaxgen.nn.perceptual import PERCEPTUAL_NETWORKS, PerceptualSpec, load_perceptual

REPO = Path(__file__).resolve().parents[1]
NAME = "fashion_mnist_vgg_v1"


@pytest.fixture(scope="module")
def net():
    return load_perceptual(NAME)


def test_nn_does_not_import_metrics_and_the_old_module_warns():
    """The perceptual network is a training loss: `jaxgen.nn.perceptual` loads without the
    evaluation package; the old `jaxgen.metrics.perceptual` re-exports it with a warning."""
    code = """
import sys, warnings
import jaxgen.nn.perceptual as new
assert not [m for m in sys.modules if m.startswith("jaxgen.metrics")], "jaxgen.nn -> jaxgen.metrics"
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    import jaxgen.metrics.perceptual as old
assert old.load_perceptual is new.load_perceptual and old.PerceptualSpec is new.PerceptualSpec
(w,) = [w for w in caught if issubclass(w.category, DeprecationWarning)]
assert "jaxgen.nn.perceptual" in str(w.message), w.message
"""
    run = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True)
    assert run.returncode == 0, run.stderr[-2000:]


def test_missing_weights_name_the_file_and_the_command(tmp_path):
    missing = tmp_path / "none.msgpack"
    with pytest.raises(FileNotFoundError) as e:
        load_perceptual(NAME, weights_path=missing)
    msg = str(e.value)
    assert str(missing) in msg and "train_feature_extractors --which perceptual" in msg
    assert "\n" not in msg
    with pytest.raises(ValueError, match="no perceptual network 'vgg16'"):
        load_perceptual("vgg16")


def test_garbage_and_wrong_shapes_are_one_line_value_errors(tmp_path):
    garbage = tmp_path / "garbage.msgpack"
    garbage.write_bytes(np.random.default_rng(0).bytes(1000))
    with pytest.raises(ValueError, match="not a flax msgpack file") as e:
        load_perceptual(NAME, weights_path=garbage)
    assert "\n" not in str(e.value)
    small = PerceptualSpec("small", "fashion_mnist", (28, 28, 1), (8, 16, 32))
    wrong = tmp_path / "wrong.msgpack"
    wrong.write_bytes(serialization.to_bytes(small.init_params(jax.random.PRNGKey(0))))
    with pytest.raises(ValueError, match=f"do not match the architecture of {NAME}"):
        load_perceptual(NAME, weights_path=wrong)
    with pytest.raises(ValueError, match="do not match the architecture of fashion_mnist_cnn_chec"):
        load_extractor("fashion_mnist", check=True, weights_path=wrong)


def test_taps_shapes_and_wrong_input_shape(net):
    spec = PERCEPTUAL_NETWORKS[NAME]
    assert net.name == NAME and net.image_shape == (28, 28, 1) and len(net.hash) == 64
    assert spec.tap_shapes() == ((28, 28, 32), (14, 14, 64), (7, 7, 128))
    taps = jax.jit(net.taps)(net.params, jnp.zeros((3, 28, 28, 1)))
    assert [t.shape for t in taps] == [(3, *s) for s in spec.tap_shapes()]
    with pytest.raises(ValueError) as e:
        jax.jit(net.taps)(net.params, jnp.zeros((2, 32, 32, 1)))
    msg = str(e.value)
    assert "[B, 28, 28, 1]" in msg and "(2, 32, 32, 1)" in msg and "\n" not in msg


def test_gradient_of_a_perceptual_loss_is_finite_under_jit(net):
    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.uniform(-1, 1, (4, 28, 28, 1)), jnp.float32)
    target = jnp.clip(x + 0.1 * jnp.asarray(rng.normal(size=x.shape), jnp.float32), -1, 1)

    def loss(y):
        pairs = zip(net.taps(net.params, y), net.taps(net.params, target), strict=True)
        return sum(jnp.mean(jnp.abs(a - b)) for a, b in pairs)

    value, grad = jax.jit(jax.value_and_grad(loss))(x)
    assert np.isfinite(float(value)) and float(value) > 0
    assert np.all(np.isfinite(grad)) and float(jnp.abs(grad).max()) > 0


def test_new_networks_are_independent_of_the_fd_extractor(net):
    fd = load_extractor("fashion_mnist")
    check = load_extractor("fashion_mnist", check=True)
    assert len({fd.hash, check.hash, net.hash}) == 3
    assert len({fd.name, check.name, net.name}) == 3
    assert (
        CHECK_EXTRACTORS["fashion_mnist"].channels != FEATURE_EXTRACTORS["fashion_mnist"].channels
    )
    feats = check.features(np.zeros((5, 28, 28, 1), np.float32))
    assert feats.shape == (5, check.feature_dim) == (5, 96)
    for path in (check.spec.weights_path, net.spec.weights_path):
        assert path.stat().st_size < 2_000_000
    with pytest.raises(ValueError, match="no check extractor for data set 'digits'"):
        load_extractor("digits", check=True)


def test_recorded_accuracy_and_hashes(net):
    record = json.loads((REPO / "docs" / "bench" / "feature_extractors.json").read_text())
    check = record["check_extractors"]["fashion_mnist"]
    perceptual = record["perceptual_networks"][NAME]
    assert check["test_accuracy"] > 0.85 and perceptual["test_accuracy"] > 0.85
    assert check["seed"] not in (0, perceptual["seed"])
    assert check["sha256"] == load_extractor("fashion_mnist", check=True).hash
    assert perceptual["sha256"] == net.hash
    assert record["extractors"]["fashion_mnist"]["sha256"] == load_extractor("fashion_mnist").hash


def _fake_experiment(c, images: np.ndarray):
    """An object with the `c` and `draw` that `sample_rounds` uses: draws noisy test images."""

    def draw(state, n, *, seed, use_ema):
        rng = np.random.default_rng(seed)
        x = images[rng.integers(0, len(images), n)] + 0.2 * rng.normal(size=(n, *images.shape[1:]))
        return np.clip(x, -1, 1).astype(np.float32), {"nfe_mean": 1.0}

    return SimpleNamespace(c=c, draw=draw)


def test_feature_metrics_with_check_features_adds_the_check_block(tmp_path, monkeypatch):
    c = smoke(get_config())  # Fashion-MNIST, 160 samples in rounds of 80
    c.eval.check_features, c.eval.reference_split, c.eval.kid_subsets = True, "test", 5
    try:
        images = image_eval.split_images(c, "test", limit=1000)
    except DatasetMissingError as e:
        pytest.skip(str(e))
    monkeypatch.setattr(protocol, "split_images", lambda c, split: images)  # a small reference
    net, name, _ = protocol.feature_network(c)
    check = protocol.check_network(c)
    assert check.name == CHECK_EXTRACTORS["fashion_mnist"].name
    exp = _fake_experiment(c, images)
    base = {"num_samples": 160, "feature_network": {"name": net.name, "hash": net.hash}}
    with_check = {**base, "check_network": {"name": check.name, "hash": check.hash}}
    rounds = protocol.sample_rounds(
        exp, None, net, tmp_path, seed=1, protocol=with_check, check=check
    )
    result = protocol.feature_metrics(c, net, name, rounds, tmp_path, check=check)
    block = result["check"]
    assert block["fd_check_fashion_mnist"] > 0 and result["fd_fashion_mnist"] > 0
    assert (
        block["num_samples"] == 160 and np.isfinite(block["kid"]) and block["kid"] != result["kid"]
    )
    assert 0 <= block["precision"] <= 1 and 0 <= block["recall"] <= 1
    assert block["feature_network"] == {"name": check.name, "hash": check.hash}
    assert (tmp_path / f"reference_fashion_mnist_test_{check.name}.npz").exists()
    (rdir,) = tmp_path.glob("rounds_*")
    with np.load(rdir / "round_0000.npz") as z:
        assert z["check_features"].shape == (80, 96)
    # off: no block, and the rounds are not mixed with those that have check features
    plain = protocol.sample_rounds(exp, None, net, tmp_path, seed=1, protocol=base)
    assert len(list(tmp_path.glob("rounds_*"))) == 2
    assert "check" not in protocol.feature_metrics(c, net, name, plain, tmp_path)
    c.eval.check_features = False
    assert protocol.check_network(c) is None

"""Unpaired translation's data (docs/methods/fdrl.md §4.2): class subsets of an image set,
the paired stream that carries a source domain's images beside each batch, the config checks
on them, and a translation run trained, sampled and translated from a file, end to end, on the
bundled digits (tops → trousers on Fashion-MNIST is the same code)."""

import numpy as np
import pytest

from experiments import cli
from experiments.configs.common import smoke
from experiments.configs.fdrl.fashion_translation import get_config
from jaxgen.data import class_subset, load_images, make_stream
from jaxgen.data.pipeline import ClassSubsetError, PairedStream
from jaxgen.methods.common import ConfigError


def test_class_subset_keeps_exactly_those_labels_in_order():
    full = load_images("digits")
    sub = load_images("digits", classes=(1, 7))
    keep = np.isin(full.labels, (1, 7))
    np.testing.assert_array_equal(sub.images, full.images[keep])
    assert set(np.unique(sub.labels)) == {1, 7} and sub.max_value == full.max_value
    with pytest.raises(
        ClassSubsetError, match=r"classes \[12\] are not labels of digits \(its labels: 0..9\)"
    ):
        class_subset(full, (1, 12), "digits")
    with pytest.raises(ValueError, match="the 2-D set '8gaussians' has no labels"):
        make_stream("8gaussians", 8, 0, classes=(1,))


def test_paired_stream_is_deterministic_and_reseeds_both_streams():
    target = make_stream("digits", 8, 0, classes=(1,), process_index=0, process_count=1)
    source = make_stream("digits", 8, 1, classes=(7,), process_index=0, process_count=1)
    paired = PairedStream(target, source)
    b = paired.batch(3)
    assert set(b) == {"x", "label", "source"} and b["source"].shape == b["x"].shape
    assert (b["label"] == 1).all()
    np.testing.assert_array_equal(b["source"], source.batch(3)["x"])
    np.testing.assert_array_equal(paired.batch(3)["source"], b["source"])
    other = paired.with_seed_offset(5)
    assert not np.array_equal(other.batch(3)["x"], b["x"])
    assert not np.array_equal(other.batch(3)["source"], b["source"])
    assert paired.batch_size == 8 and paired.image_source is target.image_source
    with pytest.raises(AttributeError, match="use .image_source"):
        paired.source  # noqa: B018  (the removed, misleading name)


def _digits_translation():
    c = smoke(get_config())
    c.data.update(dict(name="digits", pad_to_32=False, flip=False, classes=(1,), source="digits"))
    c.data.source_classes = (7,)
    c.data.batch_size = 8
    return c


@pytest.mark.parametrize(
    "change, match",
    [
        (
            {"source": "cifar10"},
            r"config.data.source='cifar10': its images are \(32, 32, 3\), the data's \(digits\) "
            r"are \(8, 8, 1\)",
        ),
        ({"source": "8gaussians"}, "translation is between image sets"),
        ({"source": "", "source_classes": (7,)}, "set data.source"),
        ({"name": "8gaussians", "source": "", "source_classes": ()}, "2-D sets have no labels"),
    ],
)
def test_translation_config_errors_are_one_line(change, match):
    c = _digits_translation()
    c.data.update(change)
    with pytest.raises(ConfigError, match=match) as e:
        cli.experiment(c)
    assert "\n" not in str(e.value)


def test_a_translation_run_trains_samples_by_translating_and_translates_a_file(tmp_path):
    from experiments.sample import translate_file
    from experiments.train import train

    c = _digits_translation()
    state = train(c, str(tmp_path), progress=False)
    exp = cli.experiment(c)
    assert int(state.step) == 2 and exp.translating
    x, stats = exp.draw(state, 5, seed=0)  # translations of five source test images
    assert x.shape == (5, 8, 8, 1) and np.isfinite(x).all()
    assert stats["nfe_mean"] == c.method.flow_steps + c.sample.refine_steps
    source = exp.source_images(5, seed=0)
    np.save(tmp_path / "src.npy", source)
    y, _, step = translate_file(c, str(tmp_path), str(tmp_path / "src.npy"))
    np.testing.assert_allclose(y, x, rtol=1e-5, atol=1e-6)  # the same images, the same keys
    np.save(tmp_path / "bad.npy", np.zeros((2, 28, 28, 1), np.float32))
    with pytest.raises(
        ConfigError,
        match=r"its images are \(2, 28, 28, 1\), this run's examples are \[N, 8, 8, 1\]",
    ):
        translate_file(c, str(tmp_path), str(tmp_path / "bad.npy"))
    with pytest.raises(ConfigError, match="no such file"):
        translate_file(c, str(tmp_path), str(tmp_path / "none.npy"))

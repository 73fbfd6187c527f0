"""Abstract init for every recipe and every config, paper scale included: the state's shapes
come from `jax.eval_shape(init)` without materialising parameters, fits, buffers or base runs
(what a restore and an ahead-of-time TPU compile build on), and without reading the data."""

import gc
import glob
import importlib.util
from pathlib import Path

import jax
import numpy as np
import pytest

from experiments import cli
from jaxgen.data import example_shape, make_stream
from jaxgen.data.images import DatasetMissingError

REPO = Path(__file__).resolve().parents[1]
CONFIGS = sorted(
    p for p in glob.glob(str(REPO / "experiments/configs/*/*.py")) if not p.endswith("__init__.py")
)


def _load(path):
    spec = importlib.util.spec_from_file_location("cfg", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.get_config()


@pytest.mark.parametrize("config", CONFIGS, ids=lambda p: "/".join(Path(p).parts[-2:]))
def test_abstract_state_materialises_nothing(config):
    exp = cli.experiment(_load(config))
    gc.collect()  # arrays earlier tests left behind must not be freed during the count
    before = len(jax.live_arrays())
    abstract = exp.abstract_state()
    leaves = jax.tree.leaves(abstract)
    assert leaves and all(isinstance(x, jax.ShapeDtypeStruct) for x in leaves)
    assert len(jax.live_arrays()) == before  # no device buffer was allocated
    for name in exp.caps.networks:  # each declared network has parameters in the state
        params = getattr(abstract, name).params
        assert sum(int(np.prod(p.shape)) for p in jax.tree.leaves(params)) > 0


def test_paper_scale_vapo_cifar10_has_the_papers_parameter_count():
    """The DRL energy ResNet of the CIFAR-10 config: ≈30.7 M parameters (docs/methods/vapo.md
    §4), counted from shapes alone."""
    exp = cli.experiment(_load(REPO / "experiments/configs/vapo/cifar10.py"))
    params = exp.abstract_state().potential.params
    n = sum(int(np.prod(p.shape)) for p in jax.tree.leaves(params))
    assert 30.0e6 < n < 31.5e6, n


@pytest.mark.parametrize("name", ["8gaussians", "digits", "fashion_mnist"])
def test_example_shape_matches_the_data(name):
    try:
        batch = make_stream(name, 8, 0).batch(0)["x"]
    except DatasetMissingError as e:
        pytest.skip(str(e))
    assert example_shape(name) == batch.shape[1:]
    if name == "fashion_mnist":
        padded = make_stream(name, 8, 0, pad_to_32=True).batch(0)["x"]
        assert example_shape(name, pad_to_32=True) == padded.shape[1:]

"""VAPO downstream procedures (docs/methods/vapo.md §5.2-§5.4): slerp interpolation, energy scores
and AUROC, OOD sets, nearest neighbours, sharded sampling."""

from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from jaxgen.data import ood_images
from jaxgen.data.ood import interpolated_pairs, resize_images
from jaxgen.methods import vapo
from jaxgen.methods.common import replace_fields
from jaxgen.metrics import auroc, nearest_neighbours
from jaxgen.parallel import make_mesh, replicated
from jaxgen.train.figures import save_histograms, save_image_rows
from jaxgen.train.step import make_sharded_sampler


def test_auroc_matches_sklearn_with_ties():
    rng = np.random.default_rng(0)
    a = rng.integers(0, 5, 300).astype(float)  # many ties
    b = rng.integers(0, 4, 200).astype(float)
    labels = np.r_[np.ones(300), np.zeros(200)]
    assert auroc(a, b) == pytest.approx(roc_auc_score(labels, np.r_[a, b]), abs=1e-12)


def test_auroc_extremes_and_errors():
    assert auroc([2.0, 3.0], [0.0, 1.0]) == 1.0
    assert auroc([0.0, 1.0], [2.0, 3.0]) == 0.0
    assert auroc([1.0, 1.0], [1.0]) == 0.5
    with pytest.raises(ValueError, match="empty"):
        auroc([], [1.0])
    with pytest.raises(ValueError, match="non-finite"):
        auroc([np.nan], [1.0])


def test_nearest_neighbours_equal_brute_force():
    rng = np.random.default_rng(1)
    ref, q = rng.normal(size=(53, 4, 4, 1)), rng.normal(size=(6, 4, 4, 1))
    idx, dist = nearest_neighbours(q, ref, k=5, chunk=7)  # several chunks, one ragged
    full = np.linalg.norm(q.reshape(6, 1, -1) - ref.reshape(1, 53, -1), axis=2)
    np.testing.assert_array_equal(idx, np.argsort(full, axis=1)[:, :5])
    np.testing.assert_allclose(dist, np.sort(full, axis=1)[:, :5], rtol=1e-4, atol=1e-4)
    assert nearest_neighbours(ref[:3], ref, k=1)[0][:, 0].tolist() == [0, 1, 2]


def test_nearest_neighbours_bad_input():
    with pytest.raises(ValueError, match="example shape"):
        nearest_neighbours(np.zeros((2, 3)), np.zeros((5, 4)))
    with pytest.raises(ValueError, match="k=6"):
        nearest_neighbours(np.zeros((2, 3)), np.zeros((5, 3)), k=6)


def test_interpolated_pairs_average_two_distinct_images():
    x = np.eye(5, dtype=np.float32).reshape(5, 5, 1, 1)
    out = interpolated_pairs(x, 200, jax.random.PRNGKey(0)).reshape(200, 5)
    np.testing.assert_array_equal(np.sort(out, axis=1)[:, -2:], 0.5)  # two images, a ≠ b
    assert np.all(out.sum(1) == 1.0)


def test_ood_images_shapes_and_ranges():
    like = np.zeros((10, 28, 28, 1), np.float32)
    for name in ("interpolated", "uniform_noise", "gaussian_noise", "digits"):
        x = ood_images(name, like, 10, jax.random.PRNGKey(0))
        assert x.shape == (10, 28, 28, 1) and x.min() >= -1.0 and x.max() <= 1.0, name
    with pytest.raises(ValueError, match="unknown OOD set"):
        ood_images("svhn", like, 2, jax.random.PRNGKey(0))


def test_resize_keeps_constant_images_and_maps_channels():
    x = np.full((2, 8, 8, 1), 0.25, np.float32)
    y = resize_images(x, 28, 28, 3)
    assert y.shape == (2, 28, 28, 3)
    np.testing.assert_allclose(y, 0.25, atol=1e-6)


def test_slerp_endpoints_and_constant_norm():
    k1, k2 = jax.random.split(jax.random.PRNGKey(0))
    z1, z2 = jax.random.normal(k1, (6, 6, 1)), 2.0 * jax.random.normal(k2, (6, 6, 1))
    path = vapo.slerp(z1, z2, 7)
    r = 0.5 * (jnp.linalg.norm(z1) + jnp.linalg.norm(z2))
    np.testing.assert_allclose(path[0], r * z1 / jnp.linalg.norm(z1), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(path[-1], r * z2 / jnp.linalg.norm(z2), rtol=1e-5, atol=1e-5)
    norms = jnp.linalg.norm(path.reshape(7, -1), axis=1)
    np.testing.assert_allclose(norms, r, rtol=1e-5)  # the path stays on the sphere of radius r


@pytest.fixture(scope="module")
def toy_state():
    cfg = replace_fields(vapo.Config(), {"model.hidden": (32, 32), "sample.t_end": 1.0})
    return cfg, vapo.init(cfg, {"x": np.zeros((1, 2), np.float32)}, key=jax.random.PRNGKey(3))


def test_interpolate_decodes_the_slerp_path(toy_state):
    cfg, state = toy_state
    x, stats = vapo.interpolate(state, 5, config=cfg, key=jax.random.PRNGKey(1), shape=(2,))
    assert x.shape == (5, 2) and np.isfinite(np.asarray(x)).all() and int(stats["nfe"]) > 0
    k1, k2 = jax.random.split(jax.random.PRNGKey(1))
    z1, z2 = jax.random.normal(k1, (2,)), jax.random.normal(k2, (2,))
    direct, _ = vapo.solve_flow(state.potential.ema_params, vapo.slerp(z1, z2, 5), config=cfg)
    np.testing.assert_allclose(x, direct, rtol=1e-6, atol=1e-6)


def test_energy_is_the_potential_and_jit_equals_eager(toy_state):
    cfg, state = toy_state
    x = jax.random.normal(jax.random.PRNGKey(2), (16, 2))
    eager = vapo.energy(state, x, config=cfg)
    jitted = jax.jit(lambda s, x: vapo.energy(s, x, config=cfg))(state, x)
    np.testing.assert_allclose(eager, vapo.potential(state.potential.ema_params, x, config=cfg))
    np.testing.assert_allclose(eager, jitted, rtol=1e-6, atol=1e-6)


def test_sharded_sampling_equals_single_device(toy_state):
    cfg, state = toy_state
    mesh = make_mesh()
    key = jax.random.PRNGKey(4)
    plain, st_plain = jax.jit(lambda s: vapo.sample(s, 64, config=cfg, key=key))(state)
    fn = make_sharded_sampler(partial(vapo.sample, config=cfg), mesh)
    sharded, st_sharded = fn(jax.device_put(state, replicated(mesh)), 64, key)
    assert len(sharded.sharding.device_set) == jax.device_count()
    np.testing.assert_allclose(sharded, plain, rtol=1e-5, atol=1e-5)
    assert int(st_sharded["nfe"]) == int(st_plain["nfe"])


def test_figures_are_written(tmp_path):
    save_histograms(tmp_path / "h.png", {"train": np.arange(50.0), "test": np.arange(30.0)})
    save_image_rows(tmp_path / "r.png", np.zeros((2, 3, 8, 8, 1)))
    assert (tmp_path / "h.png").stat().st_size > 0 and (tmp_path / "r.png").stat().st_size > 0


def test_bad_image_input_gives_one_clear_error():
    model = dict(network="resnet", ch=8, ch_mult=(1,), num_res_blocks=1, channels=1)
    cfg = vapo.Config(model=vapo.Model(**model))
    key = jax.random.PRNGKey(0)
    with pytest.raises(ValueError, match=r"scaled to \[-1, 1\]; got values in \[0, 255\]"):
        vapo.init(cfg, {"x": np.linspace(0, 255, 64).reshape(1, 8, 8, 1)}, key=key)
    with pytest.raises(ValueError, match="3 channels but the config is built for model.channels=1"):
        vapo.init(cfg, {"x": np.zeros((1, 8, 8, 3))}, key=key)
    with pytest.raises(ValueError, match=r"takes images \[B, H, W, C\]"):
        vapo.init(cfg, {"x": np.zeros((1, 64))}, key=key)
    with pytest.raises(ValueError, match="t_end=0"):
        vapo.Sample(t_end=0.0)

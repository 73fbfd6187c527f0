"""Checkpoints (orbax round trip, keep-N, errors that never delete) and optim / EMA maths."""

import gc
import math
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from jaxgen.methods import vapo
from jaxgen.methods.common import replace_fields
from jaxgen.optim import (
    ModelState,
    apply_gradients,
    ema_decay,
    init_model_state,
    learning_rate_schedule,
    make_optimizer,
)
from jaxgen.train.checkpoint import CheckpointError, Checkpoints

EXAMPLE = {"x": np.zeros((4, 2), np.float32)}

# A failed orbax restore abandons async read coroutines and callbacks on a closed event loop;
# the tests that make restores fail reap them (gc) in their own teardown and ignore that noise,
# and the rest of this module ignores exactly those two messages should one surface late.
orbax_error_noise = pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
pytestmark = [
    pytest.mark.filterwarnings(
        "ignore:(?s)Exception ignored in.*Event loop is closed"
        ":pytest.PytestUnraisableExceptionWarning"
    ),
    pytest.mark.filterwarnings(
        "ignore:Exception ignored in. <coroutine object _read_array_index_and_device_put"
        ":pytest.PytestUnraisableExceptionWarning"
    ),
]


@pytest.fixture
def reap_orbax():
    yield
    gc.collect()


def _abstract(config=None):
    """The vapo State's structure, shapes and dtypes (traced, not computed: no compilation)."""
    cfg = config or vapo.Config()
    return jax.eval_shape(lambda: vapo.init(cfg, EXAMPLE, key=jax.random.PRNGKey(0)))


def _filled(abstract, seed):
    """A concrete State of that structure with random values in every leaf (step = 5)."""
    rng = np.random.default_rng(seed)

    def fill(sds):
        if np.issubdtype(sds.dtype, np.floating):
            return jnp.asarray(rng.normal(size=sds.shape).astype(sds.dtype))
        if sds.dtype == np.int32:
            return jnp.full(sds.shape, 5, sds.dtype)
        return jnp.asarray(rng.integers(0, 2**32, size=sds.shape, dtype=np.uint32))

    return jax.tree.map(fill, abstract)


@pytest.fixture(scope="module")
def state():
    """A vapo State in which every leaf is random (params, Adam moments, EMA, key), so a restore
    that silently kept the target's values would be caught."""
    return _filled(_abstract(), seed=0)


def _files(d: Path) -> dict[str, bytes]:
    return {str(p.relative_to(d)): p.read_bytes() for p in sorted(d.rglob("*")) if p.is_file()}


def _assert_trees_equal(a, b):
    assert jax.tree.structure(a) == jax.tree.structure(b)
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
        assert np.asarray(x).dtype == np.asarray(y).dtype
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


def _saved(tmp_path, state, step=7) -> Path:
    d = tmp_path / "ckpt"
    store = Checkpoints(d)
    store.save(step, state, {"cursor": step, "recipe": "vapo"})
    store.close()
    return d


# --------------------------------------------------------------------------- checkpoints


def test_round_trip_is_exact_and_returns_meta(tmp_path, state):
    d = tmp_path / "ckpt"
    meta = {"cursor": 12, "recipe": "vapo", "config": {"lr": 1e-3, "hidden": [128, 128]}}
    store = Checkpoints(d)
    store.save(2, state, meta)
    store.close()
    other = _filled(_abstract(), seed=1)  # same architecture, other values
    assert not np.array_equal(other.key, state.key)
    restored, got_meta = Checkpoints(d).restore(other)  # a new manager, as after a restart
    assert isinstance(restored, vapo.State)
    assert int(restored.step) == int(state.step) == 5
    _assert_trees_equal(restored, state)
    assert got_meta == meta and isinstance(got_meta, dict)
    # abstract targets (ShapeDtypeStructs) work as well
    restored2, _ = Checkpoints(d).restore(_abstract())
    _assert_trees_equal(restored2, state)


def test_keep_n_latest_step_and_restore_older_step(tmp_path, state):
    d = tmp_path / "ckpt"
    store = Checkpoints(d, max_to_keep=2)
    assert store.latest_step() is None and store.all_steps() == []
    for step in (1, 2, 3, 4):
        store.save(step, state.replace(step=jnp.asarray(step, jnp.int32)), {"cursor": step})
    assert store.latest_step() == 4
    assert sorted(store.all_steps()) == [3, 4]
    assert sorted(p.name for p in d.iterdir() if p.is_dir()) == ["3", "4"]
    older, meta = store.restore(state, step=3)
    assert int(older.step) == 3 and meta == {"cursor": 3}
    newest, meta = store.restore(state)
    assert int(newest.step) == 4 and meta == {"cursor": 4}
    store.close()
    assert Checkpoints(d).latest_step() == 4


def test_restore_with_no_checkpoints_raises(tmp_path, state):
    d = tmp_path / "empty"
    with pytest.raises(CheckpointError, match="no checkpoint") as e:
        Checkpoints(d).restore(state)
    assert str(d) in str(e.value)


def test_zero_size_arrays_are_refused_at_once_by_name(tmp_path):
    store = Checkpoints(tmp_path / "ckpt")
    with pytest.raises(CheckpointError, match=r"zero-size arrays: \['prior'\]"):
        store.save(1, {"w": jnp.ones(2), "prior": jnp.zeros((0,))}, {"cursor": 1})
    assert store.latest_step() is None
    store.close()


@orbax_error_noise
@pytest.mark.parametrize("hidden", [(64, 64), (64, 64, 64)])
def test_restore_into_other_architecture_raises_and_deletes_nothing(
    tmp_path, state, hidden, reap_orbax
):
    d = _saved(tmp_path, state)
    before = _files(d)
    target = _abstract(replace_fields(vapo.Config(), {"model.hidden": hidden}))
    with pytest.raises(CheckpointError) as e:
        Checkpoints(d).restore(target)
    msg = str(e.value)
    assert str(d / "7") in msg and "does not match" in msg
    assert _files(d) == before
    restored, _ = Checkpoints(d).restore(state)  # still usable by the right model
    _assert_trees_equal(restored, state)


def _truncate_all(step_dir: Path):
    for p in (step_dir / "state").rglob("*"):
        if p.is_file():
            p.write_bytes(b"")


def _overwrite_data(step_dir: Path):
    for p in (step_dir / "state").rglob("*"):
        if p.is_file() and p.parent.name == "d":
            p.write_bytes(b"garbage" * 8)


def _remove_array_store(step_dir: Path):
    import shutil

    shutil.rmtree(step_dir / "state" / "ocdbt.process_0")


CORRUPTIONS = {"truncate": _truncate_all, "overwrite": _overwrite_data}


@orbax_error_noise
@pytest.mark.parametrize("how", [*CORRUPTIONS, "remove_arrays"])
def test_corrupt_checkpoint_raises_and_deletes_nothing(tmp_path, state, how, reap_orbax):
    d = _saved(tmp_path, state)
    {**CORRUPTIONS, "remove_arrays": _remove_array_store}[how](d / "7")
    before = _files(d)
    store = Checkpoints(d)
    assert store.latest_step() == 7
    with pytest.raises(CheckpointError) as e:
        store.restore(state)
    msg = str(e.value)
    assert str(d / "7") in msg and "\n" not in msg
    assert _files(d) == before
    if how == "remove_arrays":
        assert "unreadable or corrupt" in msg and "nothing was deleted" in msg


@orbax_error_noise
@pytest.mark.parametrize("how", list(CORRUPTIONS))
def test_corrupt_checkpoint_is_reported_as_corrupt(tmp_path, state, how, reap_orbax):
    d = _saved(tmp_path, state)
    CORRUPTIONS[how](d / "7")
    with pytest.raises(CheckpointError, match="unreadable or corrupt"):
        Checkpoints(d).restore(state)


# --------------------------------------------------------------------------- EMA


def test_ema_decay_warmup_values():
    for n in (0, 1, 5, 10, 100, 1000):
        expected = min(0.999, (1 + n) / (10 + n))
        assert float(ema_decay(n, 0.999)) == pytest.approx(expected, rel=1e-6)
    assert float(ema_decay(0, 0.999)) == pytest.approx(0.1)
    assert float(ema_decay(10, 0.999)) == pytest.approx(0.55)
    # the cap: (1+n)/(10+n) >= 0.999 from n = 8991 on
    assert float(ema_decay(10**6, 0.999)) == pytest.approx(0.999)
    assert float(ema_decay(10**6, 0.0)) == 0.0
    # jittable with a traced step
    np.testing.assert_allclose(
        jax.jit(lambda s: ema_decay(s, 0.9))(jnp.arange(3)), [0.1, 2 / 11, 0.25]
    )


def test_apply_gradients_sgd_and_ema_math():
    params = {"a": jnp.array([1.0, 2.0]), "b": {"c": jnp.array(3.0)}}
    grads = {"a": jnp.array([0.5, -1.0]), "b": {"c": jnp.array(2.0)}}
    tx = optax.sgd(0.1)
    ms = init_model_state(params, tx)
    ema_old = {"a": jnp.array([0.0, 0.0]), "b": {"c": jnp.array(-1.0)}}
    ms = ModelState(ms.params, ms.opt_state, ema_old)
    for step, rate in [(0, 0.999), (1000, 0.999), (10**6, 0.999)]:
        new, gnorm = apply_gradients(ms, grads, tx, step=step, ema_rate=rate)
        d = min(rate, (1 + step) / (10 + step))
        p_new = {"a": np.array([0.95, 2.1]), "b": {"c": np.array(2.8)}}
        _close = lambda x, y: np.testing.assert_allclose(np.asarray(x), y, rtol=1e-5, atol=1e-6)
        jax.tree.map(_close, new.params, p_new)
        ema_expected = jax.tree.map(
            lambda e, p, d=d: d * np.asarray(e) + (1 - d) * p, ema_old, p_new
        )
        jax.tree.map(_close, new.ema_params, ema_expected)
        assert float(gnorm) == pytest.approx(math.sqrt(0.25 + 1.0 + 4.0), rel=1e-6)
    # the EMA buffers are copies, so donating the state cannot alias params
    fresh = init_model_state(params, tx)
    assert fresh.ema_params["a"] is not fresh.params["a"]
    np.testing.assert_array_equal(fresh.ema_params["a"], params["a"])


def test_model_state_owns_its_optimizer():
    """`init_model_state` stores the optimizer and EMA rate as static fields (not leaves, not
    checkpointed); the method update equals the free one with the same tx and rate."""
    params = {"a": jnp.array([1.0, 2.0])}
    grads = {"a": jnp.array([0.5, -1.0])}
    tx = optax.adam(0.1)
    ms = init_model_state(params, tx, ema_rate=0.9)
    assert ms.tx is tx and ms.ema_rate == 0.9
    assert len(jax.tree.leaves(ms)) == len(
        jax.tree.leaves((ms.params, ms.opt_state, ms.ema_params))
    )
    by_method, _ = ms.apply_gradients(grads, step=3)
    by_function, _ = apply_gradients(ms, grads, tx, step=3, ema_rate=0.9)
    for a, b in zip(jax.tree.leaves(by_method), jax.tree.leaves(by_function), strict=True):
        np.testing.assert_array_equal(a, b)
    assert by_method.tx is tx  # the update keeps the static fields
    assert init_model_state(params, tx, ema_rate=0.0).ema_params is None
    with pytest.raises(ValueError, match="has no optimizer"):
        ModelState(params, ms.opt_state).apply_gradients(grads, step=0)


def test_equal_optim_sections_give_equal_state_structures():
    """`make_tx` is cached per `Optim` section, so two `init`s of one config give states with
    the same pytree structure (a restored state and a fresh one can be mapped together)."""
    from jaxgen.methods import vapo

    cfg = vapo.Config()
    batch = {"x": np.zeros((4, 2), np.float32)}
    a = vapo.init(cfg, batch, key=jax.random.PRNGKey(0))
    b = vapo.init(cfg, batch, key=jax.random.PRNGKey(1))
    assert jax.tree.structure(a) == jax.tree.structure(b)


# --------------------------------------------------------------------------- optimizers


ADAM_RTOL = 1e-4


def _adam_steps(tx, num):
    """Update of a constant gradient at counts 0..num-1. Adam's normalised step m̂/√v̂ is
    exactly 1 for a constant gradient, so the update equals -lr(count), up to float32 rounding
    of the bias correction: 1 − β2ᵗ cancels (≈6e-8 / 2e-3 relative at t = 2), so compare with
    ADAM_RTOL = 1e-4."""
    params = {"w": jnp.zeros(3)}
    grads = {"w": jnp.array([1.0, -2.0, 0.5])}
    opt_state = tx.init(params)
    out = []
    for _ in range(num):
        upd, opt_state = tx.update(grads, opt_state, params)
        out.append(np.asarray(upd["w"]) / -np.sign(np.asarray(grads["w"])))
    return np.array(out)  # [num, 3]: the effective learning rate per step and coordinate


def test_make_optimizer_warmup_schedule_values():
    lr, warm = 0.1, 10
    eff = _adam_steps(make_optimizer("adam", lr, warmup_steps=warm), 14)
    expected = np.array([lr * min(k, warm) / warm for k in range(14)])
    np.testing.assert_allclose(eff, expected[:, None] * np.ones(3), rtol=ADAM_RTOL, atol=1e-9)
    assert eff[0, 0] == 0.0 and eff[5, 0] == pytest.approx(0.05, rel=1e-5)
    assert eff[12, 0] == pytest.approx(lr, rel=1e-5)


def test_learning_rate_schedule_values():
    s = learning_rate_schedule(0.2, warmup_steps=4)
    assert [float(s(k)) for k in (0, 2, 4, 100)] == pytest.approx([0.0, 0.1, 0.2, 0.2])
    cos = learning_rate_schedule(1.0, warmup_steps=10, decay="cosine", total_steps=30)
    assert float(cos(10)) == pytest.approx(1.0)
    assert float(cos(20)) == pytest.approx(0.5, abs=1e-6)
    assert float(cos(30)) == pytest.approx(0.0, abs=1e-6)
    stp = learning_rate_schedule(1.0, decay="step", decay_steps=5, decay_factor=0.1)
    assert [float(stp(k)) for k in (0, 4, 5, 10)] == pytest.approx([1.0, 1.0, 0.1, 0.01])
    assert float(learning_rate_schedule(0.3)(12345)) == pytest.approx(0.3)


def test_make_optimizer_adamw_decays_weights_and_clipping_is_chained():
    tx = make_optimizer("adamw", 0.1, weight_decay=0.5)
    params = {"w": jnp.array([2.0, -4.0])}
    upd, _ = tx.update({"w": jnp.zeros(2)}, tx.init(params), params)
    np.testing.assert_allclose(upd["w"], -0.1 * 0.5 * np.array([2.0, -4.0]), rtol=1e-6)
    lamb = make_optimizer("lamb", 1e-2)
    upd, _ = lamb.update({"w": jnp.ones(2)}, lamb.init(params), params)
    assert np.all(np.isfinite(upd["w"])) and np.all(np.asarray(upd["w"]) < 0)
    clipped = make_optimizer("adam", 1e-3, grad_clip=1.0)
    state = clipped.init(params)
    assert isinstance(state, tuple) and len(state) == 2  # chain(clip, adam)
    # clipping happens before adam: the first moment sees the clipped gradient
    _, state = clipped.update({"w": jnp.array([30.0, 40.0])}, state, params)
    mu = optax.tree_utils.tree_get(state, "mu")  # ScaleByAdamState.mu
    np.testing.assert_allclose(mu["w"], 0.1 * np.array([0.6, 0.8]), rtol=1e-5)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(name="sgd"), "unknown optimizer"),
        (dict(lr=0.0), "learning rate must be positive"),
        (dict(lr=-1e-3), "learning rate must be positive"),
        (dict(decay="linear"), "unknown decay"),
    ],
)
def test_make_optimizer_rejects_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        make_optimizer(**kwargs)


def test_make_optimizer_step_decay_is_usable():
    tx = make_optimizer("adam", 0.1, decay="step", decay_steps=2, decay_factor=0.5)
    eff = _adam_steps(tx, 5)
    np.testing.assert_allclose(eff[:, 0], [0.1, 0.1, 0.05, 0.05, 0.025], rtol=ADAM_RTOL)

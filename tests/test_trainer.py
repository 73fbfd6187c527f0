"""The generic trainer: sharded == single-device, exact resume, non-finite guard."""

from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import struct

from jaxgen.data import make_stream
from jaxgen.methods import vapo
from jaxgen.methods.common import replace_fields
from jaxgen.parallel import make_mesh, state_shardings
from jaxgen.train.checkpoint import Checkpoints
from jaxgen.train.loop import NonFiniteError, TrainPlan, fit

CFG = replace_fields(vapo.Config(), {"model.hidden": (32, 32), "optim.potential.lr": 3e-3})


def _setup(batch_size=64):
    stream = make_stream("8gaussians", batch_size, seed=3)
    state = vapo.init(CFG, stream.batch(0), key=jax.random.PRNGKey(0))
    return stream, state


def _params(state):
    return jax.tree.map(np.asarray, jax.device_get(state.potential))


def _assert_trees(a, b, **tol):
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
        if tol:
            np.testing.assert_allclose(x, y, **tol)
        else:
            np.testing.assert_array_equal(x, y)


def test_sharded_step_equals_single_device():
    assert jax.device_count() == 8
    step = partial(vapo.train_step, config=CFG)
    out = {}
    for n in (1, 8):
        stream, state = _setup()
        state, cursor = fit(
            step,
            state,
            stream,
            make_mesh(n),
            TrainPlan(5, log_every=5, ckpt_every=0),
            progress=False,
        )
        assert cursor == 5 and int(state.step) == 5
        out[n] = _params(state)
    # Only the order of the batch reductions differs between 1 and 8 devices.
    _assert_trees(out[1], out[8], rtol=2e-4, atol=2e-5)


def test_sharded_state_is_replicated_and_batch_split():
    stream, state = _setup()
    mesh = make_mesh(8)
    state, _ = fit(
        partial(vapo.train_step, config=CFG),
        state,
        stream,
        mesh,
        TrainPlan(1, log_every=1, ckpt_every=0),
        progress=False,
    )
    leaf = jax.tree.leaves(state.potential.params)[0]
    assert leaf.sharding.is_fully_replicated and len(leaf.sharding.device_set) == 8


@struct.dataclass
class _BufferState:
    step: jax.Array
    w: jax.Array  # a parameter, replicated
    replay: jax.Array  # past batches, newest first: a `batch_state` field, split over `data`


def _buffer_step(state, batch):
    """Push the batch into the replay buffer, then fit `w` to the buffer's mean."""
    x = batch["x"]
    replay = jnp.concatenate([x, state.replay[: -x.shape[0]]])
    loss_fn = lambda w: jnp.mean((replay - w) ** 2)
    loss, grad = jax.value_and_grad(loss_fn)(state.w)
    return state.replace(step=state.step + 1, w=state.w - 0.1 * grad, replay=replay), {"loss": loss}


def test_a_batch_state_buffer_of_ten_batches_is_split_over_the_devices():
    """`batch_state` leaves need only a leading axis the device count divides, not the batch's
    rows: a replay buffer of 10 x B rows trains split over 8 devices as on one."""
    B = 16
    stream = make_stream("8gaussians", B, seed=3)
    fresh = lambda rows: _BufferState(jnp.zeros((), jnp.int32), jnp.zeros(2), jnp.zeros((rows, 2)))
    out = {}
    for n in (1, 8):
        mesh = make_mesh(n)
        shardings = state_shardings(jax.eval_shape(lambda: fresh(10 * B)), mesh, ("replay",))
        plan = TrainPlan(12, log_every=12, ckpt_every=0)
        state = fresh(10 * B)  # fresh each time: fit donates the state's buffers
        out[n], _ = fit(
            _buffer_step, state, stream, mesh, plan, state_sharding=shardings, progress=False
        )
    replay = out[8].replay
    assert replay.shape == (10 * B, 2)
    assert replay.sharding.spec == jax.sharding.PartitionSpec("data")
    assert [s.data.shape for s in replay.addressable_shards] == [(10 * B // 8, 2)] * 8
    newest = np.concatenate([stream.batch(i)["x"] for i in range(11, 1, -1)])  # steps 12 .. 3
    np.testing.assert_array_equal(np.asarray(replay), newest)
    np.testing.assert_array_equal(np.asarray(out[1].replay), newest)
    np.testing.assert_allclose(np.asarray(out[1].w), np.asarray(out[8].w), rtol=1e-5, atol=1e-6)
    # any row count the devices divide will do, a multiple of B or not
    state_shardings(jax.eval_shape(lambda: fresh(10 * B + 8)), make_mesh(8), ("replay",))


def test_resume_is_bit_identical(tmp_path):
    step = partial(vapo.train_step, config=CFG)
    mesh = make_mesh(8)
    stream, state = _setup()
    full, full_cursor = fit(
        step, state, stream, mesh, TrainPlan(12, log_every=4, ckpt_every=0), progress=False
    )

    stream, state = _setup()
    store = Checkpoints(tmp_path / "ckpt")
    fit(
        step,
        state,
        stream,
        mesh,
        TrainPlan(7, log_every=7, ckpt_every=7),
        checkpoints=store,
        progress=False,
    )
    # a fresh process would rebuild the state from scratch, then restore it
    _, fresh = _setup()
    restored, meta = Checkpoints(tmp_path / "ckpt").restore(fresh)
    assert int(restored.step) == 7 and meta["cursor"] == 7
    resumed, cursor = fit(
        step,
        restored,
        stream,
        mesh,
        TrainPlan(12, log_every=4, ckpt_every=0),
        cursor=meta["cursor"],
        progress=False,
    )
    assert cursor == full_cursor == 12
    _assert_trees(_params(full), _params(resumed))
    np.testing.assert_array_equal(np.asarray(full.key), np.asarray(resumed.key))


class _PoisonedStream:
    """Wraps a stream; batch `bad` contains a NaN."""

    def __init__(self, stream, bad):
        self.stream, self.bad, self.batch_size = stream, bad, stream.batch_size

    def batch(self, i):
        b = self.stream.batch(i)
        if i == self.bad:
            b = {"x": np.where(np.arange(len(b["x"]))[:, None] == 0, np.nan, b["x"])}
        return b


def test_nonfinite_guard_stops_with_step_number():
    stream, state = _setup()
    with pytest.raises(NonFiniteError, match="at step 3"):
        fit(
            partial(vapo.train_step, config=CFG),
            state,
            _PoisonedStream(stream, 3),
            make_mesh(8),
            TrainPlan(6, log_every=1, ckpt_every=0),
            progress=False,
        )


def test_nonfinite_skip_drops_the_batch():
    step = partial(vapo.train_step, config=CFG)
    stream, state = _setup()
    skipped, cursor = fit(
        step,
        state,
        _PoisonedStream(stream, 3),
        make_mesh(8),
        TrainPlan(6, nonfinite="skip", log_every=1, ckpt_every=0),
        progress=False,
    )
    assert int(skipped.step) == 6 and cursor == 7  # one batch consumed without a step
    assert all(np.isfinite(x).all() for x in jax.tree.leaves(_params(skipped)))


def test_nonfinite_rollback_restores_checkpoint(tmp_path, capsys):
    step = partial(vapo.train_step, config=CFG)
    stream, state = _setup()
    store = Checkpoints(tmp_path / "ckpt")
    out, cursor = fit(
        step,
        state,
        _PoisonedStream(stream, 5),
        make_mesh(8),
        TrainPlan(8, nonfinite="rollback", log_every=1, ckpt_every=2, rollback_reseed=False),
        checkpoints=store,
        progress=False,
    )
    assert "rolled back to step 4" in capsys.readouterr().out
    assert int(out.step) == 8 and cursor == 10  # steps 5..8 redone on batches 6..9
    assert all(np.isfinite(x).all() for x in jax.tree.leaves(_params(out)))


def test_guard_keeps_old_state_inside_jit():
    from jaxgen.train.step import guard_nonfinite

    def step(state, batch):
        return jax.tree.map(lambda x: x * jnp.nan, state), {"loss": jnp.nan}

    state = {"w": jnp.ones(3)}
    new, m = jax.jit(guard_nonfinite(step))(state, None)
    assert not bool(m["finite"])
    np.testing.assert_array_equal(new["w"], np.ones(3))


def test_steps_per_call_on_cpu_compiles_no_loop_and_matches_single_steps():
    """On CPU a K-step scan whose step has a convolution is unrolled: a conv's weight gradient
    inside a loop body is left a naive `convolution` by XLA:CPU (16x slower here, jax#12868)."""
    from jaxgen.train.step import make_sharded_step

    def step(state, batch):
        def loss(w):
            y = jax.lax.conv_general_dilated(
                batch["x"], w, (1, 1), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC")
            )
            return jnp.mean(jnp.tanh(y) ** 2)

        value, g = jax.value_and_grad(loss)(state["w"])
        return {"w": state["w"] - 0.1 * g}, {"loss": value}

    mesh = make_mesh(1)
    w = jax.random.normal(jax.random.PRNGKey(0), (3, 3, 2, 4))
    xs = jax.random.normal(jax.random.PRNGKey(1), (3, 4, 6, 6, 2))
    k3 = make_sharded_step(step, mesh, steps_per_call=3, donate=False)
    hlo = k3.lower({"w": w}, {"x": xs}).compile().as_text()
    assert " while(" not in hlo
    # a step without a convolution stays a rolled loop (unrolled it is slower on CPU)
    dense = make_sharded_step(lambda s, b: (s, {"loss": b["x"].sum()}), mesh, steps_per_call=3)
    assert " while(" in dense.lower({"w": w}, {"x": xs}).compile().as_text()
    one = make_sharded_step(step, mesh, donate=False)
    state = {"w": w}
    for i in range(3):
        state, _ = one(state, {"x": xs[i]})
    scanned, metrics = k3({"w": w}, {"x": xs})
    assert metrics["loss"].shape == (3,) and bool(metrics["finite"].all())
    np.testing.assert_allclose(scanned["w"], state["w"], rtol=1e-5, atol=1e-6)


def test_steps_per_call_matches_single_steps_and_resumes(tmp_path):
    step = partial(vapo.train_step, config=CFG)
    mesh = make_mesh(8)
    stream, state = _setup()
    one, c1 = fit(
        step, state, stream, mesh, TrainPlan(10, log_every=5, ckpt_every=0), progress=False
    )
    stream, state = _setup()
    # 10 steps as calls of 4, 4, 2: the last call is shorter, the run ends exactly at step 10
    four, c4 = fit(step, state, stream, mesh, TrainPlan(10, 5, 0, steps_per_call=4), progress=False)
    assert int(four.step) == 10 and c1 == c4 == 10
    # the same maths, compiled inside a scan: equal up to float32 rounding
    _assert_trees(_params(one), _params(four), rtol=1e-5, atol=1e-6)

    stream, state = _setup()
    store = Checkpoints(tmp_path / "ckpt")
    fit(
        step,
        state,
        stream,
        mesh,
        TrainPlan(8, 4, 4, steps_per_call=4),
        checkpoints=store,
        progress=False,
    )
    restored, meta = Checkpoints(tmp_path / "ckpt").restore(_setup()[1])
    resumed, _ = fit(
        step,
        restored,
        stream,
        mesh,
        TrainPlan(10, 5, 0, steps_per_call=4),
        cursor=meta["cursor"],
        progress=False,
    )
    _assert_trees(_params(four), _params(resumed))  # bit-identical


def test_nonfinite_inside_a_call_reports_its_step():
    stream, state = _setup()
    with pytest.raises(NonFiniteError, match="at step 6"):
        fit(
            partial(vapo.train_step, config=CFG),
            state,
            _PoisonedStream(stream, 6),
            make_mesh(8),
            TrainPlan(12, log_every=4, ckpt_every=0, steps_per_call=4),
            progress=False,
        )


@pytest.mark.parametrize("k", [1, 4])
def test_hooks_see_the_exact_state_of_their_step(k):
    """With one call in flight, every hook still receives the state at its own step, also after
    a skipped batch (the boundary is then handled at the first call that reaches it)."""
    seen = []
    stream, state = _setup()
    fit(
        partial(vapo.train_step, config=CFG),
        state,
        _PoisonedStream(stream, 4),
        make_mesh(8),
        TrainPlan(12, log_every=5, ckpt_every=0, nonfinite="skip", steps_per_call=k),
        hooks=((3, lambda s, step: seen.append((step, int(s.step)))),),
        progress=False,
    )
    assert all(step == state_step for step, state_step in seen)
    assert [step // 3 for step, _ in seen] == [1, 2, 3, 4]  # each multiple of 3 crossed once


@pytest.mark.parametrize("k", [1, 4])
def test_a_stop_request_checkpoints_the_step_in_flight_and_resumes_exactly(tmp_path, k):
    """`should_stop` (what SIGTERM sets): the call in flight finishes, its step is saved,
    `Interrupted` names it, and resuming from it gives the uninterrupted run's state."""
    from jaxgen.train.loop import Interrupted

    step = partial(vapo.train_step, config=CFG)
    mesh = make_mesh(8)
    stream, state = _setup()
    n = 6 * k
    full, _ = fit(step, state, stream, mesh, TrainPlan(n, 4, 0, steps_per_call=k), progress=False)
    polls = iter(range(100))
    stop_after_3_polls = lambda: next(polls) >= 3
    stream, state = _setup()
    store = Checkpoints(tmp_path / "ckpt")
    plan = TrainPlan(n, log_every=4, ckpt_every=0, steps_per_call=k)  # no periodic checkpoint
    with pytest.raises(Interrupted) as e:
        fit(
            step,
            state,
            stream,
            mesh,
            plan,
            checkpoints=store,
            progress=False,
            should_stop=stop_after_3_polls,
        )
    # 3 calls were dispatched before the stop; all of them finished
    assert e.value.step == 3 * k and store.latest_step() == 3 * k
    assert f"checkpoint {tmp_path / 'ckpt' / str(3 * k)}" in str(e.value)
    _, fresh = _setup()
    restored, meta = Checkpoints(tmp_path / "ckpt").restore(fresh)
    resumed, _ = fit(step, restored, stream, mesh, plan, cursor=meta["cursor"], progress=False)
    _assert_trees(_params(full), _params(resumed))

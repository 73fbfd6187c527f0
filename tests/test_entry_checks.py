"""Guarded entry points of the recipes (`jaxgen.methods.common` entry checks).

- `init` / `train_step` / `sample` refuse a batch of the wrong shape, an integer dtype, an empty
  batch, and a non-positive or traced `num`, each with one `ValueError` naming the function, the
  argument and what was expected vs got, eagerly and under `jax.jit` (the checks run on shapes
  and dtypes at trace time);
- the checks add nothing to the traced program (the jaxpr with them equals the jaxpr with them
  patched out) and a valid jitted step and draw give the values recorded before they existed;
- the host-side `check_inputs` catches 0..255 images, NaN / Inf, integer dtypes, empty batches
  and implausibly large toy data, and passes valid batches.

Each recipe is built small (hidden width 8, FDRL K = 2) on an 8-point 2-D batch.
"""

import re
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxgen.methods import fdrl, gan2d, vapo
from jaxgen.methods.common import (
    check_batch,
    check_count,
    check_inputs,
    check_shape,
    make_tx,
    replace_fields,
)
from jaxgen.optim import apply_gradients

SMALL = {
    "vapo": {"model.hidden": (8,)},
    "fdrl": {"model.hidden": (8,), "method.flow_steps": 2},
    "gan2d": {"model.gen_hidden": (8,), "model.disc_hidden": (8,), "model.latent": 2},
}
RECIPES = {"vapo": vapo, "fdrl": fdrl, "gan2d": gan2d}
NAMES = sorted(RECIPES)
BATCH = {"x": np.random.default_rng(0).normal(size=(8, 2)).astype(np.float32)}

# Recorded on the code before the checks existed (CPU, jax 0.10.2): the metrics of one jitted
# `train_step` on BATCH from `init(key=0)`, the sum of |params| of the first network after it,
# and `sample(new_state, 4, key=1)`.
GOLDEN = {
    "vapo": (
        {
            "grad_norm": 2.3790729,
            "grad_sq": 0.046330675,
            "loss": 0.12247279,
            "phi_mean": 0.033501573,
        },
        10.813560,
        [[-0.228888, 0.105123], [-0.261786, -0.118667], [1.137533, 0.405313], [2.017270, 1.335906]],
    ),
    "fdrl": (
        {
            "grad_norm": 1.2886125,
            "loss": 0.062018476,
            "p_term": 0.014772201,
            "q_term": 0.047246274,
            "r_p": 0.11504558,
            "r_q": -0.047246274,
        },
        10.800409,
        [
            [1.134235, -1.135540],
            [1.530117, -1.391470],
            [-1.452303, 1.170578],
            [1.142163, -0.684304],
        ],
    ),
    "gan2d": (
        {
            "d_fake": 0.4831903,
            "d_real": 0.48495886,
            "grad_norm_d": 0.74286467,
            "grad_norm_g": 0.38524339,
            "loss_d": 1.4124519,
            "loss_g": 0.70493579,
        },
        21.999327,
        [
            [-0.069319, -0.038884],
            [-0.014575, 0.024944],
            [-0.862391, 0.721701],
            [-1.669978, 1.293654],
        ],
    ),
}


@pytest.fixture(scope="module", params=NAMES)
def built(request):
    """`(name, module, config, state)`: a small recipe after `init` on BATCH."""
    name = request.param
    mod = RECIPES[name]
    cfg = replace_fields(mod.Config(), SMALL[name])
    return name, mod, cfg, mod.init(cfg, BATCH, key=jax.random.PRNGKey(0))


def _step(mod, cfg, jit: bool):
    fn = partial(mod.train_step, config=cfg)
    return jax.jit(fn) if jit else fn


# ---------------------------------------------------------------- train_step


# the example size (vapo, fdrl: flattened D from the first kernel) or shape (gan2d: the buffer's)
@pytest.mark.parametrize("jit", [False, True], ids=["eager", "jit"])
def test_train_step_refuses_a_wrong_example_shape(built, jit):
    name, mod, cfg, state = built
    batch = {"x": np.zeros((8, 3), np.float32)}
    want = f"{name}.train_step: batch['x'] has shape (8, 3), the state was initialised for "
    with pytest.raises(ValueError, match=re.escape(want + "examples of shape (2,)")):
        _step(mod, cfg, jit)(state, batch)


@pytest.mark.parametrize("jit", [False, True], ids=["eager", "jit"])
@pytest.mark.parametrize("dtype", ["int8", "int32", "uint8", "bool"])
def test_train_step_refuses_a_non_floating_batch(built, jit, dtype):
    name, mod, cfg, state = built
    batch = {"x": np.zeros((8, 2), dtype)}
    want = f"{name}.train_step: batch['x'] must be a floating dtype, got {dtype}"
    with pytest.raises(ValueError, match=re.escape(want)):
        _step(mod, cfg, jit)(state, batch)


@pytest.mark.parametrize("jit", [False, True], ids=["eager", "jit"])
def test_train_step_refuses_an_empty_batch(built, jit):
    name, mod, cfg, state = built
    with pytest.raises(ValueError, match=re.escape(f"{name}.train_step: batch is empty")):
        _step(mod, cfg, jit)(state, {"x": np.zeros((0, 2), np.float32)})


@pytest.mark.parametrize("jit", [False, True], ids=["eager", "jit"])
def test_train_step_refuses_a_batch_without_examples_axis_or_x(built, jit):
    name, mod, cfg, state = built
    step = _step(mod, cfg, jit)
    with pytest.raises(ValueError, match=re.escape(f"{name}.train_step: batch['x'] must be [B, ")):
        step(state, {"x": np.zeros((8,), np.float32)})
    with pytest.raises(ValueError, match=re.escape(f"{name}.train_step: batch must be a dict")):
        step(state, {"image": np.zeros((8, 2), np.float32)})


@pytest.mark.parametrize("jit", [False, True], ids=["eager", "jit"])
def test_gan2d_train_step_refuses_another_batch_size(jit):
    cfg = replace_fields(gan2d.Config(), SMALL["gan2d"])
    state = gan2d.init(cfg, BATCH, key=jax.random.PRNGKey(0))
    want = (
        "gan2d.train_step: batch['x'] has 4 examples (shape (4, 2)), the state was initialised "
        "for batches of 8"
    )
    with pytest.raises(ValueError, match=re.escape(want)):
        _step(gan2d, cfg, jit)(state, {"x": np.zeros((4, 2), np.float32)})


@pytest.mark.parametrize("jit", [False, True], ids=["eager", "jit"])
def test_vapo_resnet_train_step_checks_the_channels(jit):
    model = dict(network="resnet", ch=4, ch_mult=(1,), num_res_blocks=1)
    cfg = vapo.Config(model=vapo.Model(**model))
    state = vapo.init(cfg, {"x": np.zeros((2, 8, 8, 1), np.float32)}, key=jax.random.PRNGKey(0))
    want = (
        "vapo.train_step: batch['x'] has shape (2, 8, 8, 3), the state was initialised for "
        "examples of shape (8, 8, 1)"
    )
    with pytest.raises(ValueError, match=re.escape(want)):
        _step(vapo, cfg, jit)(state, {"x": np.zeros((2, 8, 8, 3), np.float32)})
    with pytest.raises(ValueError, match=re.escape("examples of shape (8, 8, 1)")):
        _step(vapo, cfg, jit)(state, {"x": np.zeros((2, 64), np.float32)})


def test_train_step_accepts_other_float_dtypes(built):
    """float64 and bfloat16 data are floating: the steps cast them to float32."""
    name, mod, cfg, state = built
    step = _step(mod, cfg, True)
    for dtype in (np.float64, jnp.bfloat16):
        _, metrics = step(state, {"x": np.asarray(BATCH["x"]).astype(dtype)})
        assert all(bool(jnp.isfinite(v)) for v in metrics.values()), name


# ---------------------------------------------------------------- valid calls are unchanged


def test_jitted_step_and_draw_give_the_recorded_values(built):
    name, mod, cfg, state = built
    metrics_want, abs_sum_want, x_want = GOLDEN[name]
    new, metrics = _step(mod, cfg, True)(state, BATCH)
    assert sorted(metrics) == sorted(metrics_want)
    for k, v in metrics_want.items():
        np.testing.assert_allclose(float(metrics[k]), v, rtol=1e-4, atol=1e-6, err_msg=k)
    params = getattr(new, mod.CAPABILITIES.networks[0]).params
    abs_sum = sum(float(jnp.sum(jnp.abs(p))) for p in jax.tree.leaves(params))
    np.testing.assert_allclose(abs_sum, abs_sum_want, rtol=1e-4)
    draw = jax.jit(partial(mod.sample, config=cfg), static_argnums=1)
    x, _ = draw(new, 4, key=jax.random.PRNGKey(1))
    np.testing.assert_allclose(np.asarray(x), x_want, rtol=1e-4, atol=1e-4)


def test_vapo_step_equals_its_unchecked_composition():
    """The jitted step is exactly loss gradient + optimizer update, as written out here."""
    cfg = replace_fields(vapo.Config(), SMALL["vapo"])
    state = vapo.init(cfg, BATCH, key=jax.random.PRNGKey(0))

    def by_hand(state, batch):
        key = jax.random.fold_in(state.key, state.step)
        opt = cfg.optim.potential
        with jax.default_matmul_precision("float32"):
            grads, metrics = jax.grad(vapo.loss_fn, has_aux=True)(
                state.potential.params, batch["x"], key, config=cfg
            )
        ms, gnorm = apply_gradients(
            state.potential, grads, make_tx(opt), step=state.step, ema_rate=opt.ema_rate
        )
        return state.replace(step=state.step + 1, potential=ms), {**metrics, "grad_norm": gnorm}

    got = _step(vapo, cfg, True)(state, BATCH)
    want = jax.jit(by_hand)(state, BATCH)
    for a, b in zip(jax.tree.leaves(got), jax.tree.leaves(want), strict=True):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def test_checks_add_nothing_to_the_traced_program(built):
    """The jaxprs of `train_step` and `sample` with the checks equal those with them patched
    out: they are Python on shapes and dtypes only."""
    name, mod, cfg, state = built
    step = partial(mod.train_step, config=cfg)
    draw = lambda s: mod.sample(s, 4, config=cfg, key=jax.random.PRNGKey(1))
    checked = str(jax.make_jaxpr(step)(state, BATCH)), str(jax.make_jaxpr(draw)(state))
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(mod, "check_state_batch", lambda batch, state, who, **kw: batch["x"])
        mp.setattr(mod, "check_count", lambda num, who: num)
        mp.setattr(mod, "sample_shape", lambda state, shape, who: state.example_shape)
        unchecked = str(jax.make_jaxpr(step)(state, BATCH)), str(jax.make_jaxpr(draw)(state))
    assert checked == unchecked


# ---------------------------------------------------------------- sample


@pytest.mark.parametrize("num", [-1, 0, 2.5, True, "4", None])
def test_sample_refuses_a_bad_count(built, num):
    name, mod, cfg, state = built
    want = f"{name}.sample: num must be a positive int, got {num!r}"
    with pytest.raises(ValueError, match=re.escape(want)):
        mod.sample(state, num, config=cfg, key=jax.random.PRNGKey(1))
    draw = jax.jit(partial(mod.sample, config=cfg), static_argnums=1)  # refused at trace time
    with pytest.raises(ValueError, match=re.escape(want)):
        draw(state, num, key=jax.random.PRNGKey(1))


def test_sample_refuses_a_traced_count(built):
    name, mod, cfg, state = built
    draw = jax.jit(partial(mod.sample, config=cfg))  # num not static
    with pytest.raises(ValueError, match=re.escape(f"{name}.sample: num must be a positive int")):
        draw(state, 4, key=jax.random.PRNGKey(1))


def test_sample_takes_numpy_ints(built):
    name, mod, cfg, state = built
    x, _ = mod.sample(state, np.int64(3), config=cfg, key=jax.random.PRNGKey(1))
    assert x.shape == (3, 2), name


def test_sample_refuses_a_shape_the_state_was_not_built_for(built):
    name, mod, cfg, state = built
    want = f"{name}.sample: shape=(3,), the state was initialised for examples of shape (2,)"
    with pytest.raises(ValueError, match=re.escape(want)):
        mod.sample(state, 4, config=cfg, key=jax.random.PRNGKey(1), shape=(3,))


def test_vapo_interpolate_checks_its_count():
    cfg = replace_fields(vapo.Config(), SMALL["vapo"])
    state = vapo.init(cfg, BATCH, key=jax.random.PRNGKey(0))
    with pytest.raises(ValueError, match=re.escape("vapo.interpolate: num must be a positive")):
        vapo.interpolate(state, 0, config=cfg, key=jax.random.PRNGKey(1), shape=(2,))


# ---------------------------------------------------------------- init


def test_init_refuses_integer_and_empty_examples(built):
    name, mod, cfg, _ = built
    key = jax.random.PRNGKey(0)
    with pytest.raises(ValueError, match=re.escape(f"{name}.init: batch['x'] must be a floating")):
        mod.init(cfg, {"x": np.zeros((8, 2), np.int8)}, key=key)
    with pytest.raises(ValueError, match=re.escape(f"{name}.init: batch is empty")):
        mod.init(cfg, {"x": np.zeros((0, 2), np.float32)}, key=key)


def test_vapo_init_refuses_non_finite_examples():
    cfg = replace_fields(vapo.Config(), SMALL["vapo"])
    x = np.array([[0.0, np.nan], [1.0, 0.0]], np.float32)
    with pytest.raises(ValueError, match=re.escape("vapo.init: batch['x'] has 1 non-finite")):
        vapo.init(cfg, {"x": x}, key=jax.random.PRNGKey(0))


def test_fdrl_init_checks_the_fitted_prior():
    cfg = replace_fields(fdrl.Config(), {**SMALL["fdrl"], "method.prior": "ddp"})
    fitted = fdrl.fit_data(cfg, np.random.default_rng(0).normal(size=(64, 3)))
    want = "fdrl.init: fitted has shapes (3,) and (3, 3); examples of shape (2,) need (2,) and"
    with pytest.raises(ValueError, match=re.escape(want)):
        fdrl.init(cfg, BATCH, key=jax.random.PRNGKey(0), fitted=fitted)


def test_gan2d_init_takes_flat_data_only():
    cfg = replace_fields(gan2d.Config(), SMALL["gan2d"])
    with pytest.raises(ValueError, match=re.escape("gan2d.init: gan2d takes flat data [B, D]")):
        gan2d.init(cfg, {"x": np.zeros((4, 2, 2), np.float32)}, key=jax.random.PRNGKey(0))


# ---------------------------------------------------------------- the helpers themselves


def test_static_helpers_on_valid_arguments():
    x = jnp.ones((4, 8, 8, 3))
    assert check_batch({"x": x}, "f", example_shape=("H", "W", 3), batch_size=4) is x
    assert check_batch({"x": x}, "f", example_size=192) is x
    assert check_shape([8, 8, 3], "f", example_shape=("H", "W", 3)) == (8, 8, 3)
    assert check_count(np.int32(5), "f") == 5 and type(check_count(np.int32(5), "f")) is int
    with pytest.raises(ValueError, match=re.escape("f: shape must be a tuple of positive ints")):
        check_shape((0, 2), "f")
    with pytest.raises(ValueError, match=re.escape("f: steps must be a positive int, got -2")):
        check_count(-2, "f", "steps")


def test_check_inputs_catches_pixels_nan_and_integers():
    pixels = np.linspace(0, 255, 2 * 8 * 8).reshape(2, 8, 8, 1).astype(np.float32)
    want = (
        "train: images must be scaled to [-1, 1]; got values in [0, 255] "
        "(looks like 0..255 pixels; scale to [-1, 1])"
    )
    with pytest.raises(ValueError, match=re.escape(want)):
        check_inputs({"x": pixels}, image=True, who="train")
    with pytest.raises(ValueError, match=re.escape("got values in [-2, 0.5]")) as info:
        check_inputs({"x": np.array([-2.0, 0.5, 0, 0]).reshape(1, 2, 2, 1)}, image=True, who="t")
    assert "0..255" not in str(info.value)
    nan = np.zeros((4, 2), np.float32)
    nan[1, 0], nan[2, 1] = np.nan, np.inf
    want = "train: batch['x'] has 2 non-finite value(s) (NaN or Inf)"
    with pytest.raises(ValueError, match=re.escape(want)):
        check_inputs({"x": nan}, image=False, who="train")
    with pytest.raises(ValueError, match=re.escape("train: batch['x'] must be a floating dtype")):
        check_inputs({"x": np.zeros((2, 8, 8, 1), np.int8)}, image=True, who="train")
    with pytest.raises(ValueError, match=re.escape("must be a floating dtype, got uint8 (scale")):
        check_inputs({"x": np.zeros((2, 8, 8, 1), np.uint8)}, image=True, who="train")
    with pytest.raises(ValueError, match=re.escape("train: batch is empty")):
        check_inputs({"x": np.zeros((0, 2), np.float32)}, image=False, who="train")
    with pytest.raises(ValueError, match=re.escape("beyond ±1000; the recipes expect data of")):
        check_inputs({"x": np.full((2, 2), 5e3, np.float32)}, image=False, who="train")
    check_inputs({"x": np.full((2, 2), 5e3, np.float32)}, image=False, who="t", max_abs=None)


def test_check_inputs_passes_valid_batches():
    rng = np.random.default_rng(0)
    images = rng.uniform(-1, 1, size=(4, 8, 8, 3)).astype(np.float32)
    images[0, 0, 0, 0], images[0, 0, 0, 1] = -1.0, 1.0  # the ends are in range
    assert check_inputs({"x": images}, image=True, who="train") is None
    assert check_inputs({"x": jnp.asarray(images, jnp.bfloat16)}, image=True, who="t") is None
    toy = rng.normal(size=(16, 2)) * 4  # toy 2-D data may leave [-1, 1]
    assert check_inputs({"x": toy}, image=False, who="train") is None

"""Optimizers and schedules (`jaxgen.optim.optimizers`) and the typed `Optim` section
(`jaxgen.methods.common`): Adam's first steps against their closed forms (eps, b1/b2), coupled
L2 as a gradient term, AdamW's decoupled decay, LAMB's trust ratio, clipping before L2, the
warm-up / cosine-with-floor / step / milestone schedules, and `Optim` validation and `make_tx`
as exactly `make_optimizer` with the section's fields.

Most checks use b1 = 0.5, b2 = 0.75: their powers and 1 − b^t are exact in float32, so the
closed forms hold to float32 rounding (rtol 1e-6) rather than to the ~1e-5 error that
1 − 0.999 carries in float32.
"""

import dataclasses
import inspect
import math

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from jaxgen.methods.common import FieldError, Optim, make_tx, validate
from jaxgen.optim import DECAYS, OPTIMIZERS, learning_rate_schedule, make_optimizer

B = dict(b1=0.5, b2=0.75)  # exact in float32 (see the module docstring)
G = {"w": jnp.array([[0.5, -2.0], [3.0, -0.25]]), "b": jnp.array([1.5, -0.75, 4.0])}
THETA = {"w": jnp.array([[1.0, 2.0], [-3.0, 0.5]]), "b": jnp.array([-1.0, 0.25, 2.0])}


def updates_of(tx, grads_seq, params, *, apply=True):
    """The updates of `tx` for each gradient of `grads_seq` (params moved by each update when
    `apply`); returns `(updates, params_before_each_step)`."""
    state = tx.init(params)
    out, seen = [], []
    for g in grads_seq:
        seen.append(params)
        u, state = tx.update(g, state, params)
        out.append(u)
        if apply:
            params = optax.apply_updates(params, u)
    return out, seen


def first_update(tx, grads=G, params=THETA):
    return updates_of(tx, [grads], params)[0][0]


def tree_allclose(a, b, rtol=1e-6, atol=0.0):
    jax.tree.map(lambda x, y: np.testing.assert_allclose(x, y, rtol=rtol, atol=atol), a, b)


def adam_first(g, lr, eps):
    """Bias-corrected first Adam step: m̂ = g, v̂ = g², update −lr·g/(|g| + eps)."""
    return jax.tree.map(lambda x: -lr * x / (jnp.abs(x) + eps), g)


# ---------------------------------------------------------------- Adam: eps, b1, b2


@pytest.mark.parametrize("eps", [1e-8, 1.0, 3.0])
def test_adam_first_step_closed_form_forwards_eps(eps):
    lr = 0.1
    tree_allclose(first_update(make_optimizer("adam", lr, eps=eps, **B)), adam_first(G, lr, eps))


def test_large_eps_shrinks_the_first_update_by_abs_g_over_abs_g_plus_eps():
    lr = 0.1
    small = first_update(make_optimizer("adam", lr, eps=1e-8, **B))
    large = first_update(make_optimizer("adam", lr, eps=1.0, **B))
    np.testing.assert_allclose(small["b"], -lr * np.sign(G["b"]), rtol=1e-6)
    factor = jax.tree.map(lambda g: jnp.abs(g) / (jnp.abs(g) + 1.0), G)  # e.g. 0.8 for |g| = 4
    tree_allclose(jax.tree.map(jnp.divide, large, small), factor)


def test_adam_first_step_with_default_betas():
    """Default b1 = 0.9, b2 = 0.999: same closed form, within the float32 error of 1 − 0.999."""
    tree_allclose(
        first_update(make_optimizer("adam", 0.01, eps=1.0)), adam_first(G, 0.01, 1.0), 1e-5
    )


def test_adam_second_step_forwards_b1_b2():
    """Two steps: m₂ = b1(1−b1)g₁ + (1−b1)g₂, v₂ = b2(1−b2)g₁² + (1−b2)g₂², bias-corrected by
    1 − b². Different betas give different second steps (so the test sees them)."""
    g1, g2 = np.array([1.0, -2.0, 0.5]), np.array([-3.0, -1.0, 2.0])
    lr, eps, p = 0.1, 0.5, {"x": jnp.zeros(3)}
    for b1, b2 in [(0.5, 0.75), (0.25, 0.5)]:
        (_, u2), _ = updates_of(
            make_optimizer("adam", lr, b1=b1, b2=b2, eps=eps), [{"x": g1}, {"x": g2}], p
        )
        m = (b1 * (1 - b1) * g1 + (1 - b1) * g2) / (1 - b1**2)
        v = (b2 * (1 - b2) * g1**2 + (1 - b2) * g2**2) / (1 - b2**2)
        np.testing.assert_allclose(u2["x"], -lr * m / (np.sqrt(v) + eps), rtol=1e-6)


# ---------------------------------------------------------------- L2, weight decay, LAMB


def test_coupled_l2_is_adam_on_g_plus_l2_theta():
    lr, c = 0.1, 0.5
    got = first_update(make_optimizer("adam", lr, eps=1.0, l2=c, **B))
    g_l2 = jax.tree.map(lambda g, t: g + c * t, G, THETA)
    tree_allclose(got, first_update(make_optimizer("adam", lr, eps=1.0, **B), g_l2))
    tree_allclose(got, adam_first(g_l2, lr, 1.0))
    plain = first_update(make_optimizer("adam", lr, eps=1.0, **B))
    assert not np.allclose(got["w"], plain["w"])  # the l2 term is visible here


def test_coupled_l2_over_a_trajectory():
    """Three steps with params moving: each gradient seen by Adam is g_t + l2·θ_t."""
    lr, c = 0.05, 0.3
    grads = [G, jax.tree.map(lambda x: -0.5 * x, G), jax.tree.map(lambda x: x**2, G)]
    got, thetas = updates_of(make_optimizer("adam", lr, eps=0.5, l2=c, **B), grads, THETA)
    coupled = [
        jax.tree.map(lambda g, t: g + c * t, g, th) for g, th in zip(grads, thetas, strict=True)
    ]
    ref, _ = updates_of(make_optimizer("adam", lr, eps=0.5, **B), coupled, THETA, apply=False)
    tree_allclose(got, ref)


def test_adamw_is_adam_minus_lr_wd_theta():
    """Decoupled decay: update_t = adam_update_t − lr·wd·θ_t (the Adam moments ignore θ)."""
    lr, wd = 0.1, 0.2
    grads = [G, jax.tree.map(lambda x: 2.0 - x, G)]
    got, thetas = updates_of(
        make_optimizer("adamw", lr, eps=1.0, weight_decay=wd, **B), grads, THETA
    )
    adam, _ = updates_of(make_optimizer("adam", lr, eps=1.0, **B), grads, THETA, apply=False)
    for u, a, th in zip(got, adam, thetas, strict=True):
        tree_allclose(u, jax.tree.map(lambda a_, t: a_ - lr * wd * t, a, th), atol=1e-7)
    tree_allclose(got[0], jax.tree.map(lambda a, t: a - lr * wd * t, adam_first(G, lr, 1.0), THETA))


def test_adamw_without_decay_is_adam():
    tree_allclose(
        first_update(make_optimizer("adamw", 0.1, eps=1.0, **B)),
        first_update(make_optimizer("adam", 0.1, eps=1.0, **B)),
    )


def test_lamb_update_has_norm_lr_times_param_norm_per_leaf():
    """LAMB: direction −(adam direction + wd·θ), rescaled per leaf to ‖update‖ = lr·‖θ‖."""
    lr, wd = 0.1, 0.05
    got = first_update(make_optimizer("lamb", lr, eps=1.0, weight_decay=wd, **B))
    for k in G:
        d = G[k] / (jnp.abs(G[k]) + 1.0) + wd * THETA[k]
        expect = -lr * jnp.linalg.norm(THETA[k]) * d / jnp.linalg.norm(d)
        np.testing.assert_allclose(got[k], expect, rtol=1e-5)


def test_adam_refuses_weight_decay():
    with pytest.raises(ValueError, match="weight_decay=0.1") as e:
        make_optimizer("adam", 1e-3, weight_decay=0.1)
    assert "adamw" in str(e.value) and "l2" in str(e.value)


def test_unknown_optimizer_and_decay_raise():
    with pytest.raises(ValueError, match="unknown optimizer 'sgd'"):
        make_optimizer("sgd")
    with pytest.raises(ValueError, match="unknown decay 'linear'"):
        learning_rate_schedule(1.0, decay="linear")
    with pytest.raises(ValueError, match="positive"):
        learning_rate_schedule(0.0)
    assert OPTIMIZERS == ("adam", "adamw", "lamb")
    assert DECAYS == ("constant", "cosine", "step", "milestones")


# ---------------------------------------------------------------- clipping


def test_grad_clip_scales_to_the_global_norm_only_above_it():
    g_norm = float(optax.tree.norm(G))  # ≈ 5.85
    clipped = first_update(make_optimizer("adam", 0.1, eps=1.0, grad_clip=2.0, **B))
    tree_allclose(clipped, adam_first(jax.tree.map(lambda x: x * 2.0 / g_norm, G), 0.1, 1.0))
    loose = first_update(make_optimizer("adam", 0.1, eps=1.0, grad_clip=10.0, **B))
    tree_allclose(loose, adam_first(G, 0.1, 1.0))


def test_grad_clip_applies_to_the_raw_gradient_before_l2():
    """g = (3, 4) (norm 5), θ = (10, 0), l2 = 1, clip 1: clip-then-l2 feeds Adam (10.6, 0.8);
    l2-then-clip would feed (13, 4)/‖(13, 4)‖ = (0.956, 0.294)."""
    g, theta, lr = {"x": jnp.array([3.0, 4.0])}, {"x": jnp.array([10.0, 0.0])}, 0.1
    got = first_update(make_optimizer("adam", lr, eps=1.0, grad_clip=1.0, l2=1.0, **B), g, theta)
    clip_then_l2 = np.array([0.6 + 10.0, 0.8])
    np.testing.assert_allclose(got["x"], -lr * clip_then_l2 / (clip_then_l2 + 1.0), rtol=1e-6)
    h = np.array([13.0, 4.0])
    l2_then_clip = h / np.linalg.norm(h)
    wrong = -lr * l2_then_clip / (l2_then_clip + 1.0)
    assert np.all(np.abs(got["x"] - wrong) > 0.01)  # the two orders differ by ~half the update


# ---------------------------------------------------------------- schedules


def values(sched, steps):
    return np.array([float(sched(jnp.asarray(s))) for s in steps])


def cosine_floor(s, total, floor, start=0):
    return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * (s - start) / (total - start)))


def test_constant_and_linear_warmup():
    np.testing.assert_allclose(values(learning_rate_schedule(0.3), [0, 7, 10_000]), [0.3] * 3)
    sched = learning_rate_schedule(0.4, warmup_steps=4)
    np.testing.assert_allclose(
        values(sched, [0, 1, 2, 3, 4, 100]), [0, 0.1, 0.2, 0.3, 0.4, 0.4], rtol=1e-6
    )


def test_cosine_with_floor():
    sched = learning_rate_schedule(1.0, decay="cosine", total_steps=100, min_lr_ratio=0.1)
    np.testing.assert_allclose(
        values(sched, [0, 50, 100, 101, 1000]), [1, 0.55, 0.1, 0.1, 0.1], rtol=1e-6
    )
    steps = [10, 25, 75, 90]
    np.testing.assert_allclose(
        values(sched, steps), [cosine_floor(s, 100, 0.1) for s in steps], rtol=1e-5
    )
    np.testing.assert_allclose(
        float(sched(50)), 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi / 2)), rtol=1e-6
    )


def test_cosine_with_warmup_still_reaches_the_floor_at_total_steps():
    sched = learning_rate_schedule(
        2.0, warmup_steps=10, decay="cosine", total_steps=100, min_lr_ratio=0.1
    )
    np.testing.assert_allclose(
        values(sched, [0, 5, 10, 100, 150]), [0, 1.0, 2.0, 0.2, 0.2], rtol=1e-6
    )
    steps = [20, 55, 80]
    expect = [2.0 * cosine_floor(s, 100, 0.1, start=10) for s in steps]
    np.testing.assert_allclose(values(sched, steps), expect, rtol=1e-5)
    with pytest.raises(ValueError, match="total_steps > warmup_steps"):
        learning_rate_schedule(1.0, warmup_steps=10, decay="cosine", total_steps=10)


def test_step_decay_is_a_staircase():
    sched = learning_rate_schedule(1.0, decay="step", decay_steps=3, decay_factor=0.5)
    np.testing.assert_allclose(
        values(sched, [0, 2, 3, 5, 6, 9]), [1, 1, 0.5, 0.5, 0.25, 0.125], rtol=1e-6
    )
    with pytest.raises(ValueError, match="decay_steps > 0"):
        learning_rate_schedule(1.0, decay="step", decay_steps=0)


def test_milestones():
    sched = learning_rate_schedule(1.0, decay="milestones", milestones=(5, 8), decay_factor=0.1)
    got = values(sched, [0, 4, 5, 7, 8, 20])
    np.testing.assert_allclose(got, [1, 1, 0.1, 0.1, 0.01, 0.01], rtol=1e-6)


def test_milestones_are_absolute_steps_under_warmup():
    sched = learning_rate_schedule(
        1.0, warmup_steps=2, decay="milestones", milestones=(5, 8), decay_factor=0.1
    )
    got = values(sched, [1, 2, 4, 5, 7, 8])
    np.testing.assert_allclose(got, [0.5, 1, 1, 0.1, 0.1, 0.01], rtol=1e-6)


@pytest.mark.parametrize("milestones", [(), (5, 5), (8, 5), (0,), (-3, 5)])
def test_bad_milestones_raise(milestones):
    with pytest.raises(ValueError, match="increasing steps > 0"):
        learning_rate_schedule(1.0, decay="milestones", milestones=milestones)


def test_optimizer_follows_its_schedule():
    """With a constant gradient Adam's direction is constant (m̂ = g, v̂ = g² at every step),
    so update_t = −lr_t·g/(|g| + eps) traces the schedule step by step."""
    kw = dict(warmup_steps=2, decay="milestones", milestones=(5, 8), decay_factor=0.1)
    tx = make_optimizer("adam", 1.0, eps=1.0, **kw, **B)
    g = {"x": jnp.array([1.0, -3.0])}
    ups, _ = updates_of(tx, [g] * 10, {"x": jnp.zeros(2)})
    lrs = values(learning_rate_schedule(1.0, **kw), range(10))
    np.testing.assert_allclose(lrs, [0, 0.5, 1, 1, 1, 0.1, 0.1, 0.1, 0.01, 0.01], rtol=1e-6)
    direction = np.array([0.5, -0.75])  # g / (|g| + 1)
    np.testing.assert_allclose(
        np.stack([u["x"] for u in ups]), -lrs[:, None] * direction, rtol=1e-6
    )


# ---------------------------------------------------------------- Optim and make_tx


@pytest.mark.parametrize(
    "field, kwargs",
    [
        ("lr", dict(lr=0.0)),
        ("lr", dict(lr=-1e-3)),
        ("b1", dict(b1=1.0)),
        ("b2", dict(b2=1.0)),
        ("eps", dict(eps=0.0)),
        ("ema_rate", dict(ema_rate=1.0)),
        ("decay_steps", dict(decay="step", decay_steps=0)),
        ("milestones", dict(decay="milestones", milestones=())),
        ("milestones", dict(decay="milestones", milestones=(8, 5))),
        ("min_lr_ratio", dict(min_lr_ratio=1.5)),
        ("grad_clip", dict(grad_clip=-1.0)),
        ("l2", dict(l2=-0.1)),
        ("weight_decay", dict(optimizer="adamw", weight_decay=-0.1)),
        ("optimizer", dict(optimizer="sgd")),
        ("decay", dict(decay="linear")),
    ],
)
def test_optim_refuses_impossible_values(field, kwargs):
    with pytest.raises(FieldError) as e:
        Optim(**kwargs)
    assert e.value.field == field
    assert str(e.value).startswith(f"{field}=")
    assert isinstance(e.value, ValueError)


def test_optim_adam_with_weight_decay_is_a_field_error():
    with pytest.raises(FieldError) as e:
        Optim(optimizer="adam", weight_decay=0.1)
    assert str(e.value).startswith("weight_decay=0.1:")
    assert "adamw" in str(e.value) and "l2" in str(e.value)
    assert Optim(optimizer="adamw", weight_decay=0.1).weight_decay == 0.1
    assert Optim(optimizer="lamb", weight_decay=0.1).weight_decay == 0.1


def test_optim_accepts_the_edges():
    Optim(b1=0.0, b2=0.0, ema_rate=0.0, min_lr_ratio=1.0, grad_clip=0.0)
    Optim(decay="milestones", milestones=(1, 2))
    Optim(decay="step", decay_steps=1)


def test_optim_defaults_match_make_optimizer():
    """Every `Optim` field but `ema_rate` is a `make_optimizer` argument with the same default,
    so an unset field means the same thing in a Config and in a direct call."""
    params = inspect.signature(make_optimizer).parameters
    for f in dataclasses.fields(Optim):
        if f.name == "ema_rate":
            assert f.name not in params
            continue
        arg = "name" if f.name == "optimizer" else f.name
        assert arg in params, f.name
        assert params[arg].default == f.default, f.name


def test_make_tx_is_make_optimizer_with_the_sections_fields():
    kw = dict(
        b1=0.8,
        b2=0.9,
        eps=0.5,
        weight_decay=0.1,
        l2=0.05,
        warmup_steps=2,
        decay="milestones",
        milestones=(3, 5),
        decay_factor=0.5,
        grad_clip=3.0,
    )
    grads = [G, jax.tree.map(lambda x: 1.0 - x, G), G, jax.tree.map(jnp.sin, G)] * 2
    ref, _ = updates_of(make_optimizer("adamw", 0.02, **kw), grads, THETA)
    for ema in (0.0, 0.5, 0.999):  # ema_rate is not an optimizer setting
        got, _ = updates_of(
            make_tx(Optim(optimizer="adamw", lr=0.02, ema_rate=ema, **kw)), grads, THETA
        )
        jax.tree.map(np.testing.assert_array_equal, got, ref)
    # and the fields matter: a different section gives different updates
    other, _ = updates_of(
        make_tx(Optim(optimizer="adamw", lr=0.02, **{**kw, "eps": 1e-8})), grads, THETA
    )
    assert np.allclose(ref[0]["w"], 0.0)  # step 0 of the warm-up has lr 0
    assert not np.allclose(other[2]["w"], ref[2]["w"])


@pytest.mark.parametrize("optimizer", OPTIMIZERS)
def test_make_tx_matches_for_each_optimizer(optimizer):
    wd = 0.0 if optimizer == "adam" else 0.1
    opt = Optim(
        optimizer=optimizer, lr=0.01, eps=0.1, weight_decay=wd, decay="cosine", total_steps=5
    )
    ref = make_optimizer(optimizer, 0.01, eps=0.1, weight_decay=wd, decay="cosine", total_steps=5)
    got, _ = updates_of(make_tx(opt), [G] * 3, THETA)
    want, _ = updates_of(ref, [G] * 3, THETA)
    jax.tree.map(np.testing.assert_array_equal, got, want)


# ---------------------------------------------------------------- validate


@dataclasses.dataclass(frozen=True)
class _Section:
    n: int = 1
    kind: str = "a"


def test_validate_reports_the_first_failing_field_with_its_reason():
    s = _Section(n=-2, kind="z")
    with pytest.raises(FieldError, match=r"^n=-2: out of range$"):
        validate(s, {"n": s.n > 0})
    with pytest.raises(FieldError, match=r"^n=-2: must be > 0$"):
        validate(s, {"n": (s.n > 0, "must be > 0")}, {"kind": ("a", "b")})
    with pytest.raises(FieldError, match=r"^kind='z': choose one of \['a', 'b'\]$") as e:
        validate(s, {"n": True}, {"kind": ("a", "b")})
    assert (e.value.field, e.value.value) == ("kind", "z")
    validate(_Section(), {"n": True}, {"kind": ("a", "b")})  # no error


def test_every_decay_counts_absolute_steps_with_warmup():
    """Step decay, milestones and cosine all count from step 0, warm-up included."""
    stp = learning_rate_schedule(1.0, warmup_steps=2, decay="step", decay_steps=5, decay_factor=0.1)
    np.testing.assert_allclose([float(stp(n)) for n in (1, 4, 5, 9, 10)], [0.5, 1, 0.1, 0.1, 0.01])
    cos = learning_rate_schedule(1.0, warmup_steps=10, decay="cosine", total_steps=100)
    assert float(cos(10)) == pytest.approx(1.0) and float(cos(100)) == pytest.approx(0.0, abs=1e-7)

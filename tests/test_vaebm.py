"""VAEBM's mathematics (docs/methods/vaebm.md): the ε-space chain samples the tilted law (a linear
energy on a linear-Gaussian VAE, in closed form, against the discrete chain's exact stationary
law); the spectral regulariser against the SVD; the second-moment clip against its formula; the
replay buffer's statistics; and the one-line errors of bad input."""

import dataclasses
import importlib

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from experiments.train import train
from jaxgen.methods import glf, vae, vaebm
from jaxgen.methods.common import ConfigError, replace_fields
from jaxgen.nn.tilt_energy import TiltEnergy
from jaxgen.objectives.spectral import init_power_vectors, spectral_regulariser, wn_kernels
from jaxgen.optim import make_optimizer
from jaxgen.optim.moment_clip import clip_by_second_moment
from jaxgen.parallel import make_mesh, state_shardings
from jaxgen.samplers.replay import buffer_draw, buffer_init, buffer_push, replay_probability
from jaxgen.train.step import make_sharded_step

D, LATENT = 2, 2
W = np.array([[1.5, 0.3], [-0.4, 0.8]], np.float32)  # the decoder's weight, z -> x
B_DEC = np.array([0.5, -1.0], np.float32)
LOG_SIGMA = np.log(np.array([0.6, 0.3], np.float32))
TILT = np.array([0.7, -1.2], np.float32)  # the energy f(x) = TILT·x (+ 0.25)

LINEAR = {
    "model.hidden": (),
    "model.base.hidden": (),
    "model.base.latent": LATENT,
    "method.use_eps_x": True,
}


def _linear_state(eta=0.1, steps=400, **fields):
    """A vaebm state on the linear-Gaussian base x = W z + b + σ ⊙ ε_x with the linear energy."""
    cfg = replace_fields(vaebm.Config(), {**LINEAR, **fields})
    cfg = replace_fields(cfg, {"sample.langevin_steps": steps, "sample.step_size": eta})
    base_cfg = vaebm.base_config(cfg)
    x = np.zeros((8, D), np.float32)
    base = vae.init(base_cfg, {"x": x}, key=jax.random.PRNGKey(0))
    p = dict(base.vae.params)
    p["decoder"] = {"dense_0": {"kernel": jnp.asarray(W.T), "bias": jnp.asarray(B_DEC)}}
    p["log_sigma_x"] = jnp.asarray(LOG_SIGMA)
    base = base.replace(vae=base.vae.replace(params=p))
    state = vaebm.init(cfg, {"x": x}, key=jax.random.PRNGKey(1), base=base)
    dense = {"kernel": jnp.asarray(TILT[:, None]), "bias": jnp.asarray([0.25])}
    energy = {"mlp": {"dense_0": dense}}
    return cfg, state.replace(energy=state.energy.replace(params=energy))


def test_linear_base_is_what_the_test_assumes():
    cfg, state = _linear_state()
    eps = {"z": jnp.eye(2), "x": jnp.zeros((2, 2))}
    x, z = vaebm.tilt_base(cfg, (D,)).generate(state.base, eps, mean=False)
    np.testing.assert_allclose(x, W.T + B_DEC, rtol=1e-6)  # column i of W plus b
    np.testing.assert_allclose(
        vaebm.energy_fn(state.energy.params, x, config=cfg), (W.T + B_DEC) @ TILT + 0.25, rtol=1e-5
    )


@pytest.mark.parametrize("form", ["thesis", "joint_logp"])
def test_eps_chain_pushed_through_the_decoder_is_the_tilted_law(form):
    """p(x) ∝ N(x; b, S) e^{−wᵀx}, S = W Wᵀ + diag σ², is N(b − S w, S). In ε the target is
    N(μ_ε, I) with μ_ε = −[Wᵀw; σ ⊙ w]; the discrete chain (step η/2, noise √η) has the exact
    mean and covariance I/(1 − η/4) at stationarity, so the draws have mean b − S w and
    covariance S/(1 − η/4); the decoder means μ_x(z) = W z + b: mean b − W Wᵀ w, covariance
    W Wᵀ/(1 − η/4). (For this base −log p(x, z) = ½‖ε‖² + const: both forms agree.)"""
    eta, n = 0.1, 20_000
    cfg, state = _linear_state(eta=eta, steps=400, **{"method.energy_form": form})
    sigma2 = np.exp(2 * LOG_SIGMA)
    s = W @ W.T + np.diag(sigma2)
    inflate = 1.0 / (1.0 - eta / 4.0)
    for mean_out, mean, cov in (
        (False, B_DEC - s @ TILT, inflate * s),
        (True, B_DEC - W @ W.T @ TILT, inflate * W @ W.T),
    ):
        c = replace_fields(cfg, {"sample.decoder_mean": mean_out})
        draw = jax.jit(lambda k, c=c: vaebm.sample(state, n, config=c, key=k)[0])
        x = np.asarray(draw(jax.random.PRNGKey(7)), np.float64)
        se = np.sqrt(np.diag(cov) / n)
        np.testing.assert_array_less(np.abs(x.mean(0) - mean), 4.5 * se)
        np.testing.assert_allclose(np.cov(x.T), cov, atol=4.5 * np.sqrt(2.0 / n) * np.max(cov))


def test_zero_test_steps_is_the_base_with_the_same_draws():
    cfg, state = _linear_state(steps=0)
    key = jax.random.PRNGKey(3)
    x, stats = vaebm.sample(state, 16, config=cfg, key=key)
    k_eps, _ = jax.random.split(key)
    eps = vaebm.fresh_eps(k_eps, 16, vaebm.tilt_base(cfg, (D,)), cfg)
    np.testing.assert_allclose(x, eps["z"] @ W.T + B_DEC, rtol=1e-5, atol=1e-6)
    assert int(stats["nfe"][0]) == 0


def test_chain_energy_forms_differ_by_a_constant_on_a_gaussian_base():
    cfg, state = _linear_state()
    base = vaebm.tilt_base(cfg, (D,))
    eps = {k: jax.random.normal(jax.random.PRNGKey(i), (32, 2)) for i, k in enumerate("xz")}
    thesis = vaebm.chain_energy(state.energy.params, state.base, eps, config=cfg, base=base)
    joint_cfg = replace_fields(cfg, {"method.energy_form": "joint_logp"})
    joint = vaebm.chain_energy(state.energy.params, state.base, eps, config=joint_cfg, base=base)
    const = np.sum(LOG_SIGMA) + (D + LATENT) / 2 * np.log(2 * np.pi)  # Σ log σ_x + (D + d)/2 log 2π
    np.testing.assert_allclose(joint - thesis, np.full(32, const), rtol=1e-5)


# ---------------------------------------------------------------- the spectral regulariser


def _energy_params():
    net = TiltEnergy(nf=4, blocks=((1, True), (2, False)), data_init=True)
    x = jax.random.uniform(jax.random.PRNGKey(0), (8, 8, 8, 1))
    return net.init(jax.random.PRNGKey(1), x)["params"]


def test_spectral_regulariser_is_the_sum_of_largest_singular_values():
    params = _energy_params()
    kernels = wn_kernels(params)
    layers = {"conv_in", *(f"block_{i}/{c}" for i in (0, 1) for c in ("conv_0", "conv_1", "skip"))}
    assert set(kernels) == layers  # every conv and 1×1 skip; not the Dense head
    assert kernels["block_1/skip"].shape == (8, 4)  # [C_out, C_in·1·1]
    exact = sum(float(jnp.linalg.svd(w, compute_uv=False)[0]) for w in kernels.values())
    vectors = init_power_vectors(params, jax.random.PRNGKey(2), num_iters=40)
    sr, _ = spectral_regulariser(params, vectors, num_iters=4)
    np.testing.assert_allclose(float(sr), exact, rtol=1e-3)


def test_spectral_gradient_flows_through_sigma_only():
    """∂SR/∂θ with (u, v) held: the gradient of Σ uᵀ W̃(θ) v for the iterated (u, v)."""
    params = _energy_params()
    vectors = init_power_vectors(params, jax.random.PRNGKey(2), num_iters=3)
    grad = jax.jit(jax.grad(lambda p: spectral_regulariser(p, vectors, num_iters=2)[0]))(params)
    _, held = spectral_regulariser(params, vectors, num_iters=2)

    def fixed(p):
        return sum(held[k]["u"] @ w @ held[k]["v"] for k, w in wn_kernels(p).items())

    expect = jax.jit(jax.grad(fixed))(params)
    for a, b in zip(jax.tree.leaves(grad), jax.tree.leaves(expect), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7)


# ---------------------------------------------------------------- the second-moment clip


def test_moment_clip_matches_its_formula():
    """Update n clips g to ±(3√(ν/(1 − β₂ⁿ)) + 0.1) with ν Adam's moment after n updates (none at
    n = 0), then adds the coupled L2 term and takes Adam's step: computed here by hand."""
    lr, b1, b2, l2, eps = 0.01, 0.99, 0.999, 3e-5, 1e-8
    tx = make_optimizer("adam", lr, b1=b1, b2=b2, eps=eps, l2=l2, moment_clip=3.0)
    theta = np.array([1.0, -2.0, 0.5], np.float32)
    grads = [
        np.array(g, np.float32) for g in ([0.2, -0.1, 0.05], [5.0, -0.3, 0.0], [-4.0, 9.0, 0.1])
    ]
    p, state = jnp.asarray(theta), tx.init(jnp.asarray(theta))
    m = v = np.zeros(3)
    ref = theta.astype(np.float64)
    for n, g in enumerate(grads):
        updates, state = tx.update(jnp.asarray(g), state, p)
        p = optax.apply_updates(p, updates)
        gc = g.astype(np.float64)
        if n > 0:
            bound = 3 * np.sqrt(v / (1 - b2**n)) + 0.1
            gc = np.clip(gc, -bound, bound)
        gc = gc + l2 * ref
        m, v = b1 * m + (1 - b1) * gc, b2 * v + (1 - b2) * gc**2
        mh, vh = m / (1 - b1 ** (n + 1)), v / (1 - b2 ** (n + 1))
        ref = ref - lr * mh / (np.sqrt(vh) + eps)
        np.testing.assert_allclose(np.asarray(p), ref, rtol=1e-5)
    assert grads[1][0] > 3 * np.sqrt(0.001 * 0.2**2 / 0.001) + 0.1  # step 1 did clip


def test_moment_clip_keeps_the_optimizer_state_layout_and_needs_one_adam():
    plain = make_optimizer("adam", 1e-3, l2=1e-4)
    clipped = make_optimizer("adam", 1e-3, l2=1e-4, moment_clip=3.0)
    x = jnp.zeros(3)
    assert jax.tree.structure(plain.init(x)) == jax.tree.structure(clipped.init(x))
    with pytest.raises(ValueError, match="exactly one Adam moment state; found 0"):
        clip_by_second_moment(optax.sgd(0.1), b2=0.999).update(x, optax.sgd(0.1).init(x), x)
    with pytest.raises(ValueError, match="moment_clip=3.0: the second-moment clip wraps adam"):
        make_optimizer("lamb", 1e-3, moment_clip=3.0)


# ---------------------------------------------------------------- the replay buffer


def test_replay_probability_ramps_linearly_to_its_maximum():
    steps = jnp.array([0, 1000, 2500, 5000, 9000])
    p = replay_probability(steps, p_max=0.6, anneal_steps=5000)
    np.testing.assert_allclose(p, [0.0, 0.12, 0.3, 0.6, 0.6], rtol=1e-6)


def test_buffer_is_a_fifo_and_replays_distinct_filled_slots_uniformly():
    buf = buffer_init(10, (2,))
    rows = jnp.arange(24, dtype=jnp.float32).reshape(12, 2)
    buf = buffer_push(buf, rows[:6])
    assert int(buf["size"]) == 6 and int(buf["head"]) == 6
    buf = buffer_push(buf, rows[6:])  # 12 rows into 10 slots: 0..1 overwritten by 10..11
    assert int(buf["size"]) == 10 and int(buf["head"]) == 2
    np.testing.assert_array_equal(buf["rows"][:2], rows[10:])
    np.testing.assert_array_equal(buf["rows"][2:], rows[2:10])
    fresh, total = -jnp.ones((6, 2)), 4000

    def draw(i):
        want = jax.random.bernoulli(jax.random.PRNGKey(10_000 + i), 0.6, (6,))
        return buffer_draw(buf, jax.random.PRNGKey(i), fresh, want)

    outs, reps = (np.asarray(a) for a in jax.jit(jax.vmap(draw))(jnp.arange(total)))
    counts, replayed_total = np.zeros(12), int(reps.sum())
    for out, replayed in zip(outs, reps, strict=True):
        got = (out[replayed, 0] // 2).astype(int)
        assert len(set(got)) == len(got)  # distinct slots in one batch
        np.testing.assert_array_equal(out[~replayed], -1.0)
        counts[got] += 1
    frac = replayed_total / (6 * total)
    assert abs(frac - 0.6) < 4 * np.sqrt(0.24 / (6 * total))
    assert counts[:2].sum() == 0  # overwritten rows never come back
    expected = replayed_total / 10
    assert np.all(np.abs(counts[2:] - expected) < 5 * np.sqrt(expected))


def test_buffer_with_fewer_filled_slots_than_rows_starts_the_rest_fresh():
    buf = buffer_push(buffer_init(8, (1,)), jnp.ones((2, 1)))
    out, replayed = buffer_draw(buf, jax.random.PRNGKey(0), jnp.zeros((5, 1)), jnp.ones(5, bool))
    assert int(replayed.sum()) == 2 and float(out.sum()) == 2.0


# ---------------------------------------------------------------- bad input, one line each


def test_bad_settings_are_one_config_error():
    for field, value, match in (
        ("method.step_size", 0.0, "method.step_size"),
        ("method.langevin_steps", 0, "K must be >= 1"),
        ("sample.langevin_steps", -1, "K_test must be >= 0"),
        ("model.downs", (True,), "needs one entry per widths"),
    ):
        with pytest.raises(ConfigError, match=match):
            replace_fields(vaebm.Config(), {field: value})


def test_a_buffer_larger_than_memory_is_refused_before_allocating(monkeypatch):
    monkeypatch.setattr(vaebm, "available_host_memory", lambda: 2**30)
    cfg, _ = _linear_state()
    cfg = replace_fields(cfg, {"method.persistent": True, "method.buffer_size": 200_000_000})
    base = vae.init(
        vaebm.base_config(cfg), {"x": np.zeros((4, D), np.float32)}, key=jax.random.PRNGKey(0)
    )
    with pytest.raises(
        ValueError, match=r"buffer_size=200000000 .* needs 1.49 GiB; 1.00 GiB are free"
    ):
        vaebm.init(cfg, {"x": np.zeros((4, D), np.float32)}, key=jax.random.PRNGKey(0), base=base)
    # abstract init allocates nothing and checks nothing
    shapes = jax.eval_shape(
        lambda k: vaebm.init(cfg, {"x": np.zeros((4, D), np.float32)}, key=k, base=base),
        jax.random.PRNGKey(0),
    )
    assert shapes.buffer["rows"].shape == (200_000_000, LATENT)


def test_a_base_of_another_shape_or_architecture_is_named():
    cfg, _ = _linear_state()
    base = vae.init(
        vaebm.base_config(cfg), {"x": np.zeros((4, 3), np.float32)}, key=jax.random.PRNGKey(0)
    )
    with pytest.raises(
        ValueError, match=r"base VAE was trained on examples of shape \(3,\), this run's are \(2,\)"
    ):
        vaebm.init(cfg, {"x": np.zeros((4, D), np.float32)}, key=jax.random.PRNGKey(0), base=base)
    other = dataclasses.replace(vaebm.base_config(cfg), model=vae.Model(latent=5, hidden=()))
    reason = vaebm.CAPABILITIES.base_stage.check(cfg, other)
    assert reason == "the base VAE differs: model.base.latent=2 but the base's model.latent=5"
    with pytest.raises(ValueError, match="method.spectral regularises the resnet"):
        vaebm.init(
            replace_fields(cfg, {"method.spectral": 0.2}),
            {"x": np.zeros((4, D), np.float32)},
            key=jax.random.PRNGKey(0),
            base=base,
        )


GLF_BASE = {
    "model.base_recipe": "glf",
    "model.glf_base.latent": 4,
    "model.glf_base.ae_width": 4,
    "model.glf_base.flow_hidden": 8,
    "model.glf_base.flow_blocks": 2,
    "model.network": "resnet",
    "model.nf": 4,
    "model.widths": (1,),
    "model.downs": (True,),
    "method.langevin_steps": 2,
}


def test_a_glf_base_is_tilted_through_its_flow_and_decoder():
    """A GLF run as the base (the thesis's sharp base): ε = {"z": u}, x = G(f⁻¹(u)) with the
    running BatchNorm averages, so K_test = 0 is GLF's own sampler on the same noise; the chain
    moves it; what a GLF base lacks (log p(x, z), log p(x)) is one line each."""
    cfg = replace_fields(vaebm.Config(), {**GLF_BASE, "sample.langevin_steps": 0})
    x = np.asarray(jax.random.uniform(jax.random.PRNGKey(0), (8, 8, 8, 1), minval=-1, maxval=1))
    base = glf.init(vaebm.base_config(cfg), {"x": x}, key=jax.random.PRNGKey(0))
    state = vaebm.init(cfg, {"x": x}, key=jax.random.PRNGKey(1), base=base)
    key = jax.random.PRNGKey(3)
    k_eps, _ = jax.random.split(key)
    u = jax.random.normal(jax.random.fold_in(k_eps, 0), (8, 4))
    glf_cfg = vaebm.base_config(cfg)
    expected = jax.jit(lambda b, u: glf.decode_noise(b, u, config=glf_cfg))(base, u)
    draw = lambda c: jax.jit(lambda s, k: vaebm.sample(s, 8, config=c, key=k))(state, key)
    at_zero, _ = draw(cfg)
    np.testing.assert_allclose(at_zero, expected, atol=1e-6)
    moved, stats = draw(replace_fields(cfg, {"sample.langevin_steps": 2, "sample.step_size": 0.5}))
    # a fresh decoder's outputs are ~1e-5: the chain's move is measured against their scale
    moved_by = float(jnp.max(jnp.abs(moved - at_zero)) / jnp.max(jnp.abs(at_zero)))
    assert moved_by > 0.1 and int(stats["nfe"][0]) == 2
    _, metrics = jax.jit(lambda s, b: vaebm.train_step(s, b, config=cfg))(state, {"x": x})
    assert np.isfinite(float(metrics["loss"])) and float(metrics["f_pos"]) != 0.0
    with pytest.raises(ValueError, match="energy_form='joint_logp' needs the base's log p"):
        joint = replace_fields(cfg, {"method.energy_form": "joint_logp"})
        vaebm.init(joint, {"x": x}, key=jax.random.PRNGKey(1), base=base)
    with pytest.raises(ValueError, match="a 'glf' base has no log p"):
        vaebm.log_density(state, x, config=cfg, key=key)
    check = vaebm.CAPABILITIES.base_stage.check
    assert check(cfg, glf_cfg) is None
    wider = dataclasses.replace(glf_cfg, model=dataclasses.replace(glf_cfg.model, ae_width=8))
    assert check(cfg, wider) == (
        "the base GLF differs: model.glf_base.ae_width=4 but the base's model.ae_width=8"
    )
    vae_cfg = vaebm.base_config(replace_fields(cfg, {"model.base_recipe": "vae"}))
    assert check(cfg, vae_cfg) == "model.base_recipe='glf' but the base is a 'vae' run"


# ---------------------------------------------------------------- devices and resume


def _persistent_state(n: int = 64):
    cfg, state = _linear_state()
    cfg = replace_fields(
        cfg,
        {
            "model.hidden": (16,),
            "method.persistent": True,
            "method.buffer_size": 256,
            "method.replay_anneal": 0,
            "method.langevin_steps": 3,
        },
    )
    base = vae.init(
        vaebm.base_config(cfg), {"x": np.zeros((n, D), np.float32)}, key=jax.random.PRNGKey(0)
    )
    batch = {"x": np.asarray(jax.random.normal(jax.random.PRNGKey(5), (n, D)))}
    return cfg, vaebm.init(cfg, batch, key=jax.random.PRNGKey(1), base=base), batch


def test_sharded_steps_equal_one_device_with_the_buffer():
    """Three steps (the buffer filling, then replaying) on 8 devices and on 1 agree; the buffer
    and the frozen base stay replicated."""
    cfg, state, batch = _persistent_state()
    step = lambda s, b: vaebm.train_step(s, b, config=cfg)
    results = {}
    for n in (1, 8):
        mesh = make_mesh(n)
        shardings = state_shardings(jax.eval_shape(lambda: state), mesh, ())
        fn = make_sharded_step(step, mesh, state_sharding=shardings, donate=False)
        out = jax.device_put(state, shardings)
        for _ in range(3):
            out, metrics = fn(out, batch)
        results[n] = (jax.block_until_ready(out), metrics)
    (one, m1), (eight, m8) = results[1], results[8]
    assert int(eight.buffer["size"]) == 3 * 64 and float(m8["replayed"]) > 0.4  # p_max 0.6
    assert eight.buffer["rows"].sharding.is_fully_replicated
    for a, b in zip(jax.tree.leaves(one), jax.tree.leaves(eight), strict=True):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=2e-5, atol=1e-6)
    np.testing.assert_allclose(float(m1["replayed"]), float(m8["replayed"]))


def _config_file(recipe: str):
    """The ConfigDict of `experiments/configs/<recipe>/25gaussians.py`."""
    return importlib.import_module(f"experiments.configs.{recipe}.25gaussians").get_config()


def _run_config(base_wd, num_steps: int):
    c = _config_file("vaebm")
    c.data.batch_size = 32
    c.method.base_workdir = str(base_wd)
    c.train.update(dict(num_steps=num_steps, log_every=1, ckpt_every=3, sample_every=0))
    c.train.steps_per_call = 1
    c.model.update(dict(hidden=(16,)))
    c.model.base.update(dict(hidden=(16,)))
    c.method.update(dict(persistent=True, buffer_size=128, replay_anneal=2, langevin_steps=3))
    return c


@pytest.mark.slow
def test_resume_is_bit_identical_with_the_buffer(tmp_path):
    base = _config_file("vae")
    base.data.batch_size = 32
    base.model.hidden = (16,)
    base.train.update(dict(num_steps=2, ckpt_every=2, sample_every=0, steps_per_call=1))
    train(base, str(tmp_path / "base"), progress=False)
    full = train(_run_config(tmp_path / "base", 6), str(tmp_path / "full"), progress=False)
    train(_run_config(tmp_path / "base", 3), str(tmp_path / "split"), progress=False)
    resumed = train(_run_config(tmp_path / "base", 6), str(tmp_path / "split"), progress=False)
    assert int(full.step) == int(resumed.step) == 6 and int(full.buffer["size"]) == 128
    for a, b in zip(jax.tree.leaves(full), jax.tree.leaves(resumed), strict=True):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))

"""The DDGAN recipe (docs/methods/ddgan.md): lazy R1 on its interval only, the sampling chain's
NFE for every parameterisation, the 8-device step against the 1-device step, the guard naming
the network that went non-finite, and one-line errors for bad input. The schedule, posterior
and chain (jit = no-jit there) are tested in tests/test_diffusion.py, the losses in
tests/test_objectives_gan.py, the networks in tests/test_ddgan_networks.py."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxgen.data import sample_toy2d
from jaxgen.methods import ddgan
from jaxgen.methods.common import ConfigError, config_from_dict, replace_fields
from jaxgen.methods.ddgan_one_shot import augmentation_schedule
from jaxgen.parallel import make_mesh, state_shardings
from jaxgen.train.loop import NonFiniteError, TrainPlan, fit
from jaxgen.train.step import make_sharded_step

SMALL = {"model": {"network": "mlp", "hidden": [16, 16], "latent_dim": 2}}


def _config(**method):
    return config_from_dict(ddgan.Config, {**SMALL, "method": method})


def _points(n=64, seed=0):
    return {"x": np.asarray(sample_toy2d("25gaussians", n, jax.random.PRNGKey(seed)))}


@pytest.fixture(scope="module")
def mlp_state():
    c = _config(lazy_reg=2, r1_gamma=1.0)
    return c, ddgan.init(c, _points(), key=jax.random.PRNGKey(0))


def test_lazy_r1_is_added_on_its_interval_only(mlp_state):
    """γ/2·R1 enters D's loss at steps 0, 2, 4 (lazy_reg = 2) and is exactly 0 at 1, 3; both
    networks move every step."""
    c, state = mlp_state
    step = jax.jit(lambda s, b: ddgan.train_step(s, b, config=c))
    added = []
    for i in range(5):
        new, metrics = step(state, _points(seed=i))
        assert all(np.isfinite(float(v)) for v in metrics.values())
        for net in ("gen", "disc"):
            moved = jax.tree.map(
                lambda a, b: bool(jnp.any(a != b)),
                getattr(state, net).params,
                getattr(new, net).params,
            )
            assert any(jax.tree.leaves(moved)), net
        added.append(float(metrics["loss_r1"]))
        state = new
    assert all(added[i] > 0 for i in (0, 2, 4)) and added[1] == added[3] == 0.0


@pytest.mark.parametrize("parameterisation", ["x0", "eps", "direct"])
def test_sampling_takes_t_generator_passes(mlp_state, parameterisation):
    c, state = mlp_state
    for t in (1, 3):
        cfg = replace_fields(
            c, {"method.diffusion_steps": t, "method.parameterisation": parameterisation}
        )
        x, stats = jax.jit(lambda s, k, cfg=cfg: ddgan.sample(s, 6, config=cfg, key=k))(
            state, jax.random.PRNGKey(1)
        )
        assert x.shape == (6, 2) and bool(jnp.all(jnp.isfinite(x)))
        assert stats["nfe"].tolist() == [t] * 6


def test_sharded_step_equals_single_device(mlp_state):
    """Steps, pairs, latents and posterior noise drawn for the global batch: 8 devices = 1
    (R1 at every step, so one program holds both the penalty and the losses)."""
    _, state = mlp_state
    c = _config(lazy_reg=1, r1_gamma=1.0)
    batch = _points(seed=4)
    step = lambda s, b: ddgan.train_step(s, b, config=c)
    results = {}
    for n in (1, 8):
        mesh = make_mesh(n)
        shardings = state_shardings(jax.eval_shape(lambda: state), mesh, ())
        fn = make_sharded_step(step, mesh, state_sharding=shardings, donate=False)
        out, _ = fn(jax.device_put(state, shardings), batch)
        results[n] = jax.block_until_ready(out)
    for a, b in zip(jax.tree.leaves(results[1]), jax.tree.leaves(results[8]), strict=True):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=2e-5, atol=1e-6)


class _Points:
    def batch(self, i):
        return _points(seed=i)


def test_a_nan_discriminator_stops_the_run_and_names_it(mlp_state):
    c, state = mlp_state
    leaves, treedef = jax.tree.flatten(state.disc.params)
    poisoned = jax.tree.unflatten(treedef, [leaves[0] * jnp.nan, *leaves[1:]])
    state = state.replace(disc=state.disc.replace(params=poisoned))
    step = lambda s, b: ddgan.train_step(s, b, config=c)
    with pytest.raises(NonFiniteError, match="at step 0") as err:
        fit(step, state, _Points(), make_mesh(1), TrainPlan(2, ckpt_every=0), progress=False)
    named = str(err.value).split("(non-finite: ")[1].split(")")[0].split(", ")
    assert {"grad_norm_disc", "loss_d"} <= set(named)


def test_bad_input_is_one_clear_error():
    with pytest.raises(ConfigError, match="config.method.diffusion_steps=0: must be >= 1"):
        config_from_dict(ddgan.Config, {"method": {"diffusion_steps": 0}})
    with pytest.raises(ConfigError, match="config.method.lazy_reg=0: must be >= 1"):
        config_from_dict(ddgan.Config, {"method": {"lazy_reg": 0}})
    with pytest.raises(ConfigError, match=r"parameterisation='v'.*\['x0', 'eps', 'direct'\]"):
        config_from_dict(ddgan.Config, {"method": {"parameterisation": "v"}})
    unet = config_from_dict(
        ddgan.Config,
        {"model": {"nf": 4, "ch_mult": [1, 2], "attn_resolutions": [4], "latent_dim": 2}},
    )
    images = np.zeros((2, 12, 12, 1), np.float32)  # 12 → 6: never reaches the 4² attention
    with pytest.raises(ValueError, match=r"^ddgan.init: .*attention resolution \(4,\).*12, 12"):
        ddgan.init(unet, {"x": images}, key=jax.random.PRNGKey(0))
    with pytest.raises(ValueError, match="takes flat data"):
        ddgan.init(config_from_dict(ddgan.Config, SMALL), {"x": images}, key=jax.random.PRNGKey(0))


def test_one_shot_discriminator_sees_only_perturbed_images():
    """The one-shot GAN's D step (docs/methods/ddgan.md §7): G's input is x_1 ~ N(0, I) at
    t = 1, D's conditioning is 0, and the real input is q(x_s | x₀) for s ∈ 1..A−1 of the
    A-step process: standardised by √ᾱ_s and √(1 − ᾱ_s) it is N(0, I) at every s."""
    a = 4
    c = _config(diffusion_steps=1, one_shot_aug_steps=a)
    x0 = jnp.full((8192, 2), 0.7)
    draw = ddgan._draw(jax.random.PRNGKey(0), x0, c, ddgan.schedule(c))
    s = np.asarray(draw["d_step"])
    assert set(np.unique(s)) == set(range(1, a))
    assert np.all(np.asarray(draw["t"]) == 1) and not np.any(np.asarray(draw["cond"]))
    ab = np.asarray(augmentation_schedule(c.method).alphas_bar)
    for level in range(1, a):
        rows = np.asarray(draw["real"])[s == level]
        std = (rows - np.sqrt(ab[level]) * 0.7) / np.sqrt(1 - ab[level])
        se = 1 / np.sqrt(rows.size)
        assert abs(std.mean()) < 4 * se and abs(std.var() - 1) < 4 * np.sqrt(2) * se
    assert float(jnp.std(draw["x_t"])) == pytest.approx(1.0, abs=0.03)


def test_one_shot_generator_loss_differentiates_through_the_perturbation():
    """G's loss is softplus(−D(√ᾱ_s G(x_1, z) + √(1 − ᾱ_s) ε, 0, s)): the recipe's gradient
    equals that composition's, written out here, and it is not zero."""
    c = _config(diffusion_steps=1, one_shot_aug_steps=3)
    state = ddgan.init(c, _points(), key=jax.random.PRNGKey(1))
    draw = ddgan._draw(jax.random.PRNGKey(2), jnp.asarray(_points()["x"]), c, ddgan.schedule(c))
    gen, disc = ddgan.networks(c, (2,))
    ab = augmentation_schedule(c.method).alphas_bar[draw["d_step"]][:, None]

    def by_hand(g_params):
        x_hat = gen.apply({"params": g_params}, draw["x_t"], draw["t"] - 1, draw["z"])
        x_s = jnp.sqrt(ab) * x_hat + jnp.sqrt(1 - ab) * draw["noise"]
        logits = disc.apply({"params": state.disc.params}, x_s, 0 * x_s, draw["d_step"])
        return jnp.mean(jax.nn.softplus(-logits))

    ours = jax.grad(ddgan._gen_loss)(
        state.gen.params, state.disc.params, draw, config=c, sched=ddgan.schedule(c)
    )
    expected = jax.grad(by_hand)(state.gen.params)
    for got, want in zip(jax.tree.leaves(ours), jax.tree.leaves(expected), strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-7)
    assert sum(float(jnp.abs(g).sum()) for g in jax.tree.leaves(ours)) > 0
    new, metrics = jax.jit(lambda s, b: ddgan.train_step(s, b, config=c))(state, _points())
    assert all(np.isfinite(float(v)) for v in metrics.values())
    x, stats = ddgan.sample(new, 16, config=c, key=jax.random.PRNGKey(3))
    assert x.shape == (16, 2) and np.all(np.asarray(stats["nfe"]) == 1)


def test_one_shot_bad_settings_are_one_clear_error():
    with pytest.raises(ConfigError, match="one_shot_aug_steps=4: must be 0 .* diffusion_steps=1"):
        config_from_dict(ddgan.Config, {"method": {"one_shot_aug_steps": 4}})
    with pytest.raises(ConfigError, match="one_shot_aug_steps=1: must be 0"):
        config_from_dict(ddgan.Config, {"method": {"diffusion_steps": 1, "one_shot_aug_steps": 1}})
    with pytest.raises(ConfigError, match="parameterisation='eps': .*needs parameterisation='x0'"):
        method = {"diffusion_steps": 1, "one_shot_aug_steps": 4, "parameterisation": "eps"}
        config_from_dict(ddgan.Config, {"method": method})


def test_data_scale_runs_the_diffusion_on_scaled_data():
    """`method.data_scale=s` (docs/methods/ddgan.md §6): a step on x is the unscaled recipe's
    step on x / s, and the samples are the unscaled chain's times s."""
    plain, scaled = _config(), _config(data_scale=4.0)
    x = _points()["x"]
    state = ddgan.init(plain, {"x": x}, key=jax.random.PRNGKey(0))
    a, _ = ddgan.train_step(state, {"x": x}, config=scaled)
    b, _ = ddgan.train_step(state, {"x": x / 4.0}, config=plain)
    for u, v in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
        np.testing.assert_allclose(np.asarray(u), np.asarray(v), rtol=1e-6, atol=1e-7)
    key = jax.random.PRNGKey(3)
    xs, _ = ddgan.sample(a, 16, config=scaled, key=key)
    xp, _ = ddgan.sample(a, 16, config=plain, key=key)
    np.testing.assert_allclose(np.asarray(xs), 4.0 * np.asarray(xp), rtol=1e-6)
    with pytest.raises(ConfigError, match="data_scale"):
        config_from_dict(ddgan.Config, {"method": {"data_scale": 0.0}})

"""The short-run EBM recipe (`jaxgen.methods.shortrun_ebm`, docs/methods/shortrun_ebm.md):

- config refusals (K < 1, step <= 0, noise_std < 0, probe count < 1, the generator loss with the
  ODE sampler, persistent chains for maximum likelihood) name the field;
- the generator loss changes the energy's gradient and nothing else (same negatives, same
  contrastive value), and `jax.checkpoint` leaves it unchanged;
- persistent chains are carried, restarted with probability `reset_prob`;
- `log_density` is the flow's normalised density: it integrates to one on a grid, and equals
  a direct solve of eq. (1.7); maximum-likelihood training lowers the NLL;
- sampling runs the training dynamics (NFE K), ρ-interpolation ends at the two noise draws'
  images, reconstruction by optimisation of x₀ beats x₀ = 0;
- conv energies refuse images that do not halve cleanly, the exact trace refuses a Jacobian
  that does not fit and names the estimator.
"""

import dataclasses
import re
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxgen.data import sample_toy2d
from jaxgen.methods import shortrun_ebm as srl
from jaxgen.methods.common import ConfigError, config_from_dict, replace_fields

SMALL = {"model": {"hidden": (16, 16)}, "method": {"langevin_steps": 3}}


def _config(**method):
    return config_from_dict(srl.Config, {**SMALL, "method": {**SMALL["method"], **method}})


def _batch(n=64, seed=0):
    return {"x": np.asarray(sample_toy2d("9gaussians", n, jax.random.PRNGKey(seed)))}


@pytest.mark.parametrize(
    "field,value,match",
    [
        ("langevin_steps", 0, "K must be >= 1"),
        ("step", 0.0, "must be > 0"),
        ("noise_std", -0.1, "must be >= 0"),
        ("num_probes", 0, "probe count must be >= 1"),
    ],
)
def test_bad_method_fields_name_the_field(field, value, match):
    with pytest.raises(ConfigError, match=f"^config.method.{field}=.*{match}"):
        _config(**{field: value})


def test_incompatible_settings_are_refused():
    with pytest.raises(ConfigError, match="generator_loss=True: the generator loss unrolls"):
        _config(generator_loss=True, sampler="ode")
    with pytest.raises(ConfigError, match="clip_chains=True: clipping applies to the euler"):
        _config(clip_chains=True, sampler="ode")
    with pytest.raises(ConfigError, match="persistent=True: persistent chains are negatives"):
        _config(persistent=True, objective="max_likelihood")
    with pytest.raises(ConfigError, match="^config.sample.num_probes=0"):
        config_from_dict(srl.Config, {"sample": {"num_probes": 0}})
    with pytest.raises(ConfigError, match="noise_std=0.1: sampler='ode' is noise-free"):
        _config(sampler="ode", noise_std=0.1)
    with pytest.raises(ConfigError, match="objective='max_likelihood': max_likelihood trains"):
        _config(objective="max_likelihood")  # with the euler sampler
    with pytest.raises(ConfigError, match="^config.model.widths=\\(\\): need >= 1 each"):
        config_from_dict(srl.Config, {"model": {"widths": ()}})


@partial(jax.jit, static_argnames="config")
def _grads(config, state, x):
    key = jax.random.PRNGKey(3)
    return jax.grad(srl.loss_fn, has_aux=True)(state.energy.params, state, x, key, config=config)


def test_generator_loss_adds_a_gradient_on_the_same_negatives():
    plain, gen = _config(), _config(generator_loss=True)
    x = jnp.asarray(_batch()["x"])
    state = srl.init(plain, {"x": x}, key=jax.random.PRNGKey(0))
    g_plain, (_, m_plain) = _grads(plain, state, x)
    g_gen, (_, m_gen) = _grads(gen, state, x)
    assert float(m_gen["contrastive"]) == pytest.approx(float(m_plain["contrastive"]), rel=1e-6)
    assert float(m_gen["generator"]) == pytest.approx(float(m_plain["e_neg"]), rel=1e-6)
    diff = jax.tree.map(lambda a, b: float(jnp.max(jnp.abs(a - b))), g_plain, g_gen)
    assert max(jax.tree.leaves(diff)) > 1e-3  # the sampling path's gradient is there
    ckpt = _config(generator_loss=True, checkpoint=True)
    g_ckpt, _ = _grads(ckpt, state, x)
    for a, b in zip(jax.tree.leaves(g_gen), jax.tree.leaves(g_ckpt), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7)


def test_clip_chains_keeps_the_negatives_in_the_data_box():
    """`method.clip_chains` passes bounds (-1, 1) to the sampler: the chains from 3·N(0, I) end
    inside the box, where the free chains do not."""
    state = srl.init(_config(), _batch(), key=jax.random.PRNGKey(0))
    x0 = 3 * jax.random.normal(jax.random.PRNGKey(1), (64, 2))
    args = (state.energy.params, x0, jax.random.PRNGKey(2))
    clipped, _, _ = srl.dynamics(*args, config=_config(clip_chains=True))
    free, _, _ = srl.dynamics(*args, config=_config())
    assert float(jnp.max(jnp.abs(clipped))) <= 1 < float(jnp.max(jnp.abs(free)))


def test_persistent_chains_are_carried_and_restarted():
    cfg = _config(persistent=True, reset_prob=0.0, noise_std=0.0)
    batch = _batch()
    state = srl.init(cfg, batch, key=jax.random.PRNGKey(0))
    new, _ = jax.jit(srl.train_step, static_argnames="config")(state, batch, config=cfg)
    x0 = state.chains["x"]
    want, _, _ = srl.dynamics(state.energy.params, x0, jax.random.PRNGKey(0), config=cfg)
    np.testing.assert_allclose(new.chains["x"], want, rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="has 32 examples .* initialised for batches of 64"):
        srl.train_step(state, _batch(32), config=cfg)
    restart = _config(persistent=True, reset_prob=1.0)
    new, _ = srl.train_step(state, batch, config=restart)
    kept = jnp.all(jnp.isclose(new.chains["x"], want), axis=1)
    assert not bool(jnp.any(kept))  # every chain restarted from fresh noise


def test_log_density_integrates_to_one_and_is_eq_1_7():
    cfg = _config(rtol=1e-4, atol=1e-4)
    state = srl.init(cfg, _batch(), key=jax.random.PRNGKey(0))
    for _ in range(30):  # away from the initial, nearly flat energy
        state, _ = jax.jit(srl.train_step, static_argnames="config")(state, _batch(), config=cfg)
    n, lim = 60, 6.0
    g = np.linspace(-lim, lim, n, endpoint=False) + lim / n
    grid = np.stack(np.meshgrid(g, g, indexing="ij"), -1).reshape(-1, 2).astype(np.float32)
    lp = jax.jit(srl.log_density, static_argnames="config")(state, grid, config=cfg)
    mass = float(jnp.sum(jnp.exp(lp)) * (2 * lim / n) ** 2)
    assert mass == pytest.approx(1.0, abs=0.02)  # midpoint rule on a 0.2-wide grid
    # eq. (1.7) by hand: x0 from the backward solve, then log p0(x0) + ∫ tr ∇²E dt
    x = jnp.asarray(_batch(8, seed=5)["x"])
    lp_x = srl.log_density(state, x, config=cfg)
    _, stats = srl.log_likelihood(state.energy.params, x, None, config=cfg, trace="exact")
    np.testing.assert_allclose(lp_x, stats["log_p0"] - stats["trace_integral"], rtol=1e-6)
    # the trace term's sign and value: one Euler step of the backward solve evaluates the
    # integrand once, at x: −∫ tr ∂v/∂x dt = +T·tr ∇²E(x) for v = −∇E
    _, one = srl.log_likelihood(
        state.energy.params, x, None, config=cfg, trace="exact", solver="euler", num_steps=1
    )
    e_one = lambda z: srl.energy_fn(state.energy.params, z[None], config=cfg)[0]
    hess_tr = jax.vmap(lambda xi: jnp.trace(jax.hessian(e_one)(xi)))(x)
    np.testing.assert_allclose(-one["trace_integral"], srl.flow_time(cfg) * hess_tr, rtol=1e-4)


def test_noisy_dynamics_score_by_the_unnormalised_energy():
    cfg = _config(noise_std=0.1)
    state = srl.init(cfg, _batch(), key=jax.random.PRNGKey(0))
    x = jnp.asarray(_batch(8)["x"])
    assert not srl.CAPABILITIES.log_density_normalised(cfg)
    assert srl.CAPABILITIES.log_density_normalised(_config())
    np.testing.assert_array_equal(
        srl.log_density(state, x, config=cfg), srl.energy(state, x, config=cfg)
    )


def test_maximum_likelihood_training_lowers_the_nll():
    cfg = _config(objective="max_likelihood", sampler="ode", rtol=1e-3, atol=1e-3)
    cfg = replace_fields(cfg, {"optim.energy.lr": 3e-3})
    batch = _batch(32)
    state = srl.init(cfg, batch, key=jax.random.PRNGKey(0))
    step = jax.jit(srl.train_step, static_argnames="config")
    state, first = step(state, batch, config=cfg)
    for _ in range(40):
        state, m = step(state, batch, config=cfg)
    assert float(m["nll"]) < float(first["nll"]) - 0.3 and float(m["solver_ok"]) == 1.0


def test_sample_interpolate_and_reconstruct():
    cfg = _config()
    state = srl.init(cfg, _batch(), key=jax.random.PRNGKey(0))
    key = jax.random.PRNGKey(4)
    x, stats = srl.sample(state, 5, config=cfg, key=key)
    assert x.shape == (5, 2) and bool(jnp.all(stats["nfe"] == 3))
    path, _ = srl.interpolate(state, 4, config=cfg, key=key, shape=(2,))
    k1, k2, k_dyn = jax.random.split(key, 3)
    z1, z2 = (jax.random.normal(k, (2,)) for k in (k1, k2))
    ends, _, _ = srl.dynamics(state.energy.params, jnp.stack([z2, z1]), k_dyn, config=cfg)
    np.testing.assert_allclose(path[jnp.array([0, -1])], ends, rtol=1e-5, atol=1e-6)
    target, _ = srl.sample(state, 8, config=cfg, key=jax.random.PRNGKey(7))
    x_hat = srl.reconstruct(state, target, config=cfg)
    from_zero, _, _ = srl.dynamics(state.energy.params, jnp.zeros_like(target), key, config=cfg)
    err = float(jnp.mean((x_hat - target) ** 2))
    assert err < 0.01 * float(jnp.mean((from_zero - target) ** 2))


def test_conv_energy_refuses_images_that_do_not_halve():
    cfg = config_from_dict(srl.Config, {"model": {"network": "conv", "nf": 4}})
    with pytest.raises(ValueError, match="H and W divisible by 8; got an example of shape"):
        srl.init(cfg, {"x": np.zeros((2, 28, 28, 1), np.float32)}, key=jax.random.PRNGKey(0))
    state = srl.init(cfg, {"x": np.zeros((2, 32, 32, 1), np.float32)}, key=jax.random.PRNGKey(0))
    e = srl.energy(state, jnp.zeros((3, 32, 32, 1)), config=cfg)
    assert e.shape == (3,)
    with pytest.raises(
        ValueError, match=re.escape("initialised for examples of shape (32, 32, 1)")
    ):
        srl.sample(state, 2, config=cfg, key=jax.random.PRNGKey(0), shape=(64, 64, 1))
    x = jnp.zeros((600, 32, 32, 1))  # a [600, 1024, 1024] Jacobian: 2.3 GiB
    with pytest.raises(ValueError, match="exact trace at D=1024 .* use trace='hutchinson'"):
        srl.log_density(state, x, config=cfg)


def test_a_stochastic_trace_needs_a_key():
    """Hutchinson's probes are random: `log_density` without a key is one clear error, not a
    silent PRNGKey(0); the exact trace needs none."""
    cfg = _config()
    cfg = dataclasses.replace(cfg, sample=dataclasses.replace(cfg.sample, trace="hutchinson"))
    state = srl.init(cfg, _batch(), key=jax.random.PRNGKey(0))
    x = jnp.asarray(_batch(4)["x"])
    with pytest.raises(ValueError, match="pass key="):
        srl.log_density(state, x, config=cfg)
    assert srl.log_density(state, x, config=cfg, key=jax.random.PRNGKey(1)).shape == (4,)

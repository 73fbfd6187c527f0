"""The tilt-base interface (jaxgen.methods.tilt_base; docs/methods/vae.md §3) on the `vae`
recipe: its `generate` is the recipe's sampler given the same noise, its joint and bound are the
recipe's, and its noise has the shapes it declares."""

import jax
import jax.numpy as jnp
import numpy as np

from jaxgen.methods import vae
from jaxgen.methods.common import replace_fields
from jaxgen.methods.tilt_base import draw_eps, vae_base


def _state():
    cfg = replace_fields(vae.Config(), {"model.hidden": (16,), "model.latent": 3})
    x = jax.random.normal(jax.random.PRNGKey(0), (8, 2))
    return cfg, vae.init(cfg, {"x": x}, key=jax.random.PRNGKey(1))


def test_generate_is_the_recipe_sampler_given_the_same_noise():
    cfg, state = _state()
    base = vae_base(cfg, state.example_shape)
    frozen = base.frozen_from(state)
    key = jax.random.PRNGKey(4)
    x_sample, _ = vae.sample(state, 5, config=cfg, key=key)
    k_z, k_x = jax.random.split(key)
    eps = {"z": jax.random.normal(k_z, (5, 3)), "x": jax.random.normal(k_x, (5, 2))}
    x, z = base.generate(frozen, eps)
    np.testing.assert_allclose(np.asarray(x), np.asarray(x_sample), rtol=1e-6, atol=1e-6)
    np.testing.assert_array_equal(np.asarray(z), np.asarray(eps["z"]))
    x_mean, _ = base.generate(frozen, eps, mean=True)
    want, _ = vae.decode(frozen, eps["z"], config=cfg)
    np.testing.assert_allclose(np.asarray(x_mean), np.asarray(want), rtol=1e-6)
    # without ε_x the decoder mean is the draw
    x_no_eps, _ = base.generate(frozen, {"z": eps["z"]})
    np.testing.assert_allclose(np.asarray(x_no_eps), np.asarray(want), rtol=1e-6)


def test_noise_shapes_joint_and_bound_are_the_recipes():
    cfg, state = _state()
    base = vae_base(cfg, state.example_shape)
    frozen = base.frozen_from(state)
    eps = draw_eps(base, jax.random.PRNGKey(0), 7)
    assert {k: v.shape for k, v in eps.items()} == {"z": (7, 3), "x": (7, 2)}
    x, z = base.generate(frozen, eps)
    want = vae.log_joint(frozen, x, z, config=cfg)
    np.testing.assert_allclose(np.asarray(base.log_joint(frozen, x, z)), np.asarray(want))
    key = jax.random.PRNGKey(2)
    bound = base.log_prob(frozen, x, key, 40)
    direct = vae.iwae_log_prob(frozen, x, key, config=cfg, num_samples=40, chunk=40)
    np.testing.assert_allclose(np.asarray(bound), np.asarray(direct), rtol=1e-5)
    assert bool(jnp.all(jnp.isfinite(bound)))

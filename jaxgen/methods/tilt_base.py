"""The base-model interface of exponential tilting (VAEBM, thesis ch. 4): what the tilted model
needs from a frozen, trained base, whatever the base is (this package's `vae`, GLF's VAE with a
flow prior, later a hierarchical VAE or a flow). docs/methods/vae.md §3.

A base is reparameterised by standard normal noise ε (thesis eq. 4.18): ε = {"z": ε_z} or
{"z": ε_z, "x": ε_x}, and x = T^x(T^z(ε_z), ε_x). VAEBM's Langevin chain moves ε, so the base
must give the map ε → (x, z), and for the public code's form of the energy the joint log p(x, z).
"""

from collections.abc import Callable
from typing import Any, NamedTuple

import jax

from jaxgen.methods import vae
from jaxgen.methods.common import batch_normal


class TiltBase(NamedTuple):
    """A frozen base, as functions of its frozen parameters `frozen` (a pytree):

    - `eps_shapes(num)`: `{"z": shape, ["x": shape]}` of the noise of `num` draws (no "x" when
      the decoder has no noise of its own, e.g. a Bernoulli or deterministic decoder);
    - `generate(frozen, eps, *, mean)`: `(x [num, ...], z [num, ...])`, x a decoder draw, or the
      decoder mean with `mean=True` (then ε_x is ignored);
    - `log_joint(frozen, x, z)`: log p(x, z) `[num]`, or None where the base has no tractable joint;
    - `log_prob(frozen, x, key, num_samples)`: a bound on or the value of log p(x) `[num]`, or None;
    - `frozen_from(state)`: the parameters to freeze, from the base recipe's trained `State`.
    """

    eps_shapes: Callable[[int], dict]
    generate: Callable[..., tuple[jax.Array, jax.Array]]
    log_joint: Callable[..., jax.Array] | None
    log_prob: Callable[..., jax.Array] | None
    frozen_from: Callable[[Any], Any]


def draw_eps(base: TiltBase, key, num: int, *, skip: tuple[str, ...] = ()) -> dict:
    """Fresh ε ~ N(0, I) of every part the base has (`{"z": ..., ["x": ...]}`) but those in
    `skip`, part i (in sorted order) from `fold_in(key, i)`, split over the batch devices under a
    data mesh (`batch_normal`)."""
    shapes = base.eps_shapes(num)
    names = [k for k in sorted(shapes) if k not in skip]
    return {k: batch_normal(jax.random.fold_in(key, i), shapes[k]) for i, k in enumerate(names)}


def vae_base(config: vae.Config, example_shape: tuple) -> TiltBase:
    """The `vae` recipe as a tilt base: z = ε_z (unit Gaussian prior), x = μ_x(z) + σ_x ⊙ ε_x,
    log p(x, z) in closed form, log p(x) by the IWAE bound (docs/methods/vae.md eqs. 1, 3, 4)."""

    def generate(frozen, eps, *, mean: bool = False):
        eps_x = eps.get("x")
        x = vae.generate(frozen, eps["z"], eps_x, config=config, mean=mean or eps_x is None)
        return x, eps["z"]

    def log_prob(frozen, x, key, num_samples: int):
        chunk = min(int(num_samples), config.sample.iwae_chunk)
        return vae.iwae_log_prob(
            frozen, x, key, config=config, num_samples=num_samples, chunk=chunk
        )

    return TiltBase(
        eps_shapes=lambda num: {"z": (num, config.model.latent), "x": (num, *example_shape)},
        generate=generate,
        log_joint=lambda frozen, x, z: vae.log_joint(frozen, x, z, config=config),
        log_prob=log_prob,
        frozen_from=lambda state: state.vae.eval_params(True),
    )

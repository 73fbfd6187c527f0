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

from jaxgen.methods import glf, vae
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
    log p(x, z) in closed form, log p(x) by the IWAE bound (docs/methods/vae.md eqs. 1, 3, 4); the
    conv networks' BatchNorm on its running averages (frozen with the parameters). A Bernoulli
    decoder has no ε_x (x = its mean 2σ(ℓ) − 1) and, on continuous pixels, no density: no "x"
    noise, no `log_joint`, no `log_prob`."""
    shape = tuple(example_shape)
    gaussian = config.model.decoder == "gaussian"

    def eps_shapes(num: int) -> dict:
        z = {"z": (num, config.model.latent)}
        return {**z, "x": (num, *shape)} if gaussian else z

    def generate(frozen, eps, *, mean: bool = False):
        eps_x = eps.get("x")
        mean = mean or eps_x is None
        x = vae.generate(frozen, eps["z"], eps_x, config=config, mean=mean, shape=shape)
        return x, eps["z"]

    def log_joint(frozen, x, z):
        return vae.log_joint(frozen, x, z, config=config)

    def log_prob(frozen, x, key, num_samples: int):
        chunk = min(int(num_samples), config.sample.iwae_chunk)
        return vae.iwae_log_prob(
            frozen, x, key, config=config, num_samples=num_samples, chunk=chunk
        )

    return TiltBase(
        eps_shapes=eps_shapes,
        generate=generate,
        log_joint=log_joint if gaussian else None,
        log_prob=log_prob if gaussian else None,
        frozen_from=lambda state: vae.frozen_params(state, True),
    )


def glf_base(config: glf.Config, example_shape: tuple) -> TiltBase:
    """A GLF run (any variant; the thesis's sharp VAEBM base is `vae_flow_prior` at β = 400) as
    a tilt base: ε_z is the flow's noise u, z = f⁻¹(u), x = G(z) with BatchNorm on its running
    averages (batch statistics would couple the chains). The decoder is deterministic (no ε_x)
    and there is no tractable log p(x, z) or log p(x): only the thesis's energy form (eq. 5)
    applies. docs/methods/vae.md §3."""

    def generate(frozen, eps, *, mean: bool = True):
        del mean  # deterministic decoder: the draw is the mean
        return glf.decode_frozen(frozen, eps["z"], config=config, shape=example_shape)

    return TiltBase(
        eps_shapes=lambda num: {"z": (num, config.model.latent)},
        generate=generate,
        log_joint=None,
        log_prob=None,
        frozen_from=lambda state: glf.frozen_decoder(state, use_ema=True),
    )

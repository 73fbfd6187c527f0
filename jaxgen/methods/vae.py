"""A Gaussian VAE with a learned decoder σ_x (docs/methods/vae.md): the base that VAEBM tilts
(thesis ch. 4, stage one). Flat data `[B, D]` (2-D toy sets) or images `[B, H, W, C]` in
[-1, 1], which the MLPs see flattened (a blurry base; a conv encoder and decoder are not here
yet).

    p(z) = N(0, I),  p(x | z) = N(μ_x(z), diag σ_x²),  q(z | x) = N(μ(x), diag σ(x)²)   (eq. 1)
    ELBO = E_q log p(x | z) − β KL(q(z | x) ‖ p(z))                                   (eq. 2)
    log p(x) ≥ log (1/K) Σ_k p(x, z_k) / q(z_k | x),  z_k ~ q(z | x)   (IWAE, eq. 3)

σ_x is one learned value per data dimension (per pixel; not a function of z), so a draw is
x = μ_x(ε_z) + σ_x ⊙ ε_x with (ε_z, ε_x) ~ N(0, I): the reparameterisation VAEBM's ε-space
Langevin chain moves (docs/methods/vae.md §3). Sampling: NFE = 1 decoder pass. Extras:
`log_density` (the IWAE bound with `sample.iwae_samples` samples, streamed in chunks) and
`reconstruct` (the decoder mean at the posterior mean).
"""

import dataclasses
import math
from functools import partial

import jax
import jax.numpy as jnp
from flax import struct

from jaxgen.methods.common import (
    Capabilities,
    Optim,
    Section,
    at_least,
    batch_normal,
    check_batch,
    check_count,
    check_inputs,
    check_state_batch,
    each_at_least,
    example_shape_field,
    init_params,
    model_state,
    one_of,
    positive,
    sample_shape,
)
from jaxgen.nn.mlp import ACTIVATIONS, MLP
from jaxgen.optim import ModelState

LOG_2PI = math.log(2.0 * math.pi)  # a Python float: no array (and no backend) at import


@dataclasses.dataclass(frozen=True)
class Model(Section):
    """Encoder and decoder MLPs of the same hidden widths."""

    network: str = one_of(("mlp",), "mlp")
    latent: int = at_least(1, 2)  # d
    hidden: tuple[int, ...] = each_at_least(1, (256, 256), empty=True)  # (): linear
    act: str = one_of(tuple(ACTIVATIONS), "silu")
    init_log_sigma_x: float = -1.0  # log σ_x at the start (learned from there)
    min_log_sigma_x: float = -7.0  # floor of log σ_x (a point mass would make the ELBO unbounded)


@dataclasses.dataclass(frozen=True)
class Method(Section):
    beta: float = positive(1.0)  # weight on the KL term (1: the ELBO)


@dataclasses.dataclass(frozen=True)
class Sample(Section):
    """Draws and the IWAE bound."""

    decoder_mean: bool = False  # True: return μ_x(z) instead of a draw x = μ_x + σ_x ε_x
    iwae_samples: int = at_least(1, 1000)  # K of `log_density`
    iwae_chunk: int = at_least(1, 100)  # importance samples per streamed chunk


@dataclasses.dataclass(frozen=True)
class Optims:
    vae: Optim = Optim(lr=1e-3, ema_rate=0.0)


@dataclasses.dataclass(frozen=True)
class Config:
    model: Model = Model()
    method: Method = Method()
    optim: Optims = Optims()
    sample: Sample = Sample()


CAPABILITIES = Capabilities(
    networks=("vae",),
    headline=("loss", "rec", "kl"),
    sampler_stats=("nfe",),
    nfe="decoder passes",
    extras=("log_density", "reconstruct"),
    log_density_normalised=lambda config: True,  # a lower bound, tight as K grows
)


@struct.dataclass
class State:
    step: jax.Array
    key: jax.Array
    vae: ModelState  # params: {"encoder", "decoder", "log_sigma_x" [D]}
    example_shape: tuple = example_shape_field()


def _encoder(config: Config) -> MLP:
    m = config.model
    return MLP((*m.hidden, 2 * m.latent), act=m.act)


def _decoder(config: Config, dim: int) -> MLP:
    m = config.model
    return MLP((*m.hidden, dim), act=m.act)


def init(config: Config, example_batch, *, key) -> State:
    """Fresh state for data `example_batch["x"]`: flat `[B, D]` or images `[B, H, W, C]`."""
    x = check_batch(example_batch, "vae.init")
    shape = tuple(x.shape[1:])
    if len(shape) not in (1, 3):
        raise ValueError(
            "vae.init: takes flat data [B, D] or images [B, H, W, C]; got examples of shape "
            f"{shape}"
        )
    check_inputs(example_batch, image=x.ndim == 4, who="vae.init")
    k_enc, k_dec, k_state = jax.random.split(key, 3)
    m, d = config.model, math.prod(shape)
    params = {
        "encoder": init_params(_encoder(config), k_enc, jnp.zeros((1, d))),
        "decoder": init_params(_decoder(config, d), k_dec, jnp.zeros((1, m.latent))),
        "log_sigma_x": jnp.full(shape, m.init_log_sigma_x, jnp.float32),
    }
    ms = model_state(params, config.optim.vae)
    return State(jnp.zeros((), jnp.int32), k_state, ms, shape)


def encode(params, x, *, config: Config):
    """q(z | x): `(mean, log_var)`, each `[B, d]`, for data `x` `[B, ...]`."""
    h = _encoder(config).apply({"params": params["encoder"]}, x.reshape(x.shape[0], -1))
    return jnp.split(h, 2, axis=-1)


def decode(params, z, *, config: Config):
    """p(x | z): `(mean [B, ...], log σ_x [...])` for latents `z` `[B, d]` (`...`: the example
    shape, `[D]` or `[H, W, C]`)."""
    shape = params["log_sigma_x"].shape
    mean = _decoder(config, math.prod(shape)).apply({"params": params["decoder"]}, z)
    return mean.reshape(z.shape[0], *shape), jnp.maximum(
        params["log_sigma_x"], config.model.min_log_sigma_x
    )


def gaussian_log_prob(x, mean, log_std):
    """Σ over the last axis of log N(x; mean, exp(log_std)²) `[...]`."""
    return jnp.sum(-0.5 * ((x - mean) * jnp.exp(-log_std)) ** 2 - log_std - 0.5 * LOG_2PI, -1)


def decoder_log_prob(x, mean, log_sigma):
    """log p(x | z) `[B]`: Σ over the example axes of log N(x; mean, σ_x²) for `x`, `mean`
    `[B, ...]` and `log_sigma` of the example shape."""
    flat = lambda a: a.reshape(a.shape[0], -1)
    return gaussian_log_prob(flat(x), flat(mean), log_sigma.reshape(-1))


def log_joint(params, x, z, *, config: Config):
    """log p(x, z) = log p(z) + log p(x | z) `[B]` (eq. 1)."""
    mean, log_sigma = decode(params, z, config=config)
    return gaussian_log_prob(z, 0.0, 0.0) + decoder_log_prob(x, mean, log_sigma)


def elbo_terms(params, x, key, *, config: Config):
    """`(log p(x | z) [B], KL(q ‖ p) [B])` with one reparameterised z ~ q(z | x) (eq. 2)."""
    mean, log_var = encode(params, x, config=config)
    z = mean + jnp.exp(0.5 * log_var) * batch_normal(key, mean.shape)
    x_mean, log_sigma = decode(params, z, config=config)
    kl = 0.5 * jnp.sum(jnp.exp(log_var) + mean**2 - 1.0 - log_var, axis=-1)
    return decoder_log_prob(x, x_mean, log_sigma), kl


def loss_fn(params, x, key, *, config: Config):
    rec, kl = elbo_terms(params, x, key, config=config)
    loss = jnp.mean(config.method.beta * kl - rec)
    metrics = {"loss": loss, "rec": -jnp.mean(rec), "kl": jnp.mean(kl), "elbo": jnp.mean(rec - kl)}
    return loss, {**metrics, "log_sigma_x": jnp.mean(params["log_sigma_x"])}


def train_step(state: State, batch, *, config: Config):
    """One Adam step on −(β-)ELBO of `batch["x"]` `[B, ...]`."""
    x = check_state_batch(batch, state, "vae.train_step").astype(jnp.float32)
    key = jax.random.fold_in(state.key, state.step)
    grads, metrics = jax.grad(loss_fn, has_aux=True)(state.vae.params, x, key, config=config)
    ms, gnorm = state.vae.apply_gradients(grads, step=state.step)
    return state.replace(step=state.step + 1, vae=ms), {**metrics, "grad_norm": gnorm}


def generate(params, eps_z, eps_x, *, config: Config, mean: bool = False):
    """x = μ_x(ε_z) + σ_x ⊙ ε_x `[B, ...]` (T^x of the thesis's eq. 4.18; the prior is N(0, I), so
    z = ε_z); with `mean`, μ_x(ε_z) and `eps_x` is unused (may be None)."""
    x_mean, log_sigma = decode(params, eps_z, config=config)
    return x_mean if mean else x_mean + jnp.exp(log_sigma) * eps_x


def sample(state: State, num: int, *, config: Config, key, shape=None, use_ema: bool = True):
    """`num` draws `[num, D]` from the model (decoder means with `sample.decoder_mean`); stats
    `nfe` `[num]` (one decoder pass)."""
    num = check_count(num, "vae.sample")
    shape = sample_shape(state, shape, "vae.sample")
    k_z, k_x = jax.random.split(key)
    eps_z = batch_normal(k_z, (num, config.model.latent))
    mean = config.sample.decoder_mean  # decoder means need no ε_x
    eps_x = None if mean else batch_normal(k_x, (num, *shape))
    x = generate(state.vae.eval_params(use_ema), eps_z, eps_x, config=config, mean=mean)
    return x, {"nfe": jnp.ones((num,), jnp.int32)}


def iwae_log_prob(params, x, key, *, config: Config, num_samples: int, chunk: int):
    """The IWAE bound log (1/K) Σ_k p(x, z_k) / q(z_k | x) `[B]` (eq. 3) with K = `num_samples`
    importance samples drawn `chunk` at a time; the log-sum-exp is carried across chunks, so
    memory is `[chunk, B, d]` whatever K (K a multiple of `chunk`, else rounded up)."""
    mean, log_var = encode(params, x, config=config)
    std = jnp.exp(0.5 * log_var)
    num_chunks = -(-int(num_samples) // int(chunk))

    def one_chunk(carry, k):
        run_max, run_sum = carry
        eps = jax.random.normal(k, (chunk, *mean.shape))
        z = mean + std * eps
        log_q = gaussian_log_prob(z, mean, 0.5 * log_var)  # [chunk, B], broadcast over chunk
        log_w = jax.vmap(lambda zz: log_joint(params, x, zz, config=config))(z) - log_q
        new_max = jnp.maximum(run_max, jnp.max(log_w, axis=0))
        run_sum = run_sum * jnp.exp(run_max - new_max) + jnp.sum(jnp.exp(log_w - new_max), 0)
        return (new_max, run_sum), None

    init = (jnp.full(x.shape[:1], -jnp.inf), jnp.zeros(x.shape[:1]))
    keys = jax.random.split(key, num_chunks)
    (run_max, run_sum), _ = jax.lax.scan(one_chunk, init, keys)
    return run_max + jnp.log(run_sum) - jnp.log(num_chunks * chunk)


def log_density(state: State, x, *, config: Config, key, use_ema: bool = True):
    """The IWAE lower bound on log p(x) `[B]` for `x` `[B, ...]` with `sample.iwae_samples`
    importance samples (the thesis's VAE row of the 25-Gaussians table uses 10,000)."""
    check_state_batch({"x": x}, state, "vae.log_density")
    s = config.sample
    fn = partial(iwae_log_prob, config=config, num_samples=s.iwae_samples, chunk=s.iwae_chunk)
    return fn(state.vae.eval_params(use_ema), x.astype(jnp.float32), key)


def reconstruct(state: State, x, *, config: Config, use_ema: bool = True):
    """μ_x(μ(x)) `[B, ...]`: the decoder mean at the posterior mean of `x` `[B, ...]`."""
    check_state_batch({"x": x}, state, "vae.reconstruct")
    params = state.vae.eval_params(use_ema)
    mean, _ = encode(params, x.astype(jnp.float32), config=config)
    return decode(params, mean, config=config)[0]

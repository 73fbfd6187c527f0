"""A VAE (docs/methods/vae.md): the base that VAEBM tilts (thesis ch. 4, stage one). Flat data
`[B, D]` (2-D toy sets) or images `[B, H, W, C]` in [-1, 1]. Networks (`model.network`,
`jaxgen.methods.vae_networks`): MLPs on the flattened example ("mlp"), or GLF's conv encoder and
decoder with BatchNorm ("conv", images only; running averages everywhere but `train_step`).

    p(z) = N(0, I),  p(x | z) = N(μ_x(z), diag σ_x²),  q(z | x) = N(μ(x), diag σ(x)²)   (eq. 1)
    ELBO = E_q log p(x | z) − β KL(q(z | x) ‖ p(z))                                   (eq. 2)
    log p(x) ≥ log (1/K) Σ_k p(x, z_k) / q(z_k | x),  z_k ~ q(z | x)   (IWAE, eq. 3)

Gaussian decoder (`model.decoder="gaussian"`): σ_x is one learned value per data dimension (per
pixel; not a function of z), so a draw is x = μ_x(ε_z) + σ_x ⊙ ε_x with (ε_z, ε_x) ~ N(0, I):
the reparameterisation VAEBM's ε-space Langevin chain moves (docs/methods/vae.md §3). The conv
decoder's μ_x is a tanh, in (-1, 1); the MLP's is unbounded.

Bernoulli decoder (`"bernoulli"`, images only): logits ℓ(z); targets y = (x + 1)/2 ∈ [0, 1] and
log p(x | z) = Σ y log σ(ℓ) + (1 − y) log(1 − σ(ℓ)) (eq. 5 of the note). Its mean, and its
"draw" (continuous pixels, as the thesis and its public code use), is 2σ(ℓ) − 1: no σ_x, no ε_x.
On continuous pixels it is no density, so `log_joint`, `iwae_log_prob` and `log_density` refuse it.

Sampling: NFE = 1 decoder pass. Extras: `log_density` (the IWAE bound with
`sample.iwae_samples` samples, streamed in chunks) and `reconstruct` (the decoder mean at the
posterior mean).
"""

import dataclasses
import math
from functools import partial

import jax
import jax.numpy as jnp
from flax import struct

from jaxgen.methods import vae_networks as nets
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
    checked,
    each_at_least,
    example_shape_field,
    model_state,
    one_of,
    positive,
    sample_shape,
)
from jaxgen.nn.mlp import ACTIVATIONS
from jaxgen.objectives.glf import to_unit_interval
from jaxgen.optim import ModelState

LOG_2PI = math.log(2.0 * math.pi)  # a Python float: no array (and no backend) at import


@dataclasses.dataclass(frozen=True)
class Model(Section):
    """The encoder and decoder (`jaxgen.methods.vae_networks`): MLPs of the same hidden widths on
    the flattened data ("mlp") or GLF's conv networks with BatchNorm ("conv", images only); a
    Gaussian decoder with a learned σ_x or a Bernoulli decoder (images only, no σ_x, no ε_x)."""

    network: str = one_of(("mlp", "conv"), "mlp")
    latent: int = at_least(1, 2)  # d
    hidden: tuple[int, ...] = each_at_least(1, (256, 256), empty=True)  # mlp; (): linear
    act: str = one_of(tuple(ACTIVATIONS), "silu")  # mlp
    init_log_sigma_x: float = -1.0  # gaussian: log σ_x at the start (learned from there)
    # gaussian: floor of log σ_x (a point mass would make the ELBO unbounded)
    min_log_sigma_x: float = -7.0
    decoder: str = one_of(("gaussian", "bernoulli"), "gaussian")  # p(x | z)
    width: int = at_least(1, 64)  # conv: w of nn/autoencoder.py (Dense 16w; GLF's ae_width)
    # conv: BatchNorm running-statistics decay
    bn_momentum: float = checked(0.9, lambda v: 0 <= v < 1, "must be in [0, 1)")


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
    # params: {"encoder", "decoder", ["log_sigma_x" [...]: gaussian]}; variables: conv
    # {"batch_stats": {"encoder", "decoder"}}, mlp {}
    vae: ModelState
    example_shape: tuple = example_shape_field()


def init(config: Config, example_batch, *, key) -> State:
    """Fresh state for data `example_batch["x"]`: flat `[B, D]` or images `[B, H, W, C]` in
    [-1, 1] ("conv" and "bernoulli": images only; conv: square, size a multiple of 4)."""
    x = check_batch(example_batch, "vae.init")
    shape = tuple(x.shape[1:])
    if len(shape) not in (1, 3):
        raise ValueError(
            "vae.init: takes flat data [B, D] or images [B, H, W, C]; got examples of shape "
            f"{shape}"
        )
    m = config.model
    nets.check_data(m, shape, "vae.init")
    check_inputs(example_batch, image=x.ndim == 4, who="vae.init")
    k_enc, k_dec, k_state = jax.random.split(key, 3)
    params, stats = nets.init(m, shape, k_enc, k_dec)
    if m.decoder == "gaussian":
        params["log_sigma_x"] = jnp.full(shape, m.init_log_sigma_x, jnp.float32)
    ms = model_state(params, config.optim.vae, variables={"batch_stats": stats} if stats else None)
    return State(jnp.zeros((), jnp.int32), k_state, ms, shape)


def frozen_params(state: State, use_ema: bool = True) -> dict:
    """What the functions below take as `params`: the (EMA) parameters, with the conv network's
    BatchNorm running averages under "batch_stats" (the MLPs have none: the parameters)."""
    return {**state.vae.eval_params(use_ema), **state.vae.variables}


def _stats(params, config: Config, who: str) -> dict:
    """The BatchNorm running averages in `params` (`{}` for the MLPs), or one `ValueError`."""
    if config.model.network != "conv":
        return {}
    if "batch_stats" not in params:
        raise ValueError(
            f"{who}: the conv network needs its BatchNorm running averages: pass "
            "vae.frozen_params(state), not the bare parameters"
        )
    return params["batch_stats"]


def _example_shape(params, shape, who: str) -> tuple:
    """`shape`, else the example shape of σ_x (a Bernoulli decoder has none: one `ValueError`)."""
    if shape is not None:
        return tuple(shape)
    if "log_sigma_x" not in params:
        raise ValueError(
            f"{who}: a Bernoulli decoder has no σ_x to read the example shape from: "
            "pass shape=(H, W, C)"
        )
    return tuple(params["log_sigma_x"].shape)


def _refuse_bernoulli_density(config: Config, who: str) -> None:
    """One `ValueError` for a Bernoulli decoder: its eq. 5 is no density of pixels in [-1, 1]."""
    if config.model.decoder == "bernoulli":
        raise ValueError(
            f"{who}: a Bernoulli decoder (model.decoder='bernoulli') gives no density of "
            "continuous pixels, so no log p(x, z) and no bound on log p(x) "
            "(use model.decoder='gaussian')"
        )


def _encode(params, stats, x, config: Config, train: bool):
    """`((mean, log_var) [B, d] each, stats)` of q(z | x) for `x` `[B, ...]`."""
    h, stats = nets.apply_encoder(config.model, params, stats, x, train=train)
    return tuple(jnp.split(h, 2, axis=-1)), stats


def encode(params, x, *, config: Config):
    """q(z | x): `(mean, log_var)`, each `[B, d]`, for data `x` `[B, ...]` (BatchNorm: running
    averages)."""
    return _encode(params, _stats(params, config, "vae.encode"), x, config, False)[0]


def _log_sigma_x(params, config: Config):
    return jnp.maximum(params["log_sigma_x"], config.model.min_log_sigma_x)


def bernoulli_mean(logits):
    """The Bernoulli decoder's mean in the data's units: 2σ(ℓ) − 1 ∈ (−1, 1), `[B, ...]`."""
    return 2.0 * jax.nn.sigmoid(logits) - 1.0


def decode(params, z, *, config: Config, shape=None):
    """p(x | z): `(mean [B, ...], log σ_x [...])` for latents `z` `[B, d]` (`...`: the example
    shape `shape`, `[D]` or `[H, W, C]`; read from σ_x when None). Bernoulli: `(2σ(ℓ) − 1, None)`.
    BatchNorm: running averages."""
    shape = _example_shape(params, shape, "vae.decode")
    stats = _stats(params, config, "vae.decode")
    out, _ = nets.apply_decoder(config.model, params, stats, z, shape, train=False)
    if config.model.decoder == "bernoulli":
        return bernoulli_mean(out), None
    return out, _log_sigma_x(params, config)


def gaussian_log_prob(x, mean, log_std):
    """Σ over the last axis of log N(x; mean, exp(log_std)²) `[...]`."""
    return jnp.sum(-0.5 * ((x - mean) * jnp.exp(-log_std)) ** 2 - log_std - 0.5 * LOG_2PI, -1)


def decoder_log_prob(x, mean, log_sigma):
    """log p(x | z) `[B]`: Σ over the example axes of log N(x; mean, σ_x²) for `x`, `mean`
    `[B, ...]` and `log_sigma` of the example shape."""
    flat = lambda a: a.reshape(a.shape[0], -1)
    return gaussian_log_prob(flat(x), flat(mean), log_sigma.reshape(-1))


def bernoulli_log_prob(x, logits):
    """Σ_pixels y log σ(ℓ) + (1 − y) log(1 − σ(ℓ)) `[B]` with targets y = (x + 1)/2 ∈ [0, 1] for
    `x` `[B, H, W, C]` in [-1, 1] and logits ℓ `[B, H, W, C]` (docs/methods/vae.md eq. 5)."""
    y = to_unit_interval(x)
    ll = y * jax.nn.log_sigmoid(logits) + (1.0 - y) * jax.nn.log_sigmoid(-logits)
    return jnp.sum(ll.reshape(ll.shape[0], -1), -1)


def _log_likelihood(params, x, out, config: Config):
    """log p(x | z) `[B]` from the decoder's output `out` (μ_x or ℓ) `[B, ...]`."""
    if config.model.decoder == "bernoulli":
        return bernoulli_log_prob(x, out)
    return decoder_log_prob(x, out, _log_sigma_x(params, config))


def log_joint(params, x, z, *, config: Config):
    """log p(x, z) = log p(z) + log p(x | z) `[B]` (eq. 1) for a Gaussian decoder (a Bernoulli
    decoder: one `ValueError`)."""
    _refuse_bernoulli_density(config, "vae.log_joint")
    mean, log_sigma = decode(params, z, config=config, shape=x.shape[1:])
    return gaussian_log_prob(z, 0.0, 0.0) + decoder_log_prob(x, mean, log_sigma)


def _elbo(params, stats, x, key, config: Config, train: bool):
    """`(log p(x | z) [B], KL [B], stats)` with one reparameterised z ~ q(z | x) (eq. 2)."""
    (mean, log_var), stats = _encode(params, stats, x, config, train)
    z = mean + jnp.exp(0.5 * log_var) * batch_normal(key, mean.shape)
    out, stats = nets.apply_decoder(config.model, params, stats, z, x.shape[1:], train=train)
    kl = 0.5 * jnp.sum(jnp.exp(log_var) + mean**2 - 1.0 - log_var, axis=-1)
    return _log_likelihood(params, x, out, config), kl, stats


def elbo_terms(params, x, key, *, config: Config):
    """`(log p(x | z) [B], KL(q ‖ p) [B])` with one reparameterised z ~ q(z | x) (eq. 2;
    BatchNorm: running averages)."""
    rec, kl, _ = _elbo(params, _stats(params, config, "vae.elbo_terms"), x, key, config, False)
    return rec, kl


def loss_fn(params, batch_stats, x, key, *, config: Config):
    """`(−(β-)ELBO, (metrics, updated BatchNorm statistics))` of `x` `[B, ...]` in training mode
    (`batch_stats`: the state's running averages, `{}` for the MLPs)."""
    rec, kl, stats = _elbo(params, batch_stats, x, key, config, True)
    loss = jnp.mean(config.method.beta * kl - rec)
    metrics = {"loss": loss, "rec": -jnp.mean(rec), "kl": jnp.mean(kl), "elbo": jnp.mean(rec - kl)}
    if "log_sigma_x" in params:
        metrics["log_sigma_x"] = jnp.mean(params["log_sigma_x"])
    return loss, (metrics, stats)


def train_step(state: State, batch, *, config: Config):
    """One Adam step on −(β-)ELBO of `batch["x"]` `[B, ...]` (conv: the BatchNorm running
    averages updated from the batch)."""
    x = check_state_batch(batch, state, "vae.train_step").astype(jnp.float32)
    key = jax.random.fold_in(state.key, state.step)
    stats = state.vae.variables.get("batch_stats", {})
    grads, (metrics, stats) = jax.grad(loss_fn, has_aux=True)(
        state.vae.params, stats, x, key, config=config
    )
    variables = {"batch_stats": stats} if stats else None
    ms, gnorm = state.vae.apply_gradients(grads, step=state.step, variables=variables)
    return state.replace(step=state.step + 1, vae=ms), {**metrics, "grad_norm": gnorm}


def generate(params, eps_z, eps_x, *, config: Config, mean: bool = False, shape=None):
    """x = μ_x(ε_z) + σ_x ⊙ ε_x `[B, ...]` (T^x of the thesis's eq. 4.18; the prior is N(0, I), so
    z = ε_z); with `mean`, μ_x(ε_z) and `eps_x` is unused (may be None). A Bernoulli decoder's
    draw is its mean 2σ(ℓ) − 1 (continuous pixels, as the thesis and its public code use): it has
    no ε_x (`eps_x` must be None unless `mean`) and needs `shape`."""
    bernoulli = config.model.decoder == "bernoulli"
    if bernoulli and eps_x is not None and not mean:
        raise ValueError(
            "vae.generate: a Bernoulli decoder has no ε_x (its draw is its mean); pass eps_x=None"
        )
    x_mean, log_sigma = decode(params, eps_z, config=config, shape=shape)
    return x_mean if mean or bernoulli else x_mean + jnp.exp(log_sigma) * eps_x


def sample(state: State, num: int, *, config: Config, key, shape=None, use_ema: bool = True):
    """`num` draws `[num, ...]` from the model (decoder means with `sample.decoder_mean` or a
    Bernoulli decoder); stats `nfe` `[num]` (one decoder pass)."""
    num = check_count(num, "vae.sample")
    shape = sample_shape(state, shape, "vae.sample")
    k_z, k_x = jax.random.split(key)
    eps_z = batch_normal(k_z, (num, config.model.latent))
    # decoder means need no ε_x; a Bernoulli decoder has none
    mean = config.sample.decoder_mean or config.model.decoder == "bernoulli"
    eps_x = None if mean else batch_normal(k_x, (num, *shape))
    params = frozen_params(state, use_ema)
    x = generate(params, eps_z, eps_x, config=config, mean=mean, shape=shape)
    return x, {"nfe": jnp.ones((num,), jnp.int32)}


def iwae_log_prob(params, x, key, *, config: Config, num_samples: int, chunk: int):
    """The IWAE bound log (1/K) Σ_k p(x, z_k) / q(z_k | x) `[B]` (eq. 3) with K = `num_samples`
    importance samples drawn `chunk` at a time; the log-sum-exp is carried across chunks, so
    memory is `[chunk, B, d]` whatever K (K a multiple of `chunk`, else rounded up). A Gaussian
    decoder only (a Bernoulli decoder: one `ValueError`)."""
    _refuse_bernoulli_density(config, "vae.iwae_log_prob")
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
    importance samples (the thesis's VAE row of the 25-Gaussians table uses 10,000). A Gaussian
    decoder only: a Bernoulli decoder is no density of continuous pixels (one `ValueError`)."""
    _refuse_bernoulli_density(config, "vae.log_density")
    check_state_batch({"x": x}, state, "vae.log_density")
    s = config.sample
    fn = partial(iwae_log_prob, config=config, num_samples=s.iwae_samples, chunk=s.iwae_chunk)
    return fn(frozen_params(state, use_ema), x.astype(jnp.float32), key)


def reconstruct(state: State, x, *, config: Config, use_ema: bool = True):
    """μ_x(μ(x)) `[B, ...]`: the decoder mean at the posterior mean of `x` `[B, ...]` (BatchNorm:
    running averages)."""
    check_state_batch({"x": x}, state, "vae.reconstruct")
    params = frozen_params(state, use_ema)
    mean, _ = encode(params, x.astype(jnp.float32), config=config)
    return decode(params, mean, config=config, shape=x.shape[1:])[0]

"""Generative Latent Flow (thesis ch. 3; docs/methods/glf.md): a deterministic auto-encoder and
a RealNVP flow on its latents, trained together in one stage, each network with its own
optimizer. Variants (`method.variant`):

    glf             rec + NLL(f(sg[E(x)]))               eq. 1.6 (the method)
    regularized     β·rec + NLL(f(E(x)))                 eq. 1.7 (no stop-gradient; degenerates)
    vae_flow_prior  β·rec + NLL(f(z)) - H(q(z|x))        eq. 1.8 (z ~ q(z|x))

Sampling: u ~ N(0, I) → z = f⁻¹(u) → x = G(z), one decoder pass (NFE 1). Extras:
`interpolate` (a line in u), `reconstruct`, `encode`, `decode`.
"""

import dataclasses
from functools import partial

import jax
import jax.numpy as jnp
from flax import struct

from jaxgen.flows import forward_and_log_det, init_flow, inverse_and_log_det, latent_realnvp
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
    example_shape_field,
    model_state,
    one_of,
    positive,
    sample_shape,
)
from jaxgen.nn.autoencoder import Decoder, Encoder, check_image_size, init_variables
from jaxgen.nn.batch_stats import apply_with_batch_stats
from jaxgen.nn.perceptual import PERCEPTUAL_NETWORKS, load_perceptual
from jaxgen.objectives import glf as objectives
from jaxgen.optim import ModelState

VARIANTS = ("glf", "regularized", "vae_flow_prior")


@dataclasses.dataclass(frozen=True)
class Model(Section):
    # d: 20 for 28×28, 64 for 32×32 and 64×64 (thesis §3.4.3)
    latent: int = at_least(2, 20, "must be >= 2 (the flow's coupling splits z in two)")
    ae_width: int = at_least(1, 64, "out of range")  # w of the AE (thesis: 64; Dense 16w)
    flow_blocks: int = at_least(1, 4, "out of range")  # coupling blocks, each then a permutation
    # units per subnet layer: 64 (MNIST / Fashion), 256 (CIFAR, CelebA)
    flow_hidden: int = at_least(1, 64, "out of range")
    flow_clamp: float = positive(2.0)  # soft clamp of the log-scales
    flow_init_std: float = positive(0.05)  # every flow parameter 0.05·N(0, 1) (reference code)
    # running-statistics decay (PyTorch momentum 0.1)
    bn_momentum: float = checked(0.9, lambda v: 0 <= v < 1, "must be in [0, 1)")


@dataclasses.dataclass(frozen=True)
class Method(Section):
    variant: str = one_of(VARIANTS, "glf")
    beta: float = positive(1.0)  # weight of the reconstruction (regularized, vae_flow_prior)
    reconstruction: str = one_of(("mse", "bce"), "mse")  # summed squares or cross-entropy
    # a network of jaxgen.nn.perceptual.PERCEPTUAL_NETWORKS ("" = off)
    perceptual: str = one_of(("", *PERCEPTUAL_NETWORKS), "")
    perceptual_layers: int = at_least(1, 3, "out of range")  # taps: 3 (28/32 px), 4 (64 px)


@dataclasses.dataclass(frozen=True)
class Sample(Section):
    # BatchNorm while sampling: "running" averages, or "batch" statistics of each sampled
    # batch (the reference sampler: train mode, batches of 500)
    batchnorm: str = one_of(("running", "batch"), "running")
    temperature: float = positive(1.0)  # u ~ N(0, temperature² I)


@dataclasses.dataclass(frozen=True)
class Optims:
    ae: Optim = Optim(lr=1e-3, ema_rate=0.0)
    # the reference code's flow optimizer: Adam β (0.8, 0.9), ε 1e-6, coupled L2 2e-5
    flow: Optim = Optim(lr=1e-3, b1=0.8, b2=0.9, eps=1e-6, l2=2e-5, ema_rate=0.0)


@dataclasses.dataclass(frozen=True)
class Config:
    model: Model = Model()
    method: Method = Method()
    optim: Optims = Optims()
    sample: Sample = Sample()


CAPABILITIES = Capabilities(
    networks=("ae", "flow"),
    headline=("loss_rec", "nll", "latent_norm"),
    sampler_stats=("nfe",),
    nfe="decoder passes",
    extras=("interpolate", "reconstruct"),
)


@struct.dataclass
class State:
    step: jax.Array
    key: jax.Array
    ae: ModelState  # params / batch_stats: {"encoder": ..., "decoder": ...}
    flow: ModelState  # variables: {"batch_stats": ...}
    perceptual: dict  # the frozen perceptual network's parameters ({} without one)
    example_shape: tuple = example_shape_field()  # (H, W, C)
    latent: int = struct.field(pytree_node=False)  # d, the latent size the networks take


def _encoder(config: Config) -> Encoder:
    outputs = config.model.latent * (2 if config.method.variant == "vae_flow_prior" else 1)
    return Encoder(outputs, config.model.bn_momentum, config.model.ae_width)


def _decoder(config: Config, shape) -> Decoder:
    """G for images of `shape` (H, W, C)."""
    return Decoder(shape[0], shape[2], config.model.bn_momentum, config.model.ae_width)


def _flow(config: Config):
    m = config.model
    return latent_realnvp(
        m.latent,
        num_blocks=m.flow_blocks,
        hidden=m.flow_hidden,
        clamp=m.flow_clamp,
        bn_momentum=m.bn_momentum,
    )


def _check_latent(state: State, config: Config, who: str) -> None:
    """A `ValueError` when `model.latent` is not the state's latent size."""
    if state.latent != config.model.latent:
        raise ValueError(
            f"{who}: config.model.latent={config.model.latent}, but the state's networks "
            f"were built for latent {state.latent}"
        )


def encode(ae_params, batch_stats, x, *, config: Config, train: bool = False):
    """E(x): the latent `[B, d]` (vae_flow_prior: (μ, log σ²) stacked, `[B, 2d]`) of images
    `[B, H, W, C]` in [-1, 1], and the encoder's BatchNorm statistics (updated when `train`)."""
    return apply_with_batch_stats(
        _encoder(config), ae_params["encoder"], batch_stats["encoder"], x, train=train
    )


def decode(ae_params, batch_stats, z, *, config: Config, shape, train: bool = False):
    """G(z): images `[B, *shape]` in (-1, 1) from latents `[B, d]`, and the decoder's BatchNorm
    statistics (updated when `train`)."""
    dec = _decoder(config, shape)
    return apply_with_batch_stats(dec, ae_params["decoder"], batch_stats["decoder"], z, train=train)


def _perceptual_taps(config: Config):
    """`(params, x) -> taps` of the configured perceptual network: its first
    `method.perceptual_layers` feature maps of images `x` `[B, H, W, C]` in [-1, 1]."""
    module = PERCEPTUAL_NETWORKS[config.method.perceptual].module()
    layers = config.method.perceptual_layers
    return lambda params, x: tuple(module.apply({"params": params}, x)[0])[:layers]


def _load_perceptual(config: Config, shape: tuple) -> dict:
    """The perceptual network's parameters ({} without one), checked against the data's example
    shape and `method.perceptual_layers` (one `ValueError`)."""
    m = config.method
    if not m.perceptual:
        return {}
    net = load_perceptual(m.perceptual)
    net.check_fits(shape, m.perceptual_layers, "glf.init", layers_field="method.perceptual_layers")
    return net.params


def init(config: Config, example_batch, *, key) -> State:
    """Fresh state for images `example_batch["x"]` `[B, H, W, C]` in [-1, 1] (square, size a
    multiple of 4; one `ValueError` otherwise). The flow's parameters are
    flow_init_std·N(0, 1)."""
    x = check_batch(example_batch, "glf.init", example_shape=("H", "W", "C"))
    shape = tuple(int(d) for d in x.shape[1:])
    check_image_size(*shape[:2])
    check_inputs(example_batch, image=True, who="glf.init")
    ae, flow, k_state = _fresh_networks(config, shape, key)
    perceptual = _load_perceptual(config, shape)
    latent = config.model.latent
    return State(jnp.zeros((), jnp.int32), k_state, ae, flow, perceptual, shape, latent)


@partial(jax.jit, static_argnums=(0, 1))
def _fresh_networks(config: Config, shape: tuple, key):
    """(AE state, flow state, the run's key) for images of `shape`; one compiled program
    (Flax's initialisers run op by op otherwise)."""
    k_enc, k_dec, k_flow, k_state = jax.random.split(key, 4)
    d, o = config.model.latent, config.optim
    enc_vars = init_variables(_encoder(config), k_enc, jnp.zeros((1, *shape)))
    dec_vars = init_variables(_decoder(config, shape), k_dec, jnp.zeros((1, d)))
    ae_params = {"encoder": enc_vars["params"], "decoder": dec_vars["params"]}
    ae_stats = {"encoder": enc_vars["batch_stats"], "decoder": dec_vars["batch_stats"]}
    ae = model_state(ae_params, o.ae, variables={"batch_stats": ae_stats})
    flow_vars = init_flow(
        _flow(config), k_flow, jnp.zeros((2, d)), init_std=config.model.flow_init_std
    )
    flow = model_state(
        flow_vars["params"], o.flow, variables={"batch_stats": flow_vars["batch_stats"]}
    )
    return ae, flow, k_state


def _reconstruction(state: State, x, x_hat, config: Config):
    """The per-example reconstruction term `[B]`: perceptual, summed squares or summed BCE."""
    m = config.method
    if m.perceptual:
        taps = _perceptual_taps(config)
        return objectives.perceptual_distance(lambda v: taps(state.perceptual, v), x, x_hat)
    if m.reconstruction == "bce":
        return objectives.reconstruction_bce(x, x_hat)
    return objectives.reconstruction_sse(x, x_hat)


def loss_fn(ae_params, flow_params, state: State, x, key, *, config: Config):
    """The batch mean of the variant's loss (eqs. 1.6-1.8), the updated BatchNorm statistics and
    the diagnostics (per-example means)."""
    m, vae = config.method, config.method.variant == "vae_flow_prior"
    ae_stats = state.ae.variables["batch_stats"]
    h, enc_stats = encode(ae_params, ae_stats, x, config=config, train=True)
    if vae:
        mean, log_var = jnp.split(h, 2, axis=-1)
        z = objectives.reparameterise(mean, log_var, key)
    else:
        z, log_var = h, None
    x_hat, dec_stats = decode(ae_params, ae_stats, z, config=config, shape=x.shape[1:], train=True)
    rec = _reconstruction(state, x, x_hat, config)
    z_flow = jax.lax.stop_gradient(z) if m.variant == "glf" else z  # eq. 1.6's sg[·]
    flow_vars = {"params": flow_params, **state.flow.variables}
    u, log_det, flow_vars = forward_and_log_det(_flow(config), flow_vars, z_flow, train=True)
    nll = objectives.latent_nll(u, log_det)
    ent = objectives.posterior_entropy_term(log_var) if vae else None
    loss = jnp.mean(objectives.glf_terms(rec, nll, variant=m.variant, beta=m.beta, entropy=ent))
    stats = {"encoder": enc_stats, "decoder": dec_stats}
    metrics = {
        "loss": loss,
        "loss_rec": jnp.mean(rec),
        "nll": jnp.mean(nll),
        "log_det": jnp.mean(log_det),
        "latent_norm": jnp.mean(jnp.linalg.norm(z, axis=-1)),
        "noise_norm": jnp.mean(jnp.linalg.norm(u, axis=-1)),
    }
    if vae:
        metrics["entropy_term"] = jnp.mean(ent)
        metrics["posterior_var"] = jnp.mean(jnp.exp(log_var))
    return loss, (stats, flow_vars["batch_stats"], metrics)


def train_step(state: State, batch, *, config: Config):
    """One step of both networks on `batch["x"]` `[B, H, W, C]` in [-1, 1]: one loss, the AE
    and the flow each updated by their own optimizer (for `glf` the stop-gradient makes the two
    gradients those of the reconstruction and of the NLL alone)."""
    check_state_batch(batch, state, "glf.train_step")
    x = batch["x"].astype(jnp.float32)
    key = jax.random.fold_in(state.key, state.step)
    grad_fn = jax.value_and_grad(loss_fn, argnums=(0, 1), has_aux=True)
    (_, (ae_stats, flow_stats, metrics)), (g_ae, g_flow) = grad_fn(
        state.ae.params, state.flow.params, state, x, key, config=config
    )

    def update(ms: ModelState, grads, stats):
        return ms.apply_gradients(grads, step=state.step, variables={"batch_stats": stats})

    ae, gnorm_ae = update(state.ae, g_ae, ae_stats)
    flow, gnorm_flow = update(state.flow, g_flow, flow_stats)
    metrics = {**metrics, "grad_norm_ae": gnorm_ae, "grad_norm_flow": gnorm_flow}
    return state.replace(step=state.step + 1, ae=ae, flow=flow), metrics


def frozen_decoder(state: State, use_ema: bool = True) -> dict:
    """The sampler's parameters as one pytree: `{"ae": params, "ae_stats": BatchNorm statistics,
    "flow": the flow's variables}` (what a frozen GLF base keeps, e.g. under VAEBM's tilt)."""
    flow_vars = {"params": state.flow.eval_params(use_ema), **state.flow.variables}
    ae = state.ae.eval_params(use_ema)
    return {"ae": ae, "ae_stats": state.ae.variables["batch_stats"], "flow": flow_vars}


def decode_frozen(frozen: dict, u, *, config: Config, shape, train: bool = False):
    """`(x = G(f⁻¹(u)) [B, *shape] in (-1, 1), z = f⁻¹(u) [B, d])` for noise `u` `[B, d]` and
    `frozen_decoder`'s pytree; BatchNorm on its running averages unless `train` (batch
    statistics; the statistics are not kept)."""
    z, _, _ = inverse_and_log_det(_flow(config), frozen["flow"], u, train=train)
    x, _ = decode(frozen["ae"], frozen["ae_stats"], z, config=config, shape=shape, train=train)
    return x, z


def decode_noise(state: State, u, *, config: Config, use_ema: bool = True):
    """x = G(f⁻¹(u)) `[B, H, W, C]` for noise `u` `[B, d]` (BatchNorm per `sample.batchnorm`)."""
    train = config.sample.batchnorm == "batch"
    frozen = frozen_decoder(state, use_ema)
    x, _ = decode_frozen(frozen, u, config=config, shape=state.example_shape, train=train)
    return x


def _checked_shape(state: State, shape, config: Config, who: str) -> tuple:
    _check_latent(state, config, who)
    return sample_shape(state, shape, who)


def sample(state: State, num: int, *, config: Config, key, shape=None, use_ema: bool = True):
    """`num` images `[num, H, W, C]` in (-1, 1): u ~ N(0, T² I), z = f⁻¹(u), x = G(z); stats
    `{"nfe": [num]}` (one decoder pass each). `shape` (optional) must be the state's (H, W, C);
    `num`: a positive int, static under `jit`."""
    num = check_count(num, "glf.sample")
    _checked_shape(state, shape, config, "glf.sample")
    u = config.sample.temperature * batch_normal(key, (num, config.model.latent))
    x = decode_noise(state, u, config=config, use_ema=use_ema)
    return x, {"nfe": jnp.ones((num,), jnp.int32)}


def interpolate(state: State, num: int, *, config: Config, key, shape=None, use_ema=True):
    """Decode the straight line between two noise draws u1, u2 in `num` steps (thesis Fig. 3.3):
    `([num, H, W, C] images, {"nfe": [num]})`."""
    num = check_count(num, "glf.interpolate")
    _checked_shape(state, shape, config, "glf.interpolate")
    k1, k2 = jax.random.split(key)
    d, t = config.model.latent, config.sample.temperature
    u1, u2 = (t * jax.random.normal(k, (d,)) for k in (k1, k2))
    alpha = jnp.linspace(0.0, 1.0, num)[:, None]
    x = decode_noise(state, (1 - alpha) * u1 + alpha * u2, config=config, use_ema=use_ema)
    return x, {"nfe": jnp.ones((num,), jnp.int32)}


def reconstruct(state: State, x, *, config: Config, use_ema: bool = True):
    """G(E(x)) `[B, H, W, C]` for images `x` `[B, H, W, C]` in [-1, 1] (the posterior mean for
    vae_flow_prior), BatchNorm with running averages."""
    check_state_batch({"x": x}, state, "glf.reconstruct")
    params, stats = state.ae.eval_params(use_ema), state.ae.variables["batch_stats"]
    h, _ = encode(params, stats, x.astype(jnp.float32), config=config)
    z = h[:, : config.model.latent]
    x_hat, _ = decode(params, stats, z, config=config, shape=x.shape[1:])
    return x_hat

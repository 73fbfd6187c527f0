"""A small GAN on 2-D data (docs/methods/gan2d.md): the platform's two-network recipe.

A generator G(z) with BatchNorm and a discriminator D(x) are trained with the non-saturating
losses (eqs. 1-2 of the note), each with its own optimizer, D then G in one step. Half of D's
fake batch (in expectation) comes from a replay buffer of earlier fakes (the history of
Shrivastava et al. 2017, eq. 3), kept in the state and split over the `data` devices like any
batch. Sampling is one generator pass (NFE 1) with BatchNorm's running statistics.
"""

import dataclasses

import jax
import jax.numpy as jnp
from flax import struct

from jaxgen.methods.common import (
    Capabilities,
    NoSettings,
    Optim,
    Section,
    at_least,
    batch_draw,
    batch_normal,
    check_batch,
    check_count,
    check_state_batch,
    checked,
    example_shape_field,
    in_unit_interval,
    model_state,
    one_of,
    sample_shape,
)
from jaxgen.nn.batch_stats import apply_with_batch_stats
from jaxgen.nn.gan2d_mlp import Discriminator, Generator
from jaxgen.objectives.gan import d_loss_nonsaturating, g_loss_nonsaturating
from jaxgen.optim import ModelState

DTYPES = ("float32", "bfloat16")


@dataclasses.dataclass(frozen=True)
class Model(Section):
    latent: int = at_least(1, 8, "out of range")  # z ~ N(0, I_latent)
    gen_hidden: tuple[int, ...] = (128, 128)  # G: Dense-BatchNorm-ReLU blocks, then Dense
    disc_hidden: tuple[int, ...] = (128, 128)  # D: Dense-LeakyReLU(0.2) blocks, then a logit
    # running-statistics decay of G's BatchNorm
    bn_momentum: float = checked(0.9, lambda v: 0 <= v < 1, "must be in [0, 1)")
    # activations' dtype; parameters, BatchNorm statistics and losses stay float32
    dtype: str = one_of(DTYPES, "float32")  # or "bfloat16" (docs/methods/gan2d.md §3)


@dataclasses.dataclass(frozen=True)
class Method(Section):
    # probability that a row of D's fake batch comes from the buffer
    replay: float = in_unit_interval(0.5)


Sample = NoSettings


@dataclasses.dataclass(frozen=True)
class Optims:
    gen: Optim = Optim(lr=1e-4, b1=0.5, b2=0.9, ema_rate=0.999)
    disc: Optim = Optim(lr=4e-4, b1=0.5, b2=0.9, ema_rate=0.0)  # no EMA for D


@dataclasses.dataclass(frozen=True)
class Config:
    model: Model = Model()
    method: Method = Method()
    optim: Optims = Optims()
    sample: Sample = Sample()


CAPABILITIES = Capabilities(
    networks=("gen", "disc"),
    headline=("loss_d", "loss_g"),
    sampler_stats=("nfe",),
    nfe="generator passes",
    batch_state=("replay",),
)


@struct.dataclass
class State:
    step: jax.Array
    key: jax.Array
    gen: ModelState  # variables: {"batch_stats": ...}
    disc: ModelState
    replay: jax.Array  # `[B, 2]` earlier fakes, split over `data` (shape = the global batch)
    example_shape: tuple = example_shape_field()


def networks(config: Config, out_dim: int):
    m = config.model
    gen = Generator(tuple(m.gen_hidden), out_dim, m.bn_momentum, m.dtype)
    return gen, Discriminator(tuple(m.disc_hidden), m.dtype)


def generate(gen_params, batch_stats, z, *, config: Config, out_dim: int, train: bool):
    """G(z) `[B, out_dim]`, and the updated BatchNorm statistics in training mode."""
    gen, _ = networks(config, out_dim)
    return apply_with_batch_stats(gen, gen_params, batch_stats, z, train=train)


def init(config: Config, example_batch, *, key) -> State:
    """Fresh state; `example_batch["x"]` `[B, D]` sets the data dimension and the replay
    buffer's size B (the global batch): floating, B >= 1 (one `ValueError` otherwise)."""
    shape = tuple(check_batch(example_batch, "gan2d.init").shape)
    if len(shape) != 2:
        raise ValueError(f"gan2d.init: gan2d takes flat data [B, D]; got shape {shape}")
    b, d = shape
    k_g, k_d, k_z, k_state = jax.random.split(key, 4)
    gen, disc = networks(config, d)
    z = jnp.zeros((1, config.model.latent))
    g_vars = gen.init(k_g, z, train=False)
    d_params = disc.init(k_d, jnp.zeros((1, d)))["params"]
    stats = {"batch_stats": g_vars["batch_stats"]}
    g_state = model_state(g_vars["params"], config.optim.gen, variables=stats)
    d_state = model_state(d_params, config.optim.disc)
    replay, _ = generate(
        g_vars["params"],
        g_vars["batch_stats"],
        jax.random.normal(k_z, (b, config.model.latent)),
        config=config,
        out_dim=d,
        train=False,
    )
    return State(jnp.zeros((), jnp.int32), k_state, g_state, d_state, replay, (d,))


def _disc_logits(params, x, config: Config):
    return networks(config, x.shape[1])[1].apply({"params": params}, x)


def train_step(state: State, batch, *, config: Config):
    """D then G on `batch["x"]` `[B, D]`; the replay buffer's rows used by D are refreshed.
    B and D are the replay buffer's, i.e. `init`'s (checked at trace time, one `ValueError`)."""
    b_init = state.replay.shape[0]
    x_real = check_state_batch(batch, state, "gan2d.train_step", batch_size=b_init)
    x_real = x_real.astype(jnp.float32)
    b, d = x_real.shape
    key = jax.random.fold_in(state.key, state.step)
    k_z1, k_z2, k_mix = jax.random.split(key, 3)
    latent, stats = config.model.latent, state.gen.variables["batch_stats"]
    z1, z2 = (batch_normal(k, (b, latent)) for k in (k_z1, k_z2))
    gen_kw = dict(config=config, out_dim=d, train=True)

    # D step: fresh fakes, with rows replaced from the replay buffer (eq. 3 of the note)
    fresh, stats = generate(state.gen.params, stats, z1, **gen_kw)
    fresh = jax.lax.stop_gradient(fresh)
    from_buffer = batch_draw(jax.random.bernoulli, k_mix, (b, 1), p=config.method.replay)
    fake = jnp.where(from_buffer, state.replay, fresh)

    def d_loss(params):
        real_logits = _disc_logits(params, x_real, config)
        fake_logits = _disc_logits(params, fake, config)
        loss = jnp.mean(d_loss_nonsaturating(real_logits, fake_logits))
        return loss, (jax.nn.sigmoid(real_logits).mean(), jax.nn.sigmoid(fake_logits).mean())

    (loss_d, (d_real, d_fake)), g_d = jax.value_and_grad(d_loss, has_aux=True)(state.disc.params)
    disc, gnorm_d = state.disc.apply_gradients(g_d, step=state.step)

    # G step against the updated D, on new latents
    def g_loss(params):
        x, new_stats = generate(params, stats, z2, **gen_kw)
        return jnp.mean(g_loss_nonsaturating(_disc_logits(disc.params, x, config))), new_stats

    (loss_g, stats), g_g = jax.value_and_grad(g_loss, has_aux=True)(state.gen.params)
    gen, gnorm_g = state.gen.apply_gradients(g_g, step=state.step, variables={"batch_stats": stats})
    replay = jnp.where(from_buffer, fresh, state.replay)  # the used rows get today's fakes
    metrics = {
        "loss_d": loss_d,
        "loss_g": loss_g,
        "d_real": d_real,
        "d_fake": d_fake,
        "grad_norm_d": gnorm_d,
        "grad_norm_g": gnorm_g,
    }
    new = state.replace(step=state.step + 1, gen=gen, disc=disc, replay=replay)
    return new, metrics


def sample(state: State, num: int, *, config: Config, key, shape=None, use_ema: bool = True):
    """`num` samples G(z) `[num, D]` (BatchNorm in inference mode) and `{"nfe": [num]}` (one
    generator pass each). `shape`: `state.example_shape`, `(D,)` (the default; checked).
    `num`: a positive int, static under `jit`."""
    num = check_count(num, "gan2d.sample")
    (d,) = sample_shape(state, shape, "gan2d.sample")
    z = batch_normal(key, (num, config.model.latent))
    params = state.gen.eval_params(use_ema)
    x, _ = generate(
        params, state.gen.variables["batch_stats"], z, config=config, out_dim=d, train=False
    )
    return x, {"nfe": jnp.ones((num,), jnp.int32)}

"""Denoising Diffusion GANs (thesis ch. 6; docs/methods/ddgan.md): a T-step diffusion whose
reverse steps are a conditional GAN with a latent.

One `train_step` is a D step then a G step (docs/methods/ddgan.md §4, §6):

    D: t ~ U{1..T}, (x_{t−1}, x_t) ~ q, x'_{t−1} ~ q(· | x_t, x̂₀ = G(x_t, z, t)) stop-gradient;
       softplus(−ℓ(x_{t−1})) + softplus(ℓ(x'_{t−1})) + [lazy] γ/2 ‖∇_{x_{t−1}} ℓ‖²   (4.1, 4.3)
    G: a fresh t, pair and z (the public code's re-draw; `method.redraw_for_g=False` reuses
       the D step's, as the thesis's Alg. 1), softplus(−ℓ(x'_{t−1})) through the posterior
       sample into G                                                                 (4.2)

`method.parameterisation`: "x0" (G predicts x̂₀, eq. 3.2), "eps" (G predicts ε, x̂₀ by eq. 3.3)
or "direct" (G outputs x_{t−1} itself, no posterior). Networks see the public code's step index
k = t − 1 ∈ {0..T−1}. Sampling is the chain of eq. 3.2 with the EMA generator: NFE = T.
`method.one_shot_aug_steps=A` (with T = 1) is the one-shot GAN with diffusion augmentation:
D sees real and generated images diffused to s ∈ 1..A−1 of an A-step process (eq. 7.1).
"""

import dataclasses
from functools import partial

import flax.linen as nn
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
    check_inputs,
    check_network_input,
    check_state_batch,
    checked,
    each_at_least,
    example_shape_field,
    init_params,
    model_state,
    module_kwargs,
    one_of,
    positive,
    sample_shape,
    validate,
)
from jaxgen.methods.ddgan_one_shot import augment, one_shot_draw
from jaxgen.nn.ddgan_discriminator import DISCRIMINATOR_CONFIGS, TimeConditionalDiscriminator
from jaxgen.nn.ddgan_mlp import MLPDiscriminator, MLPGenerator
from jaxgen.nn.ncsnpp import NCSNppGenerator, check_image_size
from jaxgen.objectives.gan import GAN_LOSS_KINDS, gan_losses, r1_penalty, r1_term
from jaxgen.optim import ModelState
from jaxgen.parallel import shard_over_batch
from jaxgen.samplers.diffusion import (
    VPSchedule,
    ddgan_chain,
    eps_to_x0,
    posterior_sample,
    q_pair,
    vp_schedule,
)

PARAMETERISATIONS = ("x0", "eps", "direct")


@dataclasses.dataclass(frozen=True)
class Model(Section):
    """`network`: "mlp" (2-D: 3 × 512, LeakyReLU 0.2) or "ncsnpp" (images: the U-Net G and the
    time-conditional D of docs/methods/ddgan.md §5)."""

    network: str = one_of(("mlp", "ncsnpp"), "ncsnpp")
    latent_dim: int = at_least(0, 100, "must be >= 0 (0 = no latent)")  # nz
    # mlp: G and D ((): no hidden layer)
    hidden: tuple[int, ...] = each_at_least(1, (512, 512, 512), "out of range", empty=True)
    t_emb_dim: int = at_least(0, 16)  # mlp: sinusoidal features of the step (0: raw index)
    nf: int = at_least(1, 128)  # ncsnpp G: initial channels
    ch_mult: tuple[int, ...] = each_at_least(1, (1, 2, 2, 2), "need >= 1")
    num_res_blocks: int = at_least(1, 2)
    attn_resolutions: tuple[int, ...] = (16,)
    z_emb_dim: int = at_least(1, 256)  # mapping network width
    n_mlp: int = at_least(0, 4)  # mapping layers after the first
    dropout: float = checked(0.0, lambda v: 0 <= v < 1, "must be in [0, 1)")
    # ncsnpp D: a layout of DISCRIMINATOR_CONFIGS (32² or 256²)
    disc: str = one_of(DISCRIMINATOR_CONFIGS, "cifar10")
    disc_ngf: int = at_least(0, 0, "must be >= 0 (0 = the layout's)")  # 0: 64 (Fashion: 32)


@dataclasses.dataclass(frozen=True)
class Method(Section):
    diffusion_steps: int = at_least(1, 4, "must be >= 1 (T)")  # T: trained for and sampled
    beta_min: float = positive(0.1)
    beta_max: float = 20.0
    offset: float = checked(1e-3, lambda v: 0 <= v < 1, "must be in [0, 1)")  # code's ε
    parameterisation: str = one_of(PARAMETERISATIONS, "x0")
    loss: str = one_of(GAN_LOSS_KINDS, "nonsaturating")
    r1_gamma: float = at_least(0, 0.02, "must be >= 0 (0 = no R1)")
    lazy_reg: int = at_least(1, 15, "must be >= 1 (R1 every this many steps)")
    r1_scale_by_interval: bool = False  # StyleGAN2's convention; the public code does not
    redraw_for_g: bool = True
    # A >= 2: the one-shot GAN with diffusion augmentation (Table 6.2's baseline; T must be 1);
    # 0: off. docs/methods/ddgan.md §7
    one_shot_aug_steps: int = 0
    # the diffusion runs on x / data_scale and samples are scaled back: the VP schedule assumes
    # data of about unit scale (docs/methods/ddgan.md §2); 1 for images in [-1, 1]
    data_scale: float = positive(1.0, "must be > 0 (1 = the data as they are)")

    def cross_checks(self):
        one_shot = self.one_shot_aug_steps
        rules = {
            "beta_max": (self.beta_max >= self.beta_min, "must be >= beta_min"),
            "one_shot_aug_steps": (
                one_shot == 0 or (one_shot >= 2 and self.diffusion_steps == 1),
                "must be 0 (off) or >= 2 with diffusion_steps=1 (the one-shot GAN)",
            ),
            "parameterisation": (
                not one_shot or self.parameterisation == "x0",
                "the one-shot GAN's G outputs an image: needs parameterisation='x0'",
            ),
        }
        validate(self, rules)


Sample = NoSettings  # DDGAN's sampler length is the model's T


@dataclasses.dataclass(frozen=True)
class Optims:
    """CIFAR-10 README rates: D 1.25e-4, G 1.6e-4, Adam (0.5, 0.9), EMA on G only. The configs add
    the cosine decay to 1e-5 over the run (`decay="cosine"`, `min_lr_ratio`)."""

    gen: Optim = Optim(lr=1.6e-4, b1=0.5, b2=0.9, ema_rate=0.9999)
    disc: Optim = Optim(lr=1.25e-4, b1=0.5, b2=0.9, ema_rate=0.0)


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
    nfe="generator passes (T)",
)


@struct.dataclass
class State:
    step: jax.Array
    key: jax.Array
    gen: ModelState
    disc: ModelState
    example_shape: tuple = example_shape_field()


def schedule(config: Config) -> VPSchedule:
    m = config.method
    return vp_schedule(m.diffusion_steps, beta_min=m.beta_min, beta_max=m.beta_max, offset=m.offset)


def networks(config: Config, example_shape: tuple) -> tuple[nn.Module, nn.Module]:
    """(G, D) for examples of `example_shape` (`(D,)` points or `(H, W, C)` images)."""
    m = config.model
    if m.network == "mlp":
        gen = MLPGenerator(tuple(m.hidden), m.latent_dim, m.t_emb_dim, example_shape[-1])
        return gen, MLPDiscriminator(tuple(m.hidden), m.t_emb_dim)
    gen = NCSNppGenerator(**module_kwargs(m, NCSNppGenerator, out_channels=example_shape[-1]))
    layout = dict(DISCRIMINATOR_CONFIGS[m.disc])
    if m.disc_ngf:
        layout["ngf"] = m.disc_ngf
    return gen, TimeConditionalDiscriminator(**layout)


def _check_example(shape: tuple, config: Config, who: str) -> None:
    m = config.model
    check_network_input(shape, m.network, who, flat=("mlp",), images=("ncsnpp",))
    if m.network == "ncsnpp":
        check_image_size(shape, tuple(m.ch_mult), tuple(m.attn_resolutions), who)


def init(config: Config, example_batch, *, key) -> State:
    """Fresh state for batches like `example_batch` `{"x": [B, ...]}` (2-D points `[B, D]` or
    images `[B, H, W, C]` in [-1, 1])."""
    x = check_batch(example_batch, "ddgan.init")
    shape = tuple(x.shape[1:])
    _check_example(shape, config, "ddgan.init")
    check_inputs(example_batch, image=len(shape) == 3, who="ddgan.init")
    k_g, k_d, k_state = jax.random.split(key, 3)
    gen, disc = networks(config, shape)
    x1 = jnp.zeros((1, *shape), jnp.float32)
    t1, z1 = jnp.zeros((1,), jnp.int32), jnp.zeros((1, config.model.latent_dim), jnp.float32)
    g_params, d_params = init_params(gen, k_g, x1, t1, z1), init_params(disc, k_d, x1, x1, t1)
    g_state = model_state(g_params, config.optim.gen)
    d_state = model_state(d_params, config.optim.disc)
    return State(jnp.zeros((), jnp.int32), k_state, g_state, d_state, shape)


def denoise(g_params, x_t, z, t, *, config: Config, sched: VPSchedule):
    """G's output for x_t at steps `t` `[B]` (1..T): x̂₀ (x0, or from ε by eq. 3.3 for eps), or
    x_{t−1} itself for direct."""
    gen, _ = networks(config, x_t.shape[1:])
    out = gen.apply({"params": g_params}, x_t, t - 1, z)
    return eps_to_x0(sched, x_t, out, t) if config.method.parameterisation == "eps" else out


def generate_prev(g_params, x_t, t, z, *, config: Config, sched: VPSchedule, noise):
    """The generator's x'_{t−1} `[B, ...]` for x_t at steps `t` `[B]` (1..T): the posterior
    sample around x̂₀ (x0 / eps) or G's output itself (direct)."""
    out = denoise(g_params, x_t, z, t, config=config, sched=sched)
    if config.method.parameterisation == "direct":
        return out
    return posterior_sample(sched, out, x_t, t, noise)


def _draw(key, x0, config: Config, sched: VPSchedule) -> dict:
    """One D (or G) step's draws: G's inputs (`x_t`, `t` `[B]`, `z`, posterior `noise`) and D's
    real input `real` with its conditioning `cond` and step index `d_step` `[B]`.

    DDGAN: t ~ U{1..T}, the real pair (x_{t−1}, x_t); D sees (x_{t−1}, x_t, t − 1). The one-shot
    GAN: x_1 ~ N(0, I) into G; real and fake both diffused to s ~ U{1..A−1} of an A-step
    process (never clean, never the last step), D sees (x_s, 0, s)."""
    k_t, k_pair, k_z, k_noise = jax.random.split(key, 4)
    b, m = x0.shape[0], config.method
    z = batch_normal(k_z, (b, config.model.latent_dim))
    noise = batch_normal(k_noise, x0.shape)
    if m.one_shot_aug_steps:
        return dict(z=z, noise=noise, **one_shot_draw(k_t, k_pair, x0, m))
    t = batch_draw(jax.random.randint, k_t, (b,), minval=1, maxval=m.diffusion_steps + 1)
    x_prev, x_t = (shard_over_batch(a) for a in q_pair(sched, x0, t, k_pair))
    return dict(t=t, x_t=x_t, z=z, noise=noise, real=x_prev, cond=x_t, d_step=t - 1)


def _fake(g_params, draw: dict, *, config: Config, sched: VPSchedule):
    """D's fake input `[B, ...]`: x'_{t−1} of G (DDGAN), or G's one-shot image diffused to the
    draw's step s with the posterior noise (differentiably, for the G step)."""
    fake = generate_prev(
        g_params, draw["x_t"], draw["t"], draw["z"], config=config, sched=sched, noise=draw["noise"]
    )
    return augment(fake, draw, config.method) if config.method.one_shot_aug_steps else fake


def _logit_fn(d_params, draw: dict, config: Config):
    _, disc = networks(config, draw["real"].shape[1:])
    return lambda x: disc.apply({"params": d_params}, x, draw["cond"], draw["d_step"])


def _disc_loss(d_params, state: State, draw: dict, *, config: Config, sched):
    logits = _logit_fn(d_params, draw, config)
    fake = jax.lax.stop_gradient(_fake(state.gen.params, draw, config=config, sched=sched))
    d_loss, _ = gan_losses(config.method.loss)
    real_logits, fake_logits = logits(draw["real"]), logits(fake)
    stats = {
        "d_real": jax.nn.sigmoid(real_logits).mean(),
        "d_fake": jax.nn.sigmoid(fake_logits).mean(),
    }
    return jnp.mean(d_loss(real_logits, fake_logits)), stats


def _r1_loss(d_params, draw: dict, *, config: Config):
    """γ/2 · R1 on D's real input (x_{t−1}, not x_t; eq. 4.3), as added on a regularised step."""
    m = config.method
    penalty = jnp.mean(r1_penalty(_logit_fn(d_params, draw, config), draw["real"]))
    return r1_term(
        penalty,
        gamma=m.r1_gamma,
        step=0,
        interval=m.lazy_reg,
        scale_by_interval=m.r1_scale_by_interval,
    )


def _disc_grad(state: State, draw, *, config: Config, sched):
    """D's gradient, loss and stats: the adversarial part on every step, R1's on every
    `lazy_reg`-th. Only R1's gradient sits under `lax.cond`: with the whole D gradient in both
    branches, XLA's CPU compiler took over 18 minutes on the Fashion-MNIST step (92 s without)."""
    params, m = state.disc.params, config.method
    (loss_d, stats), g_d = jax.value_and_grad(_disc_loss, has_aux=True)(
        params, state, draw, config=config, sched=sched
    )
    r1_grad = jax.value_and_grad(partial(_r1_loss, draw=draw, config=config))
    zero = lambda p: (jnp.zeros(()), jax.tree_util.tree_map(jnp.zeros_like, p))
    if m.r1_gamma == 0:
        r1, g_r1 = zero(params)
    elif m.lazy_reg == 1:
        r1, g_r1 = r1_grad(params)
    else:
        r1, g_r1 = jax.lax.cond(state.step % m.lazy_reg == 0, r1_grad, zero, params)
    g_d = jax.tree_util.tree_map(jnp.add, g_d, g_r1)
    return g_d, loss_d, {"loss_r1": r1, **stats}


def _gen_loss(g_params, d_params, draw: dict, *, config: Config, sched):
    fake = _fake(g_params, draw, config=config, sched=sched)
    _, g_loss = gan_losses(config.method.loss)
    return jnp.mean(g_loss(_logit_fn(d_params, draw, config)(fake)))


def train_step(state: State, batch, *, config: Config):
    """A D step then a G step on `batch["x"]` `[B, ...]` (docs/methods/ddgan.md §4)."""
    x0 = check_state_batch(batch, state, "ddgan.train_step").astype(jnp.float32)
    x0 = x0 / config.method.data_scale
    sched, m = schedule(config), config.method
    k_d, k_g = jax.random.split(jax.random.fold_in(state.key, state.step))
    draw_d = _draw(k_d, x0, config, sched)
    g_d, loss_d, d_stats = _disc_grad(state, draw_d, config=config, sched=sched)
    disc, gnorm_d = state.disc.apply_gradients(g_d, step=state.step)
    draw_g = _draw(k_g, x0, config, sched) if m.redraw_for_g else draw_d
    loss_g, g_g = jax.value_and_grad(_gen_loss)(
        state.gen.params, disc.params, draw_g, config=config, sched=sched
    )
    gen, gnorm_g = state.gen.apply_gradients(g_g, step=state.step)
    metrics = {
        "loss_d": loss_d,
        "loss_g": loss_g,
        **d_stats,
        "grad_norm_disc": gnorm_d,
        "grad_norm_gen": gnorm_g,
    }
    return state.replace(step=state.step + 1, gen=gen, disc=disc), metrics


def sample(state: State, num: int, *, config: Config, key, shape=None, use_ema=True):
    """`num` samples `[num, ...]` by the T-step chain from x_T ~ N(0, I) with the (EMA)
    generator; stats `nfe` `[num]` (= T). `shape`: `state.example_shape` (the default;
    checked)."""
    num = check_count(num, "ddgan.sample")
    shape = sample_shape(state, shape, "ddgan.sample")
    sched = schedule(config)
    k_T, k_chain = jax.random.split(key)
    x_T = batch_normal(k_T, (num, *shape))
    params = state.gen.eval_params(use_ema)

    def denoiser(x_t, z, t):  # the chain draws z per step: split it over the batch devices
        return denoise(params, x_t, shard_over_batch(z), t, config=config, sched=sched)

    direct = config.method.parameterisation == "direct"  # G outputs x_{t−1}: no posterior
    x, stats = ddgan_chain(
        denoiser, sched, x_T, k_chain, latent_dim=config.model.latent_dim, posterior=not direct
    )
    return x * config.method.data_scale, stats

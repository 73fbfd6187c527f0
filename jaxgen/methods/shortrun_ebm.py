"""Short-run EBMs as generators (thesis ch. 5; docs/methods/shortrun_ebm.md): an energy E_θ whose
K-step sampling dynamics from N(0, I) are the model's generator.

Dynamics (`method.sampler`):

    euler   x_{k+1} = x_k − step ∇E(x_k) + noise_std ω_k     eq. 1.3 / 1.8 (noise_std = 0)
    ode     dx/dt = −∇E(x) on [0, t_end], dopri5              eq. 1.5 (2-D)

Objectives (`method.objective`): `ebm`, the contrastive loss with stop-gradient negatives
(eq. 1.1), plus the generator loss E_{sg(θ)}(G_θ(x₀)) through the unrolled dynamics with
`method.generator_loss` (eq. 1.14, one batch of negatives); `max_likelihood`, −log p(x) of the
noise-free ODE flow by the instantaneous change of variables (eq. 1.7).

Sampling runs the training dynamics (T is part of the model). Extras: `energy` (−E, higher = more
in-distribution), `log_density` (the ODE flow's exact log p), `interpolate` (ρ-interpolation of
the initial noise), `reconstruct` (the x₀ whose dynamics land on x, by gradient descent).
"""

import dataclasses
from functools import partial

import flax.linen as nn
import jax
import jax.numpy as jnp
from flax import struct

from jaxgen.methods.common import (
    Capabilities,
    Optim,
    Section,
    at_least,
    batch_draw,
    batch_normal,
    check_batch,
    check_count,
    check_inputs,
    check_state_batch,
    each_at_least,
    example_shape_field,
    in_unit_interval,
    init_params,
    model_state,
    one_of,
    positive,
    sample_shape,
    validate,
)
from jaxgen.nn import ScalarMLP
from jaxgen.nn.conv_energy import ConvEnergy, check_image_size
from jaxgen.objectives.ebm import shortrun_ebm_loss
from jaxgen.optim import ModelState, adam_minimise
from jaxgen.samplers import solve_adaptive
from jaxgen.samplers.interpolation import rho_path
from jaxgen.samplers.langevin import langevin
from jaxgen.samplers.likelihood import ADAPTIVE, FIXED, PROBES, TRACES, flow_log_likelihood
from jaxgen.samplers.ode import DT_MIN


@dataclasses.dataclass(frozen=True)
class Model(Section):
    """The energy: "mlp" (2-D: 5 dense layers of 256, Swish) or "conv" (Table 5.2)."""

    network: str = one_of(("mlp", "conv"), "mlp")
    # mlp: 4 hidden layers + the output layer
    hidden: tuple[int, ...] = each_at_least(1, (256,) * 4, "out of range", empty=True)
    nf: int = at_least(1, 32)  # conv: 32 (MNIST, Fashion-MNIST, CelebA), 64 (CIFAR-10)
    widths: tuple[int, ...] = each_at_least(1, (2, 2, 2))  # conv: stride-2 convs' widths / nf


@dataclasses.dataclass(frozen=True)
class Method(Section):
    """Spec §1.6: K = 40 (Fashion-MNIST) / 60, step 0.1 as the coefficient on ∇E (the thesis's
    "step size 0.1" may also mean η = 0.1, i.e. step 0.05: docs/methods/shortrun_ebm.md §4),
    noise 0.1 for the noisy baseline, 0 for noise-free."""

    # ebm | max_likelihood (the ODE flow's exact likelihood)
    objective: str = one_of(("ebm", "max_likelihood"), "ebm")
    sampler: str = one_of(("euler", "ode"), "euler")  # euler (K steps) | ode (dopri5, t_end)
    langevin_steps: int = at_least(1, 40, "K must be >= 1")  # K: training and sampling
    step: float = positive(0.1)  # coefficient on ∇E (euler)
    noise_std: float = at_least(0, 0.0, "must be >= 0 (0: noise-free)")  # 0: eq. 1.8
    generator_loss: bool = False  # add E_{sg(θ)}(G_θ(x₀)) (eq. 1.14; euler only)
    checkpoint: bool = False  # jax.checkpoint each unrolled step (generator-loss memory)
    # K steps unrolled in one scan body (XLA:CPU: ~4× faster; same result). Not with
    # `checkpoint`: its saving holds only in the rolled loop (docs/methods/shortrun_ebm.md §2)
    unroll: bool = True
    clip_chains: bool = False  # clamp image chains to [-1, 1] each step (not in ch. 5; note §4)
    alpha: float = at_least(0, 0.0)  # energy-magnitude penalty (off for ch. 5)
    persistent: bool = False  # chains carried across steps (ch. 5: fresh every step)
    reset_prob: float = in_unit_interval(0.05)  # persistent: chance a chain restarts
    t_end: float = positive(0.2)  # ode: the flow's horizon (euler's: K·step, `flow_time`)
    rtol: float = positive(1e-5, "out of range")  # ode and likelihood
    atol: float = positive(1e-5, "out of range")
    trace: str = one_of(TRACES, "exact")  # max_likelihood: exact | hutchinson
    num_probes: int = at_least(1, 1, "the Hutchinson probe count must be >= 1")
    # max_likelihood: the training solve; dopri5 (rtol, atol) or euler / rk4 with ml_steps
    ml_solver: str = one_of((*ADAPTIVE, *FIXED), "dopri5")
    ml_steps: int = at_least(1, 4)

    def cross_checks(self):
        rules = {
            "generator_loss": (
                not self.generator_loss or self.sampler == "euler",
                "the generator loss unrolls the euler dynamics (sampler='euler')",
            ),
            "clip_chains": (
                not self.clip_chains or self.sampler == "euler",
                "clipping applies to the euler steps (sampler='euler')",
            ),
            "persistent": (
                not self.persistent or self.objective == "ebm",
                "persistent chains are negatives of the ebm objective",
            ),
            "objective": (
                self.objective == "ebm" or (self.sampler == "ode" and not self.generator_loss),
                "max_likelihood trains the ODE flow (sampler='ode', no generator_loss)",
            ),
            "noise_std": (  # the ODE has no noise term
                self.sampler != "ode" or self.noise_std == 0,
                "sampler='ode' is noise-free; use 0",
            ),
        }
        validate(self, rules)


@dataclasses.dataclass(frozen=True)
class Sample(Section):
    """The `log_density` extra and the reconstruction by optimisation of x₀."""

    trace: str = one_of(TRACES, "exact")  # log_density: exact | hutchinson
    num_probes: int = at_least(1, 16, "the Hutchinson probe count must be >= 1")
    probe: str = one_of(PROBES, "rademacher")
    reconstruct_steps: int = at_least(1, 200)  # Adam steps on x₀
    reconstruct_lr: float = positive(0.05)


@dataclasses.dataclass(frozen=True)
class Optims:
    energy: Optim = Optim(lr=5e-4, ema_rate=0.0)  # spec §1.6 (2-D: 1e-3); β unstated


@dataclasses.dataclass(frozen=True)
class Config:
    model: Model = Model()
    method: Method = Method()
    optim: Optims = Optims()
    sample: Sample = Sample()


def noise_free(config: Config) -> bool:
    """Whether the model is a flow (noise-free dynamics) whose density `log_density` gives."""
    return config.method.noise_std == 0


CAPABILITIES = Capabilities(
    networks=("energy",),
    headline=("loss", "e_pos", "e_neg"),
    sampler_stats=("nfe", "success"),
    nfe="energy-gradient evaluations",
    solver_ok="success",
    energy_label="−E(x)",
    extras=("energy", "log_density", "interpolate", "reconstruct"),
    batch_state=("chains",),
    log_density_normalised=noise_free,
)


@struct.dataclass
class State:
    step: jax.Array
    key: jax.Array
    energy: ModelState
    chains: dict  # persistent: {"x": [B, ...]}; {} with fresh chains
    example_shape: tuple = example_shape_field()


def make_network(config: Config) -> nn.Module:
    """The energy network: `[B, ...] -> [B]`."""
    m = config.model
    if m.network == "conv":
        return ConvEnergy(nf=m.nf, widths=tuple(m.widths))
    return ScalarMLP(hidden=tuple(m.hidden), act="silu")


def energy_fn(params, x, *, config: Config):
    """E_θ(x) `[B]` for `x` `[B, ...]`, its matmuls and convolutions at float32 precision (a
    TPU's default bfloat16 passes would blur the K-step gradients; so would their transposes,
    which keep the forward pass's precision)."""
    with jax.default_matmul_precision("float32"):
        return make_network(config).apply({"params": params}, x)


def init(config: Config, example_batch, *, key) -> State:
    """Fresh state for batches like `example_batch` `{"x": [B, ...]}` (2-D points or images
    `[B, H, W, C]` in [-1, 1])."""
    x = check_batch(example_batch, "shortrun_ebm.init")
    if config.model.network == "conv":
        check_image_size(x.shape[1:], config.model.widths, "shortrun_ebm.init")
    check_inputs(example_batch, image=x.ndim == 4, who="shortrun_ebm.init")
    k_init, k_state, k_chains = jax.random.split(key, 3)
    zeros = jnp.zeros((1, *x.shape[1:]), jnp.float32)
    ms = model_state(init_params(make_network(config), k_init, zeros), config.optim.energy)
    chains = {}
    if config.method.persistent:
        chains = {"x": jax.random.normal(k_chains, x.shape, jnp.float32)}
    return State(jnp.zeros((), jnp.int32), k_state, ms, chains, tuple(x.shape[1:]))


def dynamics(params, x0, key, *, config: Config, differentiable: bool = False):
    """The model's generator G_θ(x₀): `(x [B, ...], stats, trace)`; stats `nfe`, `success`
    `[B]` (False where the ODE solver ran out of steps); trace: the euler steps' energy and
    gradient-norm means `[K]` ({} for the ode)."""
    m = config.method
    if not differentiable:  # nothing to differentiate: keep the solver out of the backward pass
        params = jax.lax.stop_gradient(params)
    if m.sampler == "ode":
        f = lambda t, x: velocity(params, x, config=config)
        # DT_MIN: a diverged energy fails the step at once instead of minutes of rejections
        x, stats = solve_adaptive(f, x0, t1=m.t_end, rtol=m.rtol, atol=m.atol, dt_min=DT_MIN)
        x = x if differentiable else jax.lax.stop_gradient(x)
        return x, {k: jnp.full((x0.shape[0],), stats[k]) for k in ("nfe", "success")}, {}
    e = partial(energy_fn, params, config=config)
    kw = dict(num_steps=m.langevin_steps, step=m.step, noise_std=m.noise_std)
    unroll = m.unroll and not (differentiable and m.checkpoint)
    kw.update(differentiable=differentiable, checkpoint=m.checkpoint, unroll=unroll or 1)
    kw["bounds"] = (-1.0, 1.0) if m.clip_chains else None
    x, trace = langevin(e, x0, key, **kw)
    b = x0.shape[0]
    return x, {"nfe": jnp.full((b,), m.langevin_steps), "success": jnp.ones((b,), bool)}, trace


def velocity(params, x, *, config: Config):
    """The sampling flow's velocity −∇ₓE_θ(x) `[B, ...]` (x' = −∇E, eq. 1.8's noise-free
    limit; VAPO's `velocity` is likewise the field its particles follow, +∇Φ)."""
    return -jax.grad(lambda z: jnp.sum(energy_fn(params, z, config=config)))(x)


def flow_time(config: Config) -> float:
    """The horizon of the ODE flow x' = −∇E whose density is the model's: t_end, or K·step,
    the time the euler steps approximate."""
    m = config.method
    return m.t_end if m.sampler == "ode" else m.langevin_steps * m.step


def log_likelihood(params, x, key, *, config: Config, solver: str = "dopri5", **kw):
    """log p(x) `[B]` of the ODE flow over [0, `flow_time`] from N(0, I) (eq. 1.7); `kw`:
    `trace`, `num_probes`, `probe`, `num_steps` of `flow_log_likelihood`."""
    m = config.method
    v = lambda t, z: velocity(params, z, config=config)
    t1 = flow_time(config)
    return flow_log_likelihood(v, x, t1=t1, key=key, solver=solver, rtol=m.rtol, atol=m.atol, **kw)


def _negatives(state: State, params, x, key, config: Config):
    """x₀ and the negatives of this step, and the chains to keep."""
    k_x0, k_reset, k_dyn = jax.random.split(key, 3)
    fresh = batch_normal(k_x0, x.shape)
    x0, chains = fresh, state.chains
    if config.method.persistent:
        p = config.method.reset_prob
        reset = batch_draw(jax.random.bernoulli, k_reset, (x.shape[0],), p=p)
        x0 = jnp.where(reset.reshape((-1,) + (1,) * (x.ndim - 1)), fresh, chains["x"])
    differentiable = config.method.generator_loss
    x_neg, stats, trace = dynamics(params, x0, k_dyn, config=config, differentiable=differentiable)
    if config.method.persistent:
        chains = {"x": jax.lax.stop_gradient(x_neg)}
    return x_neg, chains, stats, trace


def loss_fn(params, state: State, x, key, *, config: Config):
    """The objective on data `x` `[B, ...]`: `(loss, (chains to keep, metrics))`."""
    m = config.method
    if m.objective == "max_likelihood":
        kw = dict(trace=m.trace, num_probes=m.num_probes, num_steps=m.ml_steps)
        lp, stats = log_likelihood(params, x, key, config=config, solver=m.ml_solver, **kw)
        loss = -jnp.mean(lp)
        metrics = {"loss": loss, "nll": loss, "nfe": jnp.mean(stats["nfe"])}
        return loss, (state.chains, {**metrics, "solver_ok": jnp.mean(stats["success"])})
    x_neg, chains, stats, trace = _negatives(state, params, x, key, config)
    e = partial(energy_fn, config=config)
    loss, metrics = shortrun_ebm_loss(
        e, params, x, x_neg, use_generator_loss=m.generator_loss, alpha=m.alpha
    )
    if trace:  # ‖∇ₓE‖ at the start of the last step
        metrics["x_grad_norm_last_step"] = trace["grad_norm"][-1]
    return loss, (chains, {**metrics, "solver_ok": jnp.mean(stats["success"])})


def train_step(state: State, batch, *, config: Config):
    """One Adam step of the energy on `batch["x"]` `[B, ...]`."""
    rows = state.chains["x"].shape[0] if state.chains else None  # persistent: B chains
    check_state_batch(batch, state, "shortrun_ebm.train_step", batch_size=rows)
    key = jax.random.fold_in(state.key, state.step)
    grads, (chains, metrics) = jax.grad(loss_fn, has_aux=True)(
        state.energy.params, state, batch["x"].astype(jnp.float32), key, config=config
    )
    ms, gnorm = state.energy.apply_gradients(grads, step=state.step)
    new = state.replace(step=state.step + 1, energy=ms, chains=chains)
    return new, {**metrics, "grad_norm": gnorm}


def sample(state: State, num: int, *, config: Config, key, shape=None, use_ema=True):
    """`num` samples `[num, ...]`: x₀ ~ N(0, I), then the training dynamics; stats `nfe`,
    `success` `[num]`. `shape`: `state.example_shape` (the default; checked)."""
    num = check_count(num, "shortrun_ebm.sample")
    shape = sample_shape(state, shape, "shortrun_ebm.sample")
    k0, k_dyn = jax.random.split(key)
    x0 = batch_normal(k0, (num, *shape))
    return dynamics(state.energy.eval_params(use_ema), x0, k_dyn, config=config)[:2]


def energy(state: State, x, *, config: Config, use_ema: bool = True):
    """−E(x) `[B]` (higher = more in-distribution) for data `x` `[B, ...]`."""
    return -energy_fn(state.energy.eval_params(use_ema), x, config=config)


def log_density(state: State, x, *, config: Config, use_ema: bool = True, key=None):
    """The model's log-density `[B]` at `x` `[B, ...]`. Noise-free dynamics: the ODE flow's
    normalised log p (eq. 1.7, per `config.sample`), NaN where the solver ran out of steps.
    Noisy dynamics have no flow density: −E, unnormalised (the thesis's Fig. 5.4 normalises
    e^{−E} on a grid). `key` draws Hutchinson's probes (`sample.trace="hutchinson"`: required);
    the exact trace uses none."""
    params = state.energy.eval_params(use_ema)
    if not noise_free(config):
        return energy(state, x, config=config, use_ema=use_ema)
    s = config.sample
    kw = dict(trace=s.trace, num_probes=s.num_probes, probe=s.probe)
    lp, stats = log_likelihood(params, x, key, config=config, **kw)
    return jnp.where(stats["success"], lp, jnp.nan)


def interpolate(state: State, num: int, *, config: Config, key, shape=None, use_ema=True):
    """ρ-interpolation of the initial noise (spec §1.2): x₀(ρ) = ρ z₁ + √(1 − ρ²) z₂ for ρ
    from 0 to 1 in `num` steps, each run through the dynamics: `([num, ...], {"nfe"})`."""
    num = check_count(num, "shortrun_ebm.interpolate")
    shape = sample_shape(state, shape, "shortrun_ebm.interpolate")
    k1, k2, k_dyn = jax.random.split(key, 3)
    z1, z2 = (jax.random.normal(k, shape, jnp.float32) for k in (k1, k2))
    x0 = rho_path(z1, z2, num)
    return dynamics(state.energy.eval_params(use_ema), x0, k_dyn, config=config)[:2]


def reconstruct(state: State, x, *, config: Config, use_ema: bool = True):
    """G(x₀*) `[B, ...]` with x₀* = argmin ‖G(x₀) − x‖² by Adam through the dynamics from
    x₀ = 0 (spec §1.2; noise-free: the noise is held at zero)."""
    check_state_batch({"x": x}, state, "shortrun_ebm.reconstruct")
    params, s = state.energy.eval_params(use_ema), config.sample
    cfg = dataclasses.replace(config, method=dataclasses.replace(config.method, noise_std=0.0))
    gen = lambda z: dynamics(params, z, jax.random.PRNGKey(0), config=cfg, differentiable=True)[0]
    loss = lambda z: jnp.sum((gen(z) - x) ** 2)
    z0 = jnp.zeros_like(x, jnp.float32)
    return gen(adam_minimise(loss, z0, lr=s.reconstruct_lr, steps=s.reconstruct_steps))

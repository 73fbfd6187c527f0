"""VAPO recipe (Loo et al. 2024; docs/methods/vapo.md): a static potential Φ trained by the
energy loss of paper eqs. (20)-(21), sampled by the potential-flow ODE dx/dt = +∇Φ(x) from
N(0, σ0² I) over [0, T] (paper eq. 12).

Recipe contract: `Config`, `init`, `train_step`, `sample`, `CAPABILITIES`, plus `potential`,
`velocity`, `energy` and `interpolate`.
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
    batch_normal,
    check_batch,
    check_count,
    check_inputs,
    check_network_input,
    check_state_batch,
    example_shape_field,
    model_state,
    module_kwargs,
    one_of,
    positive,
    sample_shape,
)
from jaxgen.nn import ScalarMLP
from jaxgen.nn.energy import EnergyResNet
from jaxgen.nn.mlp import ACTIVATIONS
from jaxgen.objectives.vapo import homotopy_schedule, perturb, potential_flow_loss
from jaxgen.optim import ModelState
from jaxgen.samplers import solve_adaptive, solve_adaptive_per_sample, solve_fixed
from jaxgen.samplers.interpolation import slerp

SOLVERS = ("dopri5", "tsit5", "euler", "heun", "rk4")  # adaptive, then fixed-step


@dataclasses.dataclass(frozen=True)
class Model(Section):
    """The potential network Φ: "mlp" (2-D / flat data) or "resnet" (the DRL energy ResNet of
    docs/methods/vapo.md §4, images)."""

    network: str = one_of(("mlp", "resnet"), "mlp")
    hidden: tuple[int, ...] = (128, 128, 128)  # mlp
    act: str = one_of(ACTIVATIONS, "gelu")  # mlp
    channels: int = at_least(0, 0)  # image channels the network is built for (0: not checked)
    ch: int = at_least(1, 128)  # resnet: base width
    ch_mult: tuple[int, ...] = (1, 2, 2, 2)  # resnet: width multiplier per resolution
    num_res_blocks: int = at_least(1, 8)  # resnet: blocks per resolution
    zero_init_scale: float = 1e-3  # resnet: initial scale of each block's second conv
    residual_scale: float = 1.0  # resnet: NVAE-style residual-branch scaling (1 = off)
    # resnet: run the layers on this many batch slices, which XLA's CPU runtime executes
    # concurrently (one conv kernel uses one core); 2 on a 2-core CPU, 1 on accelerators
    batch_splits: int = at_least(1, 1)
    data_init: bool = False  # resnet: data-dependent weight-norm init from the first batch


@dataclasses.dataclass(frozen=True)
class Method(Section):
    """The paper's constants σ0 = 1, σ = 0.01, ε = 1e-4 = σ²/σ0², λ = 1e-4."""

    sigma0: float = positive(1.0)
    sigma: float = positive(0.01)
    eps: float = positive(1e-4)
    lam: float = at_least(0, 1e-4)
    jacobian: bool = True  # False: variant B, no τ'(t) factor (docs/methods/vapo.md §2)
    loss_per_dim: bool = False  # divide the loss by D (a global scale)
    # w (Φ(x) − Φ(m x̄)) in place of w Φ(x): same expected loss and gradient, less noise
    # (not in the paper; docs/methods/vapo.md eq. (10a)); one more forward pass per step
    control_variate: bool = False


@dataclasses.dataclass(frozen=True)
class Sample(Section):
    """The ODE dx/dt = ∇Φ(x) from N(0, σ0² I) over [0, T]."""

    t_end: float = positive(1.0)  # terminal time T
    solver: str = one_of(SOLVERS, "dopri5")  # dopri5, tsit5 (adaptive); euler, heun, rk4
    rtol: float = positive(1e-3)
    atol: float = positive(1e-3)
    num_steps: int = at_least(1, 100)  # N, the fixed-step solvers' steps (euler, heun, rk4)
    per_sample: bool = False  # one step-size controller per sample instead of per batch
    max_steps: int = at_least(1, 4096)


@dataclasses.dataclass(frozen=True)
class Optims:
    potential: Optim = Optim(lr=1e-3, ema_rate=0.999)


@dataclasses.dataclass(frozen=True)
class Config:
    """VAPO hyper-parameters; 2-D defaults (docs/methods/vapo.md §3)."""

    model: Model = Model()
    method: Method = Method()
    optim: Optims = Optims()
    sample: Sample = Sample()


CAPABILITIES = Capabilities(
    networks=("potential",),
    headline=("loss",),
    sampler_stats=("nfe", "success"),
    nfe="evaluations of the vector field ∇Φ",
    solver_ok="success",
    energy_label="Φ(x)",
    extras=("energy", "interpolate"),
)


@struct.dataclass
class State:
    step: jax.Array
    key: jax.Array
    potential: ModelState
    example_shape: tuple = example_shape_field()


def make_network(config: Config) -> nn.Module:
    """The potential network Φ: `[B, ...] -> [B]`."""
    m = config.model
    if m.network == "resnet":
        return EnergyResNet(**module_kwargs(m, EnergyResNet))
    return ScalarMLP(hidden=tuple(m.hidden), act=m.act)


def check_example_batch(example_batch, config: Config) -> None:
    """`init`'s checks of `{"x": [B, ...]}`: a non-empty floating batch the network can take
    (the resnet: images `[B, H, W, C]` with C = `model.channels`), and on the host its values
    (finite; images in [-1, 1]). One clear `ValueError`."""
    x, m = check_batch(example_batch, "vapo.init"), config.model
    check_network_input(x.shape[1:], m.network, "vapo.init", images=("resnet",))
    if m.network == "resnet":
        if m.channels and x.shape[-1] != m.channels:
            raise ValueError(
                f"vapo.init: images have {x.shape[-1]} channels but the config is built for "
                f"model.channels={m.channels}"
            )
    check_inputs(example_batch, image=x.ndim == 4, who="vapo.init")


def init(config: Config, example_batch, *, key) -> State:
    """Fresh state; `example_batch` is a data batch `{"x": [B, ...]}` (only its shape is used,
    and its values with `model.data_init`), checked by `check_example_batch`."""
    check_example_batch(example_batch, config)
    k_init, k_state = jax.random.split(key)
    x = jnp.zeros((1, *example_batch["x"].shape[1:]), jnp.float32)
    if config.model.data_init:  # the initial weight-norm scales come from this batch
        x = jnp.asarray(example_batch["x"], jnp.float32)
    # under jit: one compile, not one per eager op (the Fashion-MNIST net's eager init compiled
    # ~60 programs, 6 s of its 2-step smoke run); the same threefry draws either way
    params = jax.jit(make_network(config).init)(k_init, x)["params"]
    ms = model_state(params, config.optim.potential)
    return State(jnp.zeros((), jnp.int32), k_state, ms, tuple(example_batch["x"].shape[1:]))


def potential(params, x, *, config: Config):
    """Φ(x) `[B]` for `x` `[B, ...]` (higher = more in-distribution; docs/methods/vapo.md §5)."""
    return make_network(config).apply({"params": params}, x)


def velocity(params, x, *, config: Config):
    """∇ₓΦ(x), the flow's velocity, `[B, ...]`."""
    return jax.grad(lambda z: jnp.sum(potential(params, z, config=config)))(x)


def loss_fn(params, xbar, key, *, config: Config, t=None):
    """Batch mean of the paper's eq. (20) terms and the per-batch diagnostics; `t` `[B]` fixes
    each example's homotopy time (default: uniform draws, as in training)."""
    b, m = xbar.shape[0], config.method
    k_t, k_xi = jax.random.split(key)
    t = jax.random.uniform(k_t, (b,)) if t is None else jnp.broadcast_to(t, (b,))
    kw = dict(sigma0=m.sigma0, sigma=m.sigma, eps=m.eps, jacobian=m.jacobian)
    x, w = jax.vmap(partial(perturb, **kw))(xbar, t, jax.random.split(k_xi, b))
    phi_fn = partial(potential, params, config=config)
    baseline = None
    if m.control_variate:  # Φ at the path's mean m x̄, which does not depend on ξ
        mean = homotopy_schedule(t, sigma0=m.sigma0, sigma=m.sigma, eps=m.eps).mean
        baseline = phi_fn(mean.reshape((b,) + (1,) * (xbar.ndim - 1)) * xbar)
    terms, phi, grad_sq = potential_flow_loss(phi_fn, x, w, lam=m.lam, baseline=baseline)
    scale = 1.0 / xbar[0].size if m.loss_per_dim else 1.0
    loss = scale * jnp.mean(terms)
    return loss, {"loss": loss, "phi_mean": jnp.mean(phi), "grad_sq": jnp.mean(grad_sq)}


def train_step(state: State, batch, *, config: Config):
    """One optimizer step on `batch["x"]` `[B, ...]` (floating, B >= 1, examples of
    `state.example_shape`; checked at trace time, one `ValueError`). Pure and jittable."""
    check_state_batch(batch, state, "vapo.train_step")
    key = jax.random.fold_in(state.key, state.step)
    with jax.default_matmul_precision("float32"):
        grads, metrics = jax.grad(loss_fn, has_aux=True)(
            state.potential.params, batch["x"].astype(jnp.float32), key, config=config
        )
    ms, gnorm = state.potential.apply_gradients(grads, step=state.step)
    return state.replace(step=state.step + 1, potential=ms), {**metrics, "grad_norm": gnorm}


def solve_flow(params, x0, *, config: Config):
    """Integrate dx/dt = ∇Φ(x) from `x0` `[N, ...]` over [0, T]. Returns `(x_T, stats)`."""
    f = lambda t, x: velocity(params, x, config=config)
    s = config.sample
    if s.solver in ("euler", "heun", "rk4"):
        return solve_fixed(f, x0, t1=s.t_end, num_steps=s.num_steps, method=s.solver)
    solve = solve_adaptive_per_sample if s.per_sample else solve_adaptive
    return solve(
        f, x0, t1=s.t_end, rtol=s.rtol, atol=s.atol, solver=s.solver, max_steps=s.max_steps
    )


def sample(state: State, num: int, *, config: Config, key, shape=None, use_ema: bool = True):
    """`num` samples: x(0) ~ N(0, σ0² I), then the ODE to T. `shape`: one example's shape,
    `state.example_shape` (the default; checked). `num`: a positive int, static under `jit`.
    Traced under a mesh (`jaxgen.train.step.make_sharded_sampler`) the samples are split over
    its devices and the batch-shared step-size control reduces across them. Returns
    `(x [num, ...], stats)`."""
    num = check_count(num, "vapo.sample")
    shape = sample_shape(state, shape, "vapo.sample")
    x0 = config.method.sigma0 * batch_normal(key, (num, *shape))
    return solve_flow(state.potential.eval_params(use_ema), x0, config=config)


# Downstream procedures (docs/methods/vapo.md §5)


def interpolate(state: State, num: int, *, config: Config, key, shape=None, use_ema: bool = True):
    """Decode a slerp path between two prior draws: `([num, *shape] images, solver stats)`."""
    num = check_count(num, "vapo.interpolate")
    shape = sample_shape(state, shape, "vapo.interpolate")
    k1, k2 = jax.random.split(key)
    sigma0 = config.method.sigma0
    z1, z2 = (sigma0 * jax.random.normal(k, tuple(shape), jnp.float32) for k in (k1, k2))
    return solve_flow(state.potential.eval_params(use_ema), slerp(z1, z2, num), config=config)


def energy(state: State, x, *, config: Config, use_ema: bool = True):
    """The OOD / histogram score Φ(x) `[B]` for data `x` `[B, ...]` in [-1, 1]
    (docs/methods/vapo.md §5; higher = more in-distribution)."""
    with jax.default_matmul_precision("float32"):
        return potential(state.potential.eval_params(use_ema), x, config=config)

"""VAPO recipe (Loo et al. 2024): a static potential Φ trained by the energy loss (20)-(21),
sampled by the potential-flow ODE dx/dt = +∇Φ(x) from N(0, σ0² I) over [0, T] (eq. 12).

Recipe contract: `Config`, `init`, `train_step`, `sample`, plus `potential` and `velocity`.
"""

import dataclasses
from functools import partial

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from flax import struct

from jaxgen.methods.common import make_tx, validate
from jaxgen.nn import ScalarMLP
from jaxgen.nn.energy import EnergyResNet
from jaxgen.nn.mlp import ACTIVATIONS
from jaxgen.objectives.vapo import perturb, potential_flow_loss
from jaxgen.samplers import solve_adaptive, solve_adaptive_per_sample, solve_fixed
from jaxgen.train.optim import DECAYS, OPTIMIZERS
from jaxgen.train.state import ModelState, apply_gradients, init_model_state


@dataclasses.dataclass(frozen=True)
class Config:
    """VAPO hyper-parameters (spec `vapo.md` §7; 2-D defaults from spec §14)."""

    # model: "mlp" (2-D / flat data) or "resnet" (the DRL energy ResNet of spec §6, images)
    network: str = "mlp"
    hidden: tuple[int, ...] = (128, 128, 128)  # mlp
    act: str = "gelu"  # mlp
    channels: int = 0  # image channels the network is built for (0: not checked)
    ch: int = 128  # resnet: base width
    ch_mult: tuple[int, ...] = (1, 2, 2, 2)  # resnet: width multiplier per resolution
    num_res_blocks: int = 8  # resnet: blocks per resolution
    zero_init_scale: float = 1e-3  # resnet: initial scale of each block's second conv
    residual_scale: float = 1.0  # resnet: NVAE-style residual-branch scaling (1 = off)
    # resnet: run the layers on this many batch slices, which XLA's CPU runtime executes
    # concurrently (one conv kernel uses one core); 2 on a 2-core CPU, 1 on accelerators
    batch_splits: int = 1
    data_init: bool = False  # resnet: data-dependent weight-norm init from the first batch
    # method (paper constants: σ0 = 1, σ = 0.01, ε = 1e-4 = σ²/σ0², λ = 1e-4)
    sigma0: float = 1.0
    sigma: float = 0.01
    eps: float = 1e-4
    lam: float = 1e-4
    jacobian: bool = True  # False = variant B of spec §3.6 (no τ'(t) factor)
    loss_per_dim: bool = False  # divide the loss by D (a global scale, spec §4)
    # optim
    optimizer: str = "adam"
    lr: float = 1e-3
    b1: float = 0.9
    b2: float = 0.999
    weight_decay: float = 0.0
    warmup_steps: int = 0
    decay: str = "constant"
    total_steps: int = 0
    decay_steps: int = 0  # decay="step": multiply the rate by decay_factor every decay_steps
    decay_factor: float = 0.1
    grad_clip: float = 0.0
    ema_rate: float = 0.999
    # sample
    t_end: float = 1.0  # terminal time T of the ODE
    solver: str = "dopri5"  # dopri5, tsit5 (adaptive) or euler, heun, rk4 (fixed step)
    rtol: float = 1e-3
    atol: float = 1e-3
    fixed_steps: int = 100
    per_sample: bool = False  # one step-size controller per sample instead of per batch
    max_steps: int = 4096

    def __post_init__(self):
        checks = {
            "sigma0": self.sigma0 > 0,
            "sigma": self.sigma > 0,
            "eps": self.eps > 0,
            "lam": self.lam >= 0,
            "lr": self.lr > 0,
            "t_end": self.t_end > 0,
            "rtol": self.rtol > 0,
            "atol": self.atol > 0,
            "fixed_steps": self.fixed_steps >= 1,
            "ema_rate": 0 <= self.ema_rate < 1,
            "ch": self.ch >= 1,
            "num_res_blocks": self.num_res_blocks >= 1,
            "channels": self.channels >= 0,
            "batch_splits": self.batch_splits >= 1,
        }
        if self.decay == "step":
            checks["decay_steps"] = self.decay_steps > 0
        choices = {
            "network": ("mlp", "resnet"),
            "act": tuple(ACTIVATIONS),
            "optimizer": OPTIMIZERS,
            "decay": DECAYS,
            "solver": SOLVERS,
        }
        validate(self, checks, choices)


SOLVERS = ("dopri5", "tsit5", "euler", "heun", "rk4")  # adaptive, then fixed-step


@struct.dataclass
class State:
    step: jax.Array
    key: jax.Array
    potential: ModelState


def make_network(config: Config) -> nn.Module:
    """The potential network Φ: `[B, ...] -> [B]`."""
    if config.network == "resnet":
        return EnergyResNet(
            ch=config.ch,
            ch_mult=tuple(config.ch_mult),
            num_res_blocks=config.num_res_blocks,
            zero_init_scale=config.zero_init_scale,
            residual_scale=config.residual_scale,
            batch_splits=config.batch_splits,
            data_init=config.data_init,
        )
    return ScalarMLP(hidden=tuple(config.hidden), act=config.act)


def check_inputs(x, config: Config) -> None:
    """One clear `ValueError` for data the network cannot take: images need `[B, H, W, C]` with
    C = `config.channels` and values in [-1, 1]. Host-side (numpy) check."""
    x = np.asarray(x)
    if config.network == "resnet":
        if x.ndim != 4:
            raise ValueError(f"the resnet potential takes images [B, H, W, C]; got shape {x.shape}")
        if config.channels and x.shape[-1] != config.channels:
            raise ValueError(
                f"images have {x.shape[-1]} channels but the config is built for "
                f"model.channels={config.channels}"
            )
    if x.ndim == 4 and x.size and (np.nanmin(x) < -1.0 - 1e-6 or np.nanmax(x) > 1.0 + 1e-6):
        raise ValueError(
            f"images must be scaled to [-1, 1]; got values in [{np.nanmin(x):.3g}, "
            f"{np.nanmax(x):.3g}]"
        )


def init(config: Config, example_batch, *, key) -> State:
    """Fresh state; `example_batch` is a data batch `{"x": [B, ...]}` (only its shape is used)."""
    check_inputs(example_batch["x"], config)
    k_init, k_state = jax.random.split(key)
    x = jnp.zeros((1, *example_batch["x"].shape[1:]), jnp.float32)
    if config.data_init:  # the initial weight-norm scales come from this batch's statistics
        x = jnp.asarray(example_batch["x"], jnp.float32)
    params = make_network(config).init(k_init, x)["params"]
    return State(jnp.zeros((), jnp.int32), k_state, init_model_state(params, make_tx(config)))


def potential(params, x, *, config: Config):
    """Φ(x) `[B]` for `x` `[B, ...]` (the OOD score of spec §5.3: higher = more in-distribution)."""
    return make_network(config).apply({"params": params}, x)


def velocity(params, x, *, config: Config):
    """∇ₓΦ(x), the flow's velocity, `[B, ...]`."""
    return jax.grad(lambda z: jnp.sum(potential(params, z, config=config)))(x)


def loss_fn(params, xbar, key, *, config: Config):
    """Batch mean of the eq. (20) terms and the per-batch diagnostics."""
    b = xbar.shape[0]
    k_t, k_xi = jax.random.split(key)
    t = jax.random.uniform(k_t, (b,))
    kw = dict(sigma0=config.sigma0, sigma=config.sigma, eps=config.eps, jacobian=config.jacobian)
    x, w = jax.vmap(partial(perturb, **kw))(xbar, t, jax.random.split(k_xi, b))
    terms, phi, grad_sq = potential_flow_loss(
        partial(potential, params, config=config), x, w, lam=config.lam
    )
    scale = 1.0 / xbar[0].size if config.loss_per_dim else 1.0
    loss = scale * jnp.mean(terms)
    return loss, {"loss": loss, "phi_mean": jnp.mean(phi), "grad_sq": jnp.mean(grad_sq)}


def train_step(state: State, batch, *, config: Config):
    """One optimizer step on `batch["x"]` `[B, ...]`. Pure and jittable."""
    key = jax.random.fold_in(state.key, state.step)
    with jax.default_matmul_precision("float32"):
        grads, metrics = jax.grad(loss_fn, has_aux=True)(
            state.potential.params, batch["x"].astype(jnp.float32), key, config=config
        )
    ms, gnorm = apply_gradients(
        state.potential, grads, make_tx(config), step=state.step, ema_rate=config.ema_rate
    )
    return state.replace(step=state.step + 1, potential=ms), {**metrics, "grad_norm": gnorm}


def solve_flow(params, x0, *, config: Config, t_end: float | None = None):
    """Integrate dx/dt = ∇Φ(x) from `x0` `[N, ...]` over [0, T]. Returns `(x_T, stats)`."""
    f = lambda t, x: velocity(params, x, config=config)
    t1 = config.t_end if t_end is None else t_end
    if config.solver in ("euler", "heun", "rk4"):
        return solve_fixed(f, x0, t1=t1, num_steps=config.fixed_steps, method=config.solver)
    solve = solve_adaptive_per_sample if config.per_sample else solve_adaptive
    return solve(
        f,
        x0,
        t1=t1,
        rtol=config.rtol,
        atol=config.atol,
        solver=config.solver,
        max_steps=config.max_steps,
    )


def sample(
    state: State,
    num: int,
    *,
    config: Config,
    key,
    shape=None,
    use_ema: bool = True,
    sharding=None,
):
    """`num` samples: x(0) ~ N(0, σ0² I), then the ODE to T. `shape` is one example's shape
    (the training data's; 2-D by default). `sharding` (e.g. `batch_sharding(mesh)`) splits the
    samples over devices; the batch-shared step-size control then reduces across them.
    Returns `(x [num, ...], stats)`."""
    shape = (2,) if shape is None else tuple(shape)
    params = state.potential.ema_params if use_ema else state.potential.params
    x0 = config.sigma0 * jax.random.normal(key, (num, *shape), jnp.float32)
    if sharding is not None:
        x0 = jax.lax.with_sharding_constraint(x0, sharding)
    return solve_flow(params, x0, config=config)


# Downstream procedures (spec §5.2-§5.4)


def slerp(z1, z2, num: int):
    """Spherical interpolation of two noise draws `[...]` → `[num, ...]` (spec §5.2, Fig. 3):
    unit-vector slerp between z1/‖z1‖ and z2/‖z2‖, scaled by the mean norm (‖z1‖ + ‖z2‖)/2."""
    n1, n2 = jnp.linalg.norm(z1), jnp.linalg.norm(z2)
    u1, u2 = z1 / n1, z2 / n2
    theta = jnp.arccos(jnp.clip(jnp.vdot(u1, u2), -1.0, 1.0))
    alpha = jnp.linspace(0.0, 1.0, num).reshape((num,) + (1,) * z1.ndim)
    path = (jnp.sin((1 - alpha) * theta) * u1 + jnp.sin(alpha * theta) * u2) / jnp.sin(theta)
    return 0.5 * (n1 + n2) * path


def interpolate(state: State, num: int, *, config: Config, key, shape, use_ema: bool = True):
    """Decode a slerp path between two prior draws: `([num, *shape] images, solver stats)`."""
    k1, k2 = jax.random.split(key)
    z1, z2 = (config.sigma0 * jax.random.normal(k, tuple(shape), jnp.float32) for k in (k1, k2))
    params = state.potential.ema_params if use_ema else state.potential.params
    return solve_flow(params, slerp(z1, z2, num), config=config)


def energy(state: State, x, *, config: Config, use_ema: bool = True):
    """The OOD / histogram score Φ(x) `[B]` for data `x` `[B, ...]` in [-1, 1] (spec §5.3-§5.4;
    higher = more in-distribution)."""
    params = state.potential.ema_params if use_ema else state.potential.params
    with jax.default_matmul_precision("float32"):
        return potential(params, x, config=config)

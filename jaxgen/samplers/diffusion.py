"""The VP diffusion schedule, forward process, posterior and sampling chain of DDGAN.

Denoising diffusion GANs (thesis ch. 6; docs/methods/ddgan.md) run a diffusion with a few large
steps, T ≤ 8, and model every reverse step with a generator that predicts a clean sample x̂₀
from (x_t, z, t); the forward posterior q(x_{t−1} | x_t, x₀ = x̂₀) then adds back the noise of
the step (eq. 6.12; docs/methods/ddgan.md §3).

Steps use the thesis's indices t = 0..T: index 0 is the clean data (ᾱ₀ = 1) and t = 1..T are
the noising steps, so the pair for denoising step t is (x_{t−1}, x_t). The public code indexes
the same step by k = t − 1 (its networks embed k ∈ {0..T−1}); a network trained that way is
called here as `G(x_t, z, t - 1)`. Every function is per example: `t` is an int `[B]` array and
`x` any `[B, ...]` array, so a batch sharded over devices stays sharded.

The schedule is built once in float64 on the host and stored as float32 arrays (a pytree, so it
can be passed into `jit`).
"""

import math
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct

DUMMY_BETA0 = 1e-8  # β₀ of the public code; 1 − 1e-8 rounds to 1 in float32, so ᾱ₀ = 1 exactly
LOG_VAR_FLOOR = 1e-20  # the posterior log-variance is log(max(β̃_t, 1e-20)); β̃₁ = 0

Denoiser = Callable  # (x_t [B, ...], z [B, L], t int32 [B]) -> x̂₀ [B, ...]


@struct.dataclass
class VPSchedule:
    """Per-step float32 arrays `[T+1]`, indexed by t = 0..T (docs/methods/ddgan.md §2, §3).

    Index 0 is the clean data: `betas[0]` is a dummy (1e-8, never used), `alphas_bar[0] = 1`, and
    the posterior entries at 0 are placeholders (mean x₀, variance 0).
    """

    betas: jax.Array  # β_t
    alphas_bar: jax.Array  # ᾱ_t = Π_{s≤t} (1 − β_s)
    posterior_coef_x0: jax.Array  # √ᾱ_{t−1} β_t / (1 − ᾱ_t)
    posterior_coef_xt: jax.Array  # √α_t (1 − ᾱ_{t−1}) / (1 − ᾱ_t)
    posterior_var: jax.Array  # β̃_t = (1 − ᾱ_{t−1}) β_t / (1 − ᾱ_t); β̃₁ = 0
    posterior_log_var: jax.Array  # log max(β̃_t, 1e-20)

    @property
    def num_steps(self) -> int:
        """T (static: it is read off the arrays' shape)."""
        return self.betas.shape[0] - 1


def _check_schedule_args(num_steps, beta_min, beta_max, offset) -> None:
    """One `ValueError` line for a bad T, β range or time offset."""
    if isinstance(num_steps, bool) or not isinstance(num_steps, int | np.integer) or num_steps < 1:
        raise ValueError(f"vp_schedule: num_steps (T) must be an int >= 1, got {num_steps!r}")
    if not (math.isfinite(beta_min) and beta_min > 0):
        raise ValueError(f"vp_schedule: beta_min must be finite and > 0, got {beta_min!r}")
    if not (math.isfinite(beta_max) and beta_max >= beta_min):
        raise ValueError(
            f"vp_schedule: beta_max must be finite and >= beta_min={beta_min!r}, got {beta_max!r}"
        )
    if not 0.0 <= offset < 1.0:
        raise ValueError(f"vp_schedule: offset (ε) must be in [0, 1), got {offset!r}")


def vp_schedule(
    num_steps: int, *, beta_min: float = 0.1, beta_max: float = 20.0, offset: float = 0.0
) -> VPSchedule:
    """The T-step schedule read off the VP-SDE (thesis eq. 6.14–6.15; docs/methods/ddgan.md §2).

    With normalised times t'_k = ε + (1 − ε) k/T, k = 0..T, and
    log ᾱ(t') = −β_min t' − ½(β_max − β_min) t'² (so σ²(t') = 1 − ᾱ(t'), eq. 6.14):

        β_k = 1 − ᾱ(t'_k)/ᾱ(t'_{k−1}),    ᾱ_k = ᾱ(t'_k)/ᾱ(t'_0)   (k = 1..T, ᾱ₀ = 1).

    `offset=0` (ε = 0) is the thesis's schedule: 1 − ᾱ_t = σ²(t/T) and β_t = 1 − exp(−β_min/T −
    (β_max − β_min)(2t − 1)/(2T²)) (eq. 6.15). `offset=1e-3` is the public code's variant
    (docs/methods/ddgan.md §2, (2.4)); its ᾱ_k drops the code's factor (1 − β₀) = 1 − 1e-8, which
    is 1 in float32. The posterior entries follow eq. 2.50–2.51 with the √α_t coefficient on
    x_t (docs/methods/ddgan.md §3, (3.1)).
    """
    _check_schedule_args(num_steps, beta_min, beta_max, offset)
    num = int(num_steps)
    s = offset + (1.0 - offset) * np.arange(num + 1, dtype=np.float64) / num
    log_ab = -beta_min * s - 0.5 * (beta_max - beta_min) * s**2
    log_ab = log_ab - log_ab[0]  # ᾱ₀ = 1
    delta = np.diff(log_ab)  # log α_t, t = 1..T
    betas = -np.expm1(delta)
    ab = np.exp(log_ab)
    one_minus_ab = -np.expm1(log_ab)  # 1 − ᾱ_t without cancellation; equals β₁ at t = 1
    one_minus_ab[0] = 0.0  # +0, not the −0 of −expm1(0): β̃₁ and the x_t coefficient are +0
    ab_prev, om_prev, om_t = ab[:-1], one_minus_ab[:-1], one_minus_ab[1:]
    coef_x0 = np.sqrt(ab_prev) * betas / om_t
    coef_xt = np.sqrt(np.exp(delta)) * om_prev / om_t
    var = om_prev * betas / om_t

    def f32(head, tail):
        return jnp.asarray(np.concatenate([[head], tail]), jnp.float32)

    return VPSchedule(
        betas=f32(DUMMY_BETA0, betas),
        alphas_bar=jnp.asarray(ab, jnp.float32),
        posterior_coef_x0=f32(1.0, coef_x0),
        posterior_coef_xt=f32(0.0, coef_xt),
        posterior_var=f32(0.0, var),
        posterior_log_var=f32(np.log(LOG_VAR_FLOOR), np.log(np.maximum(var, LOG_VAR_FLOOR))),
    )


def _steps(schedule: VPSchedule, x, t, lowest: int, name: str) -> jax.Array:
    """`t` as int32 `[B]` (a scalar is broadcast); concrete values are checked against
    lowest..T (traced ones cannot be: out-of-range indices are clamped by the gather)."""
    x = jnp.asarray(x)
    if x.ndim < 1:
        raise ValueError(f"{name}: x must have a leading batch axis [B, ...], got shape {x.shape}")
    t = jnp.asarray(t)
    if not jnp.issubdtype(t.dtype, jnp.integer):
        raise ValueError(f"{name}: t must hold integer steps, got dtype {t.dtype}")
    if t.ndim == 0:
        t = jnp.broadcast_to(t, x.shape[:1])
    if t.shape != x.shape[:1]:
        raise ValueError(f"{name}: t must have shape [B]={x.shape[:1]}, got {t.shape}")
    if not isinstance(t, jax.core.Tracer):  # host values: jnp ops here may be staged (cond)
        lo, hi = int(np.min(np.asarray(t))), int(np.max(np.asarray(t)))
        if lo < lowest or hi > schedule.num_steps:
            raise ValueError(
                f"{name}: t must be in {lowest}..{schedule.num_steps}, got values in {lo}..{hi}"
            )
    return t.astype(jnp.int32)


def _per_example(v: jax.Array, x) -> jax.Array:
    """A `[B]` array shaped `[B, 1, ..., 1]` to broadcast against `x` `[B, ...]`, in x's dtype."""
    v = v.astype(jnp.result_type(x))
    return v.reshape(v.shape + (1,) * (jnp.ndim(x) - 1))


def _at(values: jax.Array, t: jax.Array, x) -> jax.Array:
    """`values[t]` (a schedule array at each example's step) shaped to broadcast against `x`."""
    return _per_example(values[t], x)


def q_sample(schedule: VPSchedule, x0, t, noise) -> jax.Array:
    """x_t ~ q(x_t | x₀) = N(√ᾱ_t x₀, (1 − ᾱ_t) I) (eq. 2.46), reparameterised by `noise`.

    `x0`, `noise` `[B, ...]`; `t` int `[B]` in 0..T (t = 0 returns x₀). Returns `[B, ...]`.
    """
    t = _steps(schedule, x0, t, 0, "q_sample")
    ab = _at(schedule.alphas_bar, t, x0)
    return jnp.sqrt(ab) * x0 + jnp.sqrt(1.0 - ab) * noise


def q_step(schedule: VPSchedule, x_prev, t, noise) -> jax.Array:
    """x_t ~ q(x_t | x_{t−1}) = N(√(1 − β_t) x_{t−1}, β_t I) (eq. 2.44), one forward step.

    `x_prev`, `noise` `[B, ...]`; `t` int `[B]` in 1..T. Returns `[B, ...]`.
    """
    t = _steps(schedule, x_prev, t, 1, "q_step")
    beta = _at(schedule.betas, t, x_prev)
    return jnp.sqrt(1.0 - beta) * x_prev + jnp.sqrt(beta) * noise


def q_pair(schedule: VPSchedule, x0, t, key) -> tuple[jax.Array, jax.Array]:
    """The real pair `(x_{t−1}, x_t)` of denoising step t (eq. 6.4; docs/methods/ddgan.md §2):
    x_{t−1} ~ q(x_{t−1} | x₀), then x_t ~ q(x_t | x_{t−1}). Two noise draws from `key`.

    `x0` `[B, ...]`; `t` int `[B]` in 1..T. Returns two `[B, ...]` arrays (x_{t−1} = x₀ at t = 1).
    """
    t = _steps(schedule, x0, t, 1, "q_pair")
    k_prev, k_step = jax.random.split(key)
    x0 = jnp.asarray(x0)
    x_prev = q_sample(schedule, x0, t - 1, jax.random.normal(k_prev, x0.shape, x0.dtype))
    x_t = q_step(schedule, x_prev, t, jax.random.normal(k_step, x0.shape, x0.dtype))
    return x_prev, x_t


def posterior_mean_var(schedule: VPSchedule, x0, x_t, t) -> tuple[jax.Array, jax.Array]:
    """Mean `[B, ...]` and variance `[B]` of q(x_{t−1} | x_t, x₀) = N(μ̃_t, β̃_t I)
    (eq. 2.50–2.51 with √α_t on x_t; docs/methods/ddgan.md §3, (3.1)). `t` int `[B]` in 1..T;
    the variance is 0 at t = 1, where the mean is x₀."""
    t = _steps(schedule, x_t, t, 1, "posterior_mean_var")
    mean = _at(schedule.posterior_coef_x0, t, x_t) * x0
    mean = mean + _at(schedule.posterior_coef_xt, t, x_t) * x_t
    return mean, schedule.posterior_var[t]


def posterior_sample(schedule: VPSchedule, x0, x_t, t, noise) -> jax.Array:
    """x_{t−1} = μ̃_t + √β̃_t · noise, a reparameterised draw of q(x_{t−1} | x_t, x₀) (eq. 6.12;
    differentiable in x₀). At t = 1 β̃₁ = 0, so the noise is ignored and x_{t−1} = x₀.

    `x0`, `x_t`, `noise` `[B, ...]`; `t` int `[B]` in 1..T. Returns `[B, ...]`.
    """
    t = _steps(schedule, x_t, t, 1, "posterior_sample")
    mean, var = posterior_mean_var(schedule, x0, x_t, t)
    return mean + _per_example(jnp.sqrt(var), x_t) * noise


def eps_to_x0(schedule: VPSchedule, x_t, eps, t) -> jax.Array:
    """x̂₀ = (x_t − √(1 − ᾱ_t) ε) / √ᾱ_t (eq. 6.9; docs/methods/ddgan.md §3, (3.3)): the
    ε-prediction parameterisation as a clean-sample prediction. `t` int `[B]` in 0..T."""
    t = _steps(schedule, x_t, t, 0, "eps_to_x0")
    ab = _at(schedule.alphas_bar, t, x_t)
    return (x_t - jnp.sqrt(1.0 - ab) * eps) / jnp.sqrt(ab)


def ddgan_chain(
    denoiser: Denoiser, schedule: VPSchedule, x_T, key, *, latent_dim: int, posterior: bool = True
) -> tuple[jax.Array, dict]:
    """The T-step DDGAN sampler (eq. 6.12; docs/methods/ddgan.md §3), one `lax.scan`.

    For t = T..1: z ~ N(0, I_L) per example, x̂₀ = denoiser(x_t, z, t) with t an int32 `[B]`
    array, then x_{t−1} = posterior_sample(x̂₀, x_t, t) (no noise at t = 1, so x₀ = x̂₀ of the
    last step). The draws of step t come from `jax.random.fold_in(key, t)`, split into the
    latent key and the posterior-noise key.

    Args:
      denoiser: `(x_t [B, ...], z [B, L], t int32 [B]) -> x̂₀ [B, ...]`.
      schedule: a `VPSchedule` (T = `schedule.num_steps`).
      x_T: the starting points `[B, ...]`, usually N(0, I) draws.
      key: PRNG key of the latents and the posterior noise.
      latent_dim: L >= 0; with 0 the denoiser gets z of shape `[B, 0]` (no latent).
      posterior: False for the "direct denoising" ablation: the denoiser returns x_{t−1} itself
        and no posterior noise is added (the same draws of z otherwise).

    Returns:
      `(x_0, stats)`: samples `[B, ...]` and `stats["nfe"]`, denoiser calls per example `[B]`.
    """
    if isinstance(latent_dim, bool) or not isinstance(latent_dim, int | np.integer):
        raise ValueError(f"ddgan_chain: latent_dim must be an int >= 0, got {latent_dim!r}")
    if latent_dim < 0:
        raise ValueError(f"ddgan_chain: latent_dim must be an int >= 0, got {latent_dim!r}")
    x_T = jnp.asarray(x_T)
    if x_T.ndim < 1:
        raise ValueError(f"ddgan_chain: x_T must be [B, ...], got shape {x_T.shape}")
    batch, num = x_T.shape[0], schedule.num_steps

    def step(x, t):
        k_z, k_noise = jax.random.split(jax.random.fold_in(key, t))
        t_b = jnp.full((batch,), t, jnp.int32)
        z = jax.random.normal(k_z, (batch, int(latent_dim)), x.dtype)
        x0_hat = denoiser(x, z, t_b)
        if not posterior:
            return x0_hat.astype(x.dtype), None
        if x0_hat.shape != x.shape:
            raise ValueError(
                f"ddgan_chain: the denoiser must return x̂₀ of shape {x.shape}, got {x0_hat.shape}"
            )
        noise = jax.random.normal(k_noise, x.shape, x.dtype)
        return posterior_sample(schedule, x0_hat, x, t_b, noise).astype(x.dtype), None

    x0, _ = jax.lax.scan(step, x_T, jnp.arange(num, 0, -1, dtype=jnp.int32))
    return x0, {"nfe": jnp.full((batch,), num, jnp.int32)}

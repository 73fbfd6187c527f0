"""VAEBM (thesis ch. 4; docs/methods/vaebm.md): a trained, frozen VAE p_φ tilted by an energy f_θ,

    p_{θ,φ}(x) ∝ p_φ(x) e^{−f_θ(x)},                                              (eq. 1)

stage two of a two-stage run (the base: a finished `vae` run, `method.base_workdir`). The energy
is trained by the contrastive loss E_data f − E_model f (eq. 3) whose negatives come from Langevin
dynamics in the base's noise space ε = (ε_z, ε_x), where the tilted law is

    h(ε) ∝ e^{−f(T(ε))} N(ε; 0, I),   E(ε) = f(T(ε)) + ½‖ε‖²   (thesis form, eq. 5)

or, as the public code, E(ε) = f(x) − log p_φ(x, z) at (x, z) = T(ε) (`energy_form="joint_logp"`,
eq. 6), with ε_{t+1} = ε_t − (η/2)∇E + √η ω (eq. 4). Images: the energy sees clip((x + 1)/2, 0, 1)
(the thesis's [0, 1], the clamp inside the energy); 2-D points: x itself.

Regularisers: α(E f(x⁺)² + E f(x⁻)²) (§4.4.1's small models, `method.alpha`) and the spectral
regulariser of the weight-normalised convolutions (`method.spectral`, eq. 8). A replay buffer of
ε_z (`method.persistent`, eq. 7). Sampling: fresh ε ~ N(0, I), `sample.langevin_steps` steps
(K_test = 0: the base itself with the same draws), then the decoder mean (or a draw); NFE = K_test
energy gradients, each through one decoder pass.
"""

import dataclasses
from functools import partial

import flax.linen as nn
import jax
import jax.numpy as jnp
from flax import struct

from jaxgen.methods import glf, vae
from jaxgen.methods.common import (
    BaseRunFields,
    BaseStage,
    Capabilities,
    Optim,
    Section,
    at_least,
    batch_draw,
    check_batch,
    check_count,
    check_inputs,
    check_network_input,
    check_state_batch,
    each_at_least,
    example_shape_field,
    in_unit_interval,
    model_state,
    one_of,
    positive,
    sample_shape,
    section_differences,
    validate,
)
from jaxgen.methods.tilt_base import TiltBase, draw_eps, glf_base, vae_base
from jaxgen.nn import ScalarMLP
from jaxgen.nn.conv_energy import check_image_size
from jaxgen.nn.tilt_energy import SMALL_VAE, TiltEnergy
from jaxgen.objectives.spectral import init_power_vectors, spectral_regulariser
from jaxgen.optim import ModelState
from jaxgen.runtime import available_host_memory
from jaxgen.samplers.langevin import langevin, per_chain_sq_norm, thesis_setting
from jaxgen.samplers.replay import (
    buffer_bytes,
    buffer_draw,
    buffer_init,
    buffer_push,
    replay_probability,
)


@dataclasses.dataclass(frozen=True)
class Model(Section):
    """The energy f_θ ("mlp" for 2-D; "resnet", Table 4.9's blocks) and the base's recipe and
    architecture (`base_recipe`; `model.base`, a `vae` run's `model` section, or `model.glf_base`,
    a `glf` run's; checked against the base run)."""

    network: str = one_of(("mlp", "resnet"), "mlp")
    hidden: tuple[int, ...] = each_at_least(1, (256,) * 3, empty=True)  # mlp
    nf: int = at_least(1, 64)  # resnet: the first conv's width
    widths: tuple[int, ...] = each_at_least(1, tuple(m for m, _ in SMALL_VAE))  # × nf per block
    downs: tuple[bool, ...] = tuple(d for _, d in SMALL_VAE)  # which blocks downsample
    init_scale: float = positive(0.2)  # resnet: weight-norm data init's output std
    data_init: bool = True  # resnet: initial scales from the first training batch
    base_recipe: str = one_of(("vae", "glf"), "vae")
    base: vae.Model = vae.Model()
    glf_base: glf.Model = glf.Model()

    def cross_checks(self):
        rules = {"downs": (len(self.downs) == len(self.widths), "needs one entry per widths")}
        validate(self, rules)


@dataclasses.dataclass(frozen=True)
class Method(BaseRunFields, Section):
    """Stage two (Table 4.10, §4.4.1). `base_workdir`: the finished `vae` run."""

    langevin_steps: int = at_least(1, 60, "K must be >= 1")  # K_train
    step_size: float = positive(0.01)  # η: step η/2 on ∇E, noise √η
    energy_form: str = one_of(("thesis", "joint_logp"), "thesis")  # eq. 5 | eq. 6 (the code)
    use_eps_x: bool = True  # move ε_x too (False: x = μ_x(z), ε_z only)
    negatives: str = one_of(("draw", "mean"), "draw")  # x⁻ = T(ε) | μ_x(z(ε_z)) ("use_mu_cd")
    alpha: float = at_least(0, 0.1)  # α(E f(x⁺)² + E f(x⁻)²) (§4.4.1; off in Table 4.10)
    spectral: float = at_least(0, 0.0)  # SR coefficient (Table 4.10: 0.2); resnet only
    spectral_iters: int = at_least(1, 4)  # power iterations per step (40 at init)
    persistent: bool = False  # replay buffer of ε_z
    buffer_size: int = at_least(1, 10_000)  # N
    replay_max: float = in_unit_interval(0.6)  # p rises linearly to this ...
    replay_anneal: int = at_least(0, 5000)  # ... over this many steps
    # the chain's steps in one loop body: faster steps for conv energies on XLA:CPU (see
    # shortrun_ebm), slower compiles (60 unrolled steps of a 2-D MLP: ~30 s)
    unroll: bool = False


@dataclasses.dataclass(frozen=True)
class Sample(Section):
    """Test-time sampling: always from fresh N(0, I) (thesis §4.4.3)."""

    langevin_steps: int = at_least(0, 100, "K_test must be >= 0 (0: the base itself)")
    step_size: float = at_least(0, 0.0, "must be >= 0 (0: method.step_size)")
    decoder_mean: bool = True  # output μ_x(z) (the code) or the draw T(ε)
    iwae_samples: int = at_least(1, 1000)  # log_density's IWAE bound on log p_φ
    iwae_chunk: int = at_least(1, 100)


@dataclasses.dataclass(frozen=True)
class Optims:
    # Table 4.10: Adam (0.99, 0.999), coupled weight decay 3e-5, Du-Mordatch clip (3√v̂ + 0.1)
    energy: Optim = Optim(lr=5e-5, b1=0.99, l2=3e-5, moment_clip=3.0, ema_rate=0.0)


@dataclasses.dataclass(frozen=True)
class Config:
    model: Model = Model()
    method: Method = Method()
    optim: Optims = Optims()
    sample: Sample = Sample()


def base_config(config: Config) -> vae.Config | glf.Config:
    """The base recipe's Config that this run's `model.base_recipe` and its model section
    describe (for the base's functions)."""
    m, s = config.model, config.sample
    if m.base_recipe == "glf":
        return glf.Config(model=m.glf_base)
    sample = vae.Sample(iwae_samples=s.iwae_samples, iwae_chunk=s.iwae_chunk)
    return vae.Config(model=m.base, sample=sample)


def _check_base(config: Config, base_config_) -> str | None:
    """None when `model.base_recipe` and its model section describe the base run's recipe and
    `model` section, else the reason naming every field that differs (the base stage's check,
    before any state is restored)."""
    m = config.model
    theirs = "glf" if isinstance(base_config_, glf.Config) else "vae"
    if theirs != m.base_recipe:
        return f"model.base_recipe={m.base_recipe!r} but the base is a {theirs!r} run"
    mine, field = (m.glf_base, "glf_base") if theirs == "glf" else (m.base, "base")
    diff = section_differences(mine, base_config_.model, f"model.{field}", "the base's model")
    return f"the base {theirs.upper()} differs: {diff}" if diff else None


CAPABILITIES = Capabilities(
    networks=("energy",),
    headline=("loss", "gap", "f_pos"),
    sampler_stats=("nfe",),
    nfe="energy gradients (one decoder pass each)",
    extras=("energy", "log_density"),
    energy_label="−f(x)",
    base_stage=BaseStage(
        recipes=("vae", "glf"),
        check=_check_base,
        default_config=lambda c: (c.model.base_recipe, base_config(c)),
    ),
)


@struct.dataclass
class State:
    step: jax.Array
    key: jax.Array
    energy: ModelState
    base: dict  # the base VAE's parameters, frozen
    power: dict  # spectral regulariser: {layer: {"u", "v"}}; {} without it
    buffer: dict  # persistent: {"rows" [N, d], "size", "head"}; {} without
    example_shape: tuple = example_shape_field()


def tilt_base(config: Config, example_shape: tuple) -> TiltBase:
    make = glf_base if config.model.base_recipe == "glf" else vae_base
    return make(base_config(config), tuple(example_shape))


def make_network(config: Config) -> nn.Module:
    """f_θ: `[B, ...] -> [B]`."""
    m = config.model
    if m.network == "resnet":
        blocks = tuple(zip(m.widths, m.downs, strict=True))
        return TiltEnergy(nf=m.nf, blocks=blocks, init_scale=m.init_scale, data_init=m.data_init)
    return ScalarMLP(hidden=tuple(m.hidden), act="silu")


def energy_input(x):
    """What f sees: images `[B, H, W, C]` in [-1, 1] → clip((x + 1)/2, 0, 1); points unchanged."""
    return jnp.clip((x + 1.0) / 2.0, 0.0, 1.0) if x.ndim == 4 else x


def energy_fn(params, x, *, config: Config):
    """f_θ(x) `[B]` for data-space `x` `[B, ...]` (float32 matmuls: see shortrun_ebm)."""
    with jax.default_matmul_precision("float32"):
        return make_network(config).apply({"params": params}, energy_input(x))


def init(config: Config, example_batch, *, key, base) -> State:
    """Fresh state for batches like `example_batch["x"]` `[B, ...]` on the trained base `base`
    (a `vae` State, frozen into this state). With `model.data_init`, the resnet's initial scales
    come from this batch; with `method.persistent`, the buffer is allocated (memory checked)."""
    x = check_batch(example_batch, "vaebm.init")
    shape, m = tuple(x.shape[1:]), config.model
    check_network_input(shape, m.network, "vaebm.init", flat=("mlp",), images=("resnet",))
    if m.network == "resnet":
        halving = [w for w, down in zip(m.widths, m.downs, strict=True) if down]
        check_image_size(shape, halving, "vaebm.init")
    check_inputs(example_batch, image=x.ndim == 4, who="vaebm.init")
    if config.method.spectral and m.network != "resnet":
        raise ValueError(
            "vaebm.init: method.spectral regularises the resnet's weight-normalised convolutions; "
            f"model.network={m.network!r} has none (set method.spectral=0)"
        )
    tilt = tilt_base(config, shape)
    if config.method.energy_form == "joint_logp" and tilt.log_joint is None:
        raise ValueError(
            f"vaebm.init: method.energy_form='joint_logp' needs the base's log p(x, z); a "
            f"{m.base_recipe!r} base has none (use energy_form='thesis')"
        )
    if tuple(base.example_shape) != shape:
        raise ValueError(
            "vaebm.init: the base VAE was trained on examples of shape "
            f"{tuple(base.example_shape)}, this run's are {shape}"
        )
    k_init, k_power, k_state = jax.random.split(key, 3)
    xs = (
        jnp.asarray(x, jnp.float32)
        if m.data_init and m.network == "resnet"
        else jnp.zeros((1, *shape))
    )
    params = jax.jit(make_network(config).init)(k_init, energy_input(xs))["params"]
    power = init_power_vectors(params, k_power, num_iters=40) if config.method.spectral else {}
    frozen = tilt.frozen_from(base)
    buffer = _new_buffer(config, key, tilt.eps_shapes(1)["z"][1:])
    ms = model_state(params, config.optim.energy)
    return State(jnp.zeros((), jnp.int32), k_state, ms, frozen, power, buffer, shape)


def _new_buffer(config: Config, key, shape: tuple) -> dict:
    """The empty replay buffer of ε_z rows of `shape` (or {}); its size checked against free host
    memory before allocating, except under tracing (abstract init and compile tables allocate
    nothing)."""
    m = config.method
    if not m.persistent:
        return {}
    need = buffer_bytes(m.buffer_size, shape)
    free = None if isinstance(key, jax.core.Tracer) else available_host_memory()
    if free is not None and need > free // 2:
        raise ValueError(
            f"vaebm.init: a replay buffer of method.buffer_size={m.buffer_size} rows of {shape} "
            f"needs {need / 2**30:.2f} GiB; {free / 2**30:.2f} GiB are free (at most half is used)"
        )
    return buffer_init(m.buffer_size, shape)


def chain_energy(params, frozen, eps, *, config: Config, base: TiltBase):
    """E(ε) `[B]` of the chain over ε = {"z", ["x"]} (eq. 5, or eq. 6 with "joint_logp")."""
    m = config.method
    x, z = base.generate(frozen, eps, mean="x" not in eps)
    f = energy_fn(params, x, config=config)
    if m.energy_form == "joint_logp":
        return f - base.log_joint(frozen, x, z)
    return f + 0.5 * per_chain_sq_norm(eps)


def run_chain(params, frozen, eps, key, *, config: Config, base: TiltBase, steps: int, eta: float):
    """`(ε, trace)` after `steps` Langevin steps of size η (eq. 4); parameters get no gradient."""
    params, frozen = jax.lax.stop_gradient((params, frozen))
    e = partial(chain_energy, params, frozen, config=config, base=base)
    unroll = config.method.unroll or 1
    return langevin(e, eps, key, num_steps=steps, unroll=unroll, **thesis_setting(eta))


def fresh_eps(key, num: int, base: TiltBase, config: Config) -> dict:
    """ε ~ N(0, I) for `num` chains: {"z": [num, d], "x": [num, ...]} ("x" only with
    `method.use_eps_x` and a base whose decoder has noise)."""
    return draw_eps(base, key, num, skip=() if config.method.use_eps_x else ("x",))


def _starts(state: State, key, num: int, base: TiltBase, config: Config):
    """The chains' ε at this step, and the fraction replayed from the buffer."""
    k_eps, k_want, k_slots = jax.random.split(key, 3)
    eps = fresh_eps(k_eps, num, base, config)
    if not config.method.persistent:
        return eps, jnp.zeros(())
    m = config.method
    p = replay_probability(state.step, p_max=m.replay_max, anneal_steps=m.replay_anneal)
    want = batch_draw(jax.random.bernoulli, k_want, (num,), p=p)
    eps["z"], replayed = buffer_draw(state.buffer, k_slots, eps["z"], want)
    return eps, jnp.mean(replayed.astype(jnp.float32))


def loss_fn(params, power, x_pos, x_neg, *, config: Config):
    """The contrastive loss with its regularisers: `(loss, (new power vectors, metrics))`."""
    m = config.method
    f_pos, f_neg = (energy_fn(params, v, config=config) for v in (x_pos, x_neg))
    cd = jnp.mean(f_pos) - jnp.mean(f_neg)
    reg = m.alpha * (jnp.mean(f_pos**2) + jnp.mean(f_neg**2))
    sr = jnp.zeros(())
    if m.spectral:
        sr, power = spectral_regulariser(params, power, num_iters=m.spectral_iters)
    loss = cd + reg + m.spectral * sr
    gap = jnp.mean(f_neg) - jnp.mean(f_pos)
    metrics = {
        "loss": loss,
        "gap": gap,
        "f_pos": jnp.mean(f_pos),
        "f_neg": jnp.mean(f_neg),
        "sr": sr,
    }
    return loss, (power, metrics)


def train_step(state: State, batch, *, config: Config):
    """One step of the energy on `batch["x"]` `[B, ...]` (thesis Alg. 4.4 / spec §2.4)."""
    x = check_state_batch(batch, state, "vaebm.train_step").astype(jnp.float32)
    m, base = config.method, tilt_base(config, state.example_shape)
    key = jax.random.fold_in(state.key, state.step)
    k_start, k_chain = jax.random.split(key)
    eps0, replayed = _starts(state, k_start, x.shape[0], base, config)
    params = state.energy.params
    eps, trace = run_chain(
        params,
        state.base,
        eps0,
        k_chain,
        config=config,
        base=base,
        steps=m.langevin_steps,
        eta=m.step_size,
    )
    x_neg, _ = base.generate(state.base, eps, mean=m.negatives == "mean" or "x" not in eps)
    grad_fn = jax.grad(loss_fn, has_aux=True)
    grads, (power, metrics) = grad_fn(
        params, state.power, x, jax.lax.stop_gradient(x_neg), config=config
    )
    ms, gnorm = state.energy.apply_gradients(grads, step=state.step)
    buffer = buffer_push(state.buffer, eps["z"]) if m.persistent else state.buffer
    new = state.replace(step=state.step + 1, energy=ms, power=power, buffer=buffer)
    extra = {
        "grad_norm": gnorm,
        "replayed": replayed,
        "chain_e_first": trace["energy"][0],
        "chain_e_last": trace["energy"][-1],
    }
    return new, {**metrics, **extra}


def sample(state: State, num: int, *, config: Config, key, shape=None, use_ema: bool = True):
    """`num` samples `[num, ...]`: fresh ε ~ N(0, I), `sample.langevin_steps` Langevin steps
    (0: the base's own draw from the same ε), then the decoder mean (`sample.decoder_mean`) or
    the draw T(ε); stats `nfe` `[num]`."""
    num = check_count(num, "vaebm.sample")
    shape = sample_shape(state, shape, "vaebm.sample")
    s, base = config.sample, tilt_base(config, shape)
    k_eps, k_chain = jax.random.split(key)
    eps = fresh_eps(k_eps, num, base, config)
    if s.langevin_steps:
        eta = s.step_size or config.method.step_size
        params = state.energy.eval_params(use_ema)
        eps, _ = run_chain(
            params,
            state.base,
            eps,
            k_chain,
            config=config,
            base=base,
            steps=s.langevin_steps,
            eta=eta,
        )
    x, _ = base.generate(state.base, eps, mean=s.decoder_mean or "x" not in eps)
    return x, {"nfe": jnp.full((num,), s.langevin_steps, jnp.int32)}


def energy(state: State, x, *, config: Config, use_ema: bool = True):
    """−f_θ(x) `[B]` (higher = more in-distribution) for data `x` `[B, ...]`."""
    return -energy_fn(state.energy.eval_params(use_ema), x, config=config)


def log_density(state: State, x, *, config: Config, key, use_ema: bool = True):
    """log p_φ(x) − f_θ(x) `[B]`, unnormalised (log Z unknown; 2-D evaluation normalises on a grid),
    log p_φ by the IWAE bound with `sample.iwae_samples` samples."""
    check_state_batch({"x": x}, state, "vaebm.log_density")
    base = tilt_base(config, state.example_shape)
    if base.log_prob is None:
        raise ValueError(
            f"vaebm.log_density: a {config.model.base_recipe!r} base has no log p(x) to tilt"
        )
    x = x.astype(jnp.float32)
    log_p = base.log_prob(state.base, x, key, config.sample.iwae_samples)
    return log_p + energy(state, x, config=config, use_ema=use_ema)

"""FDRL recipe (Heng, Ansari, Soh): flow-guided density-ratio learning
(docs/methods/fdrl.md).

One ratio network r_θ(x) ≈ q̃(x)/p(x) is trained by a Bregman loss (eq. 11), with particles from
K Euler–Maruyama steps of the stale f-divergence flow dx = −∇ₓf'(r_θ(x)) dt + sqrt(2γ) dw
(eqs. 5, 9) started from a prior q' as the numerator sample and data as the denominator
(Algorithm 1). Sampling runs K + κ steps with the EMA network (Algorithm 2).

Recipe contract: `Config`, `init`, `train_step`, `sample`, `CAPABILITIES`, plus `fit_data`
(the data-dependent prior), `density_ratio` and `flow_from` / `translate` (flow given particles:
unpaired translation; with `guide`, class-conditional generation through an external classifier).
"""

import dataclasses
from functools import partial

import flax.linen as nn
import jax
import jax.numpy as jnp
from flax import struct

from jaxgen.methods.common import (
    Capabilities,
    DataFit,
    FieldError,
    Optim,
    Section,
    at_least,
    batch_normal,
    check_batch,
    check_count,
    check_network_input,
    check_state_batch,
    example_shape_field,
    model_state,
    one_of,
    positive,
    sample_shape,
)
from jaxgen.methods.fdrl_prior import check_fitted, fit_gaussian_prior, prior_shapes
from jaxgen.nn import ScalarMLP
from jaxgen.nn.mlp import ACTIVATIONS
from jaxgen.nn.ratio_resnet import RATIO_NET_CONFIGS, RatioResNet
from jaxgen.objectives.fdrl import (
    bregman_loss,
    check_pairing,
    conditional_output,
    flow_drift,
    ratio,
)
from jaxgen.optim import ModelState
from jaxgen.parallel import shard_over_batch
from jaxgen.samplers.sde import euler_maruyama

PRIORS = ("normal", "uniform", "ddp", "source")
NETWORKS = ("mlp", "resnet")


@dataclasses.dataclass(frozen=True)
class Model(Section):
    # mlp: flattened examples (2-D); resnet: images (docs/methods/fdrl.md §3.1)
    network: str = one_of(NETWORKS, "mlp")
    hidden: tuple[int, ...] = (64, 64, 64, 64)  # mlp: 2-64-64-64-64-1
    act: str = one_of(ACTIVATIONS, "leaky_relu")  # mlp
    # resnet: a RATIO_NET_CONFIGS name (the paper's Table 3 nets)
    layout: str = one_of(RATIO_NET_CONFIGS, "cifar10")
    spectral_norm: bool = False  # resnet: on every conv (the code's CIFAR-10 / Cat2dog setting)


@dataclasses.dataclass(frozen=True)
class Method(Section):
    """Algorithm 1; defaults are the reference code's 2-D setting (docs/methods/fdrl.md §3)."""

    loss: str = "lsif"  # Bregman loss: lsif (o = r), lr or ukl (o = log r)
    divergence: str = "pearson"  # f: pearson (with lsif), kl / js / logd (with lr, ukl)
    # normal N(0, I), uniform U[-1, 1]^d, ddp N(μ_D, Σ_D) (paper eq. 8), or source: the
    # batch's "source" images (unpaired translation, docs/methods/fdrl.md §4.2; data.source)
    prior: str = one_of(PRIORS, "normal")
    prior_jitter: float = at_least(0, 1e-4, "out of range")  # ddp: Σ_D + jitter·I
    clip: bool = False  # images: clamp prior draws and final samples to [-1, 1] (code)
    flow_steps: int = at_least(1, 200)  # K during training
    step_size: float = positive(1.0)  # η
    noise: float = at_least(0, 0.01)  # ν = sqrt(2γη)
    dequant: float = at_least(0, 0.0)  # std of noise added to data batches (images: 0.03)

    def cross_checks(self):
        try:
            check_pairing(self.loss, self.divergence)
        except ValueError as e:
            raise FieldError("divergence", self.divergence, str(e)) from None


@dataclasses.dataclass(frozen=True)
class Sample(Section):
    refine_steps: int = at_least(0, 0)  # κ: sampling runs K + κ steps (20 for the image models)


@dataclasses.dataclass(frozen=True)
class Optims:
    # Adam; "step" decay ×0.1 every 5000 = the code's milestones 5k/10k/15k; EMA 0.998 with the
    # trainer's warm-up min(m, (1+n)/(10+n)) (the code has none)
    ratio: Optim = Optim(lr=5e-5, decay="step", decay_steps=5000, ema_rate=0.998)


@dataclasses.dataclass(frozen=True)
class Config:
    """FDRL hyper-parameters; defaults are the reference code's 2-D setting."""

    model: Model = Model()
    method: Method = Method()
    optim: Optims = Optims()
    sample: Sample = Sample()


@struct.dataclass
class State:
    step: jax.Array
    key: jax.Array
    ratio: ModelState
    prior_mean: jax.Array  # ddp: μ_D `[D]`; otherwise an unused `[1]` (orbax saves no empty arrays)
    prior_chol: jax.Array  # ddp: chol(Σ_D + jitter·I) `[D, D]`; otherwise an unused `[1, 1]`
    example_shape: tuple = example_shape_field()


def make_network(config: Config) -> nn.Module:
    """The ratio network: `[B, ...] -> [B]` raw output o (r for lsif, log r otherwise)."""
    m = config.model
    if m.network == "resnet":
        return RatioResNet(**RATIO_NET_CONFIGS[m.layout], spectral_norm=m.spectral_norm)
    return ScalarMLP(hidden=tuple(m.hidden), act=m.act)


def fit_data(config: Config, x):
    """`(mean, chol)` of the `ddp` prior fitted on the training set `x` `[N, ...]` (unaugmented;
    docs/methods/fdrl.md §2)."""
    return fit_gaussian_prior(x, config.method.prior_jitter)


CAPABILITIES = Capabilities(
    networks=("ratio",),
    headline=("loss",),
    sampler_stats=("nfe",),
    nfe="evaluations of the ratio network's gradient (K + κ Euler–Maruyama steps)",
    extras=("translate",),
    data_fit=DataFit(
        needed=lambda config: config.method.prior == "ddp",
        fit=fit_data,
        shapes=lambda config, example_shape: prior_shapes(example_shape),
        fields=("prior_mean", "prior_chol"),  # once per run, not in every checkpoint
    ),
)


def init(config: Config, example_batch, *, key, fitted=None) -> State:
    """Fresh state for examples shaped like `example_batch["x"]` `[B, ...]` (floating, B >= 1).
    A `ddp` prior needs `fitted = fit_data(config, training_images)`."""
    shape = tuple(check_batch(example_batch, "fdrl.init").shape[1:])
    k_init, k_state = jax.random.split(key)
    check_network_input(shape, config.model.network, "fdrl.init", images=("resnet",))
    variables = dict(jax.jit(make_network(config).init)(k_init, jnp.zeros((1, *shape))))
    params = variables.pop("params")
    mean, chol = jnp.zeros((1,), jnp.float32), jnp.zeros((1, 1), jnp.float32)
    if config.method.prior == "ddp":
        mean, chol = check_fitted(fitted, shape, who="fdrl.init")
    ms = model_state(params, config.optim.ratio, variables=variables)
    mean, chol = jnp.asarray(mean), jnp.asarray(chol)
    return State(jnp.zeros((), jnp.int32), k_state, ms, mean, chol, shape)


def output(params, x, *, config: Config, variables=None):
    """The raw network output o `[B]` for `x` `[B, ...]`; `variables`: the network's
    spectral-norm state (`{"batch_stats": ...}`; `{}` or None without), read, not advanced."""
    return make_network(config).apply({"params": params, **(variables or {})}, x)


def _output_advancing(params, variables, x, *, config: Config):
    """`(o [B], variables)`: `output`, with one power iteration of the spectral norms first
    when the network has them (the step's only update of that state, docs/methods/fdrl.md §3.1)."""
    if not variables:
        return output(params, x, config=config), variables
    net, inputs = make_network(config), {"params": params, **variables}
    out, new = net.apply(inputs, x, update_stats=True, mutable=["batch_stats"])
    return out, {**variables, **new}


def density_ratio(state: State, x, *, config: Config, use_ema: bool = True):
    """r_θ(x) = q̃(x)/p(x) `[B]` (large on generated samples, small on data)."""
    params, variables = state.ratio.eval_params(use_ema), state.ratio.variables
    return ratio(output(params, x, config=config, variables=variables), config.method.loss)


def sample_prior(state: State, num: int, shape, key, *, config: Config):
    """`num` draws `[num, *shape]` of the prior q' (clamped to [-1, 1] if `method.clip`), split
    over the batch devices when traced in a sharded step."""
    shape, m = (num, *shape), config.method
    if m.prior == "uniform":
        x = jax.random.uniform(key, shape, minval=-1.0, maxval=1.0)
    elif m.prior == "ddp":
        z = batch_normal(key, (num, state.prior_mean.shape[0]))
        x = (state.prior_mean + z @ state.prior_chol.T).reshape(shape)
    else:
        x = jax.random.normal(key, shape)
    x = shard_over_batch(x)
    return jnp.clip(x, -1.0, 1.0) if m.clip else x


def flow(
    params,
    x0,
    key,
    *,
    config: Config,
    num_steps: int,
    save_every: int = 0,
    guide=None,
    variables=None,
):
    """`num_steps` steps of paper eq. (9) from `x0` `[N, ...]`: `(x, stats)` (no gradient to θ;
    `variables`: the network's spectral-norm state, fixed during the flow).
    `guide = (class_log_prob_fn, num_classes, phi)` flows the class-conditional ratio instead
    (`class_log_prob_fn(x) -> [N]` log p(y|x) of the wanted class; docs/methods/fdrl.md §4)."""
    m = config.method
    out_fn = partial(output, jax.lax.stop_gradient(params), config=config, variables=variables)
    if guide is not None:
        log_prob_fn, num_classes, phi = guide
        uncond = out_fn
        out_fn = lambda x: conditional_output(uncond(x), log_prob_fn(x), num_classes, m.loss, phi)
    drift = partial(flow_drift, out_fn, divergence=m.divergence)
    x, stats = euler_maruyama(
        drift,
        x0,
        key,
        num_steps=num_steps,
        step_size=m.step_size,
        noise=m.noise,
        save_every=save_every,
    )
    return jax.lax.stop_gradient(x), stats


def loss_fn(params, x_q, x_p, *, config: Config, variables=None):
    """The Bregman loss (eq. 11) with `x_q` as q and `x_p` as p: `(loss, (metrics,
    variables))`, the spectral-norm state advanced once (on the q forward)."""
    loss_name = config.method.loss
    out_q, variables = _output_advancing(params, variables, x_q, config=config)
    out_p = output(params, x_p, config=config, variables=variables)
    loss, (p_term, q_term) = bregman_loss(out_q, out_p, loss_name)
    r_q, r_p = ratio(out_q, loss_name), ratio(out_p, loss_name)
    aux = {"loss": loss, "p_term": p_term, "q_term": q_term, "r_q": r_q.mean(), "r_p": r_p.mean()}
    return loss, (aux, variables)


def _source_batch(batch, shape):
    """`batch["source"]` `[B, ...]`, the prior's draws of a translation run, checked against
    the data batch's `shape` (one `ValueError`)."""
    if "source" not in batch:
        raise ValueError(
            "fdrl.train_step: method.prior='source' needs batch['source'], the source-domain "
            "images (set data.source)"
        )
    x0 = jnp.asarray(batch["source"], jnp.float32)
    if x0.shape != shape:
        raise ValueError(f"fdrl.train_step: batch['source'] is {x0.shape}, batch['x'] {shape}")
    return x0


def train_step(state: State, batch, *, config: Config):
    """Algorithm 1: flow fresh prior draws K steps with the current θ, then one optimizer step
    on the Bregman loss with the particles as q and `batch["x"]` `[B, ...]` as p (floating,
    B >= 1, examples of `state.example_shape`; checked at trace time, one `ValueError`)."""
    check_state_batch(batch, state, "fdrl.train_step")
    key = jax.random.fold_in(state.key, state.step)
    k_prior, k_flow, k_deq = jax.random.split(key, 3)
    m = config.method
    x_p = batch["x"].astype(jnp.float32)
    x_p = x_p + m.dequant * jax.random.normal(k_deq, x_p.shape)
    params, variables = state.ratio.params, state.ratio.variables
    with jax.default_matmul_precision("float32"):
        if m.prior == "source":
            x0 = _source_batch(batch, x_p.shape)
        else:
            x0 = sample_prior(state, x_p.shape[0], x_p.shape[1:], k_prior, config=config)
        x_q, _ = flow(
            params, x0, k_flow, config=config, num_steps=m.flow_steps, variables=variables
        )
        grad_fn = jax.grad(loss_fn, has_aux=True)
        grads, (metrics, variables) = grad_fn(params, x_q, x_p, config=config, variables=variables)
    ms, gnorm = state.ratio.apply_gradients(grads, step=state.step, variables=variables)
    return state.replace(step=state.step + 1, ratio=ms), {**metrics, "grad_norm": gnorm}


def flow_from(
    state: State, x0, *, config: Config, key, num_steps=None, use_ema=True, save_every=0, guide=None
):
    """Flow given particles `x0` `[N, ...]` (e.g. source-domain images, docs/methods/fdrl.md §4)
    for `num_steps` (default K + κ) steps: `(x, stats)`, clamped if `method.clip`. `guide`: see
    `flow` (class-conditional generation)."""
    params, variables = state.ratio.eval_params(use_ema), state.ratio.variables
    m = config.method
    n = m.flow_steps + config.sample.refine_steps if num_steps is None else num_steps
    with jax.default_matmul_precision("float32"):
        x, stats = flow(
            params,
            x0,
            key,
            config=config,
            num_steps=n,
            save_every=save_every,
            guide=guide,
            variables=variables,
        )
    return (jnp.clip(x, -1.0, 1.0) if m.clip else x), stats


def translate(state, source, *, config: Config, key, num_steps=None, use_ema=True):
    """Source-domain images `source` `[N, H, W, C]` in [-1, 1] flowed `num_steps` (default
    K + κ) steps towards the data the ratio was trained on (docs/methods/fdrl.md §4.2); one
    clear error when their shape does not fit the trained network. Returns `(x, stats)`."""
    source = jnp.asarray(source, jnp.float32)
    if source.ndim < 2:
        raise ValueError(f"fdrl.translate: source must be [N, ...] examples, got {source.shape}")
    sample_shape(state, source.shape[1:], "fdrl.translate")
    return flow_from(state, source, config=config, key=key, num_steps=num_steps, use_ema=use_ema)


def sample(state: State, num: int, *, config: Config, key, shape=None, use_ema: bool = True):
    """Algorithm 2: `num` prior draws flowed K + κ steps with the EMA network. `shape` is one
    example's shape, `state.example_shape` (the default; checked). `num`: a positive int,
    static under `jit`. Returns `(x [num, ...], {"nfe": [num]})`."""
    num = check_count(num, "fdrl.sample")
    if config.method.prior == "source":
        raise ValueError(
            "fdrl.sample: method.prior='source' draws no prior samples: translate source images "
            "(fdrl.translate, or python -m experiments.sample --from SOURCE.npy)"
        )
    shape = sample_shape(state, shape, "fdrl.sample")
    k_prior, k_flow = jax.random.split(key)
    x0 = sample_prior(state, num, shape, k_prior, config=config)
    return flow_from(state, x0, config=config, key=k_flow, use_ema=use_ema)

"""The latent RealNVP of GLF and the pure functions every flow is used through
(docs/methods/glf.md §2).

    flow = latent_realnvp(dim=20, hidden=64)            # 4 × (coupling, fixed permutation)
    variables = init_flow(flow, key, z_example)          # every parameter 0.05·N(0, 1)
    u, log_det, variables = forward_and_log_det(flow, variables, z, train=True)
    z, log_det_inv, _ = inverse_and_log_det(flow, variables, u)
"""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from jaxgen.flows.bijections import SOFT_CLAMP, ActNorm, AffineCoupling, Chain, Permutation

INIT_STD = 0.05  # the reference code overwrites every flow parameter with 0.05·N(0, 1)


def latent_realnvp(
    dim: int,
    *,
    num_blocks: int = 4,
    hidden: int = 64,
    clamp: float = SOFT_CLAMP,
    actnorm: bool = False,
    bn_momentum: float = 0.9,
) -> Chain:
    """`num_blocks` × [optional actnorm, two-sided affine coupling, fixed permutation (seed = the
    block index)] on `[B, dim]` (the GLF flow: 4 blocks, hidden 64 or 256, clamp 2)."""
    if int(dim) < 2:
        raise ValueError(f"a RealNVP flow needs a latent dimension d >= 2 to split, got d={dim}")
    if num_blocks < 1 or hidden < 1:
        raise ValueError(f"num_blocks and hidden must be >= 1, got {num_blocks}, {hidden}")
    layers = []
    for k in range(num_blocks):
        if actnorm:
            layers.append(ActNorm(dim))
        layers.append(AffineCoupling(dim, hidden, clamp, bn_momentum))
        layers.append(Permutation(dim, seed=k))
    return Chain(tuple(layers))


def small_normal_params(params, key, std: float = INIT_STD, *, keep=()):
    """Every leaf of `params` redrawn as std·N(0, 1) (BatchNorm scales included), except the
    top-level entries named in `keep`. One draw for all leaves: a random call per leaf makes
    XLA's CPU compile time grow by ~0.1 s per leaf."""
    leaves, treedef = jax.tree_util.tree_flatten_with_path(params)
    redraw = [path[0].key not in keep for path, _ in leaves]
    sizes = [leaf.size for (_, leaf), r in zip(leaves, redraw, strict=True) if r]
    flat = std * jax.random.normal(key, (sum(sizes),), jnp.float32)
    parts = iter(jnp.split(flat, np.cumsum(sizes)[:-1]) if sizes else [])
    new = [
        next(parts).reshape(leaf.shape).astype(leaf.dtype) if r else leaf
        for (_, leaf), r in zip(leaves, redraw, strict=True)
    ]
    return jax.tree_util.tree_unflatten(treedef, new)


def _actnorm_names(flow: nn.Module) -> tuple[str, ...]:
    """The parameter-tree names of a `Chain`'s actnorm layers (they keep their data init)."""
    layers = getattr(flow, "layers", ())
    return tuple(f"layers_{i}" for i, layer in enumerate(layers) if isinstance(layer, ActNorm))


def init_flow(flow: nn.Module, key, example, *, init_std: float | None = INIT_STD) -> dict:
    """Flax variables (`params`, and `batch_stats` when the flow has BatchNorm) for inputs like
    `example` `[B, d]`; `init_std`: redraw parameters as init_std·N(0, 1), actnorm's excepted
    (None: Flax's default initialisers)."""
    k_init, k_redraw = jax.random.split(key)
    variables = dict(flow.init(k_init, example, train=False, method="forward"))
    if init_std is not None and "params" in variables:
        keep = _actnorm_names(flow)
        variables["params"] = small_normal_params(
            variables["params"], k_redraw, init_std, keep=keep
        )
    return variables


def _apply(flow: nn.Module, variables, v, method: str, train: bool):
    if train and "batch_stats" in variables:
        (out, log_det), mutated = flow.apply(
            variables, v, train=True, method=method, mutable=["batch_stats"]
        )
        return out, log_det, {**variables, **mutated}
    out, log_det = flow.apply(variables, v, train=train, method=method)
    return out, log_det, variables


def forward_and_log_det(flow: nn.Module, variables, x, *, train: bool = False):
    """(y `[B, d]`, log|det ∂y/∂x| `[B]`, variables with updated BatchNorm statistics when
    `train`); with `train=False` BatchNorm uses its running averages and nothing changes."""
    return _apply(flow, variables, x, "forward", train)


def inverse_and_log_det(flow: nn.Module, variables, y, *, train: bool = False):
    """(x `[B, d]`, log|det ∂x/∂y| `[B]`, variables), the inverse of `forward_and_log_det`."""
    return _apply(flow, variables, y, "inverse", train)


def standard_normal_log_prob(u):
    """log N(u; 0, I) per row: `[B, d]` → `[B]`."""
    d = u.shape[-1]
    return -0.5 * jnp.sum(u**2, -1) - 0.5 * d * jnp.log(2 * jnp.pi)


def log_prob(flow: nn.Module, variables, x, *, train: bool = False):
    """log p(x) = log N(f(x); 0, I) + log|det ∂f/∂x| `[B]` (eq. 2.5), and the variables."""
    u, log_det, variables = forward_and_log_det(flow, variables, x, train=train)
    return standard_normal_log_prob(u) + log_det, variables

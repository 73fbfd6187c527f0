"""The spectral regulariser of VAEBM's energy (thesis §4.4.3; docs/methods/vaebm.md eq. (8)):

    SR(θ) = Σ_l σ_max(W̃_l),    W̃_l = g ⊙ v / ‖v‖ reshaped to [C_out, C_in·k_h·k_w],

over every weight-normalised layer of the energy (a parameter dict holding `v` and `g`; the
final plain Dense head has neither and is left out). σ_max is estimated by power iteration
with persistent vectors (u, v) per layer, 40 iterations at initialisation and 4 per training
step; the gradient flows through σ = uᵀ W̃ v only, with u and v held fixed. Unlike FDRL's
`SpectralNorm` wrapper, nothing is divided by σ: it is a penalty added to the loss.
"""

import jax
import jax.numpy as jnp

from jaxgen.nn.weight_norm import normalised_kernel


def _is_wn_layer(node) -> bool:
    return isinstance(node, dict) and "v" in node and "g" in node


def wn_kernels(params) -> dict:
    """`{path: W̃ [C_out, fan_in]}` of every weight-normalised layer in `params` (paths joined
    with "/"), in a fixed (sorted) order."""
    out = {}

    def walk(node, path):
        if _is_wn_layer(node):
            w = normalised_kernel(node["v"], node["g"])
            out["/".join(path)] = jnp.moveaxis(w, -1, 0).reshape(w.shape[-1], -1)
            return
        if isinstance(node, dict):
            for k in sorted(node):
                walk(node[k], (*path, str(k)))

    walk(params, ())
    return out


def _unit(x):
    return x / (jnp.linalg.norm(x) + 1e-12)


def power_iterate(w, u, v, num_iters: int):
    """`(u, v)` after `num_iters` power iterations on `w` `[m, n]` (v ← W̃ᵀu/‖·‖, u ← W̃v/‖·‖);
    no gradient flows through them."""
    w = jax.lax.stop_gradient(w)

    def body(_, uv):
        u, v = uv
        v = _unit(w.T @ u)
        return _unit(w @ v), v

    return jax.lax.fori_loop(0, num_iters, body, (u, v))


def init_power_vectors(params, key, *, num_iters: int = 40) -> dict:
    """`{path: {"u": [C_out], "v": [fan_in]}}`: random unit vectors per weight-normalised layer of
    `params`, refined by `num_iters` power iterations on the initial weights."""
    kernels = wn_kernels(params)
    keys = jax.random.split(key, max(len(kernels), 1))
    out = {}
    for k, (path, w) in zip(keys, kernels.items(), strict=False):
        ku, kv = jax.random.split(k)
        u = _unit(jax.random.normal(ku, (w.shape[0],)))
        v = _unit(jax.random.normal(kv, (w.shape[1],)))
        u, v = power_iterate(w, u, v, num_iters)
        out[path] = {"u": u, "v": v}
    return out


def spectral_regulariser(params, vectors: dict, *, num_iters: int = 4):
    """`(SR(θ), new vectors)`: Σ_l uᵀ W̃_l v after `num_iters` power iterations from the
    persistent `vectors` (`init_power_vectors`); differentiable in `params` through W̃ only."""
    kernels = wn_kernels(params)
    if set(kernels) != set(vectors):
        raise ValueError(
            f"spectral_regulariser: the power vectors are for layers {sorted(vectors)}, the "
            f"parameters have {sorted(kernels)}"
        )
    total, new = jnp.zeros((), jnp.float32), {}
    for path, w in kernels.items():
        u, v = power_iterate(w, vectors[path]["u"], vectors[path]["v"], num_iters)
        total = total + u @ w @ v
        new[path] = {"u": u, "v": v}
    return total, new

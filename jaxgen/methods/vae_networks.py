"""The `vae` recipe's encoder and decoder (docs/methods/vae.md §1), as pure functions of their
parameters and BatchNorm statistics:

    "mlp"   MLPs of `model.hidden` on the flattened example (no BatchNorm: statistics `{}`)
    "conv"  GLF's InfoGAN-style encoder and decoder (`jaxgen/nn/autoencoder.py`, width
            `model.width`, BatchNorm with decay `model.bn_momentum`): images only, square, of
            a size that is a multiple of 4; statistics `{"encoder": ..., "decoder": ...}`

The encoder gives (μ, log σ²) stacked, `[B, 2d]`. The decoder gives `[B, *shape]`: the Gaussian
mean μ_x(z) (`model.decoder="gaussian"`; the MLP's last layer as it is, the conv decoder's through
tanh, so in (−1, 1), the data's range) or the Bernoulli logits ℓ (`"bernoulli"`; either
network's last layer as it is). `model` is the recipe's `vae.Model` section.
"""

import math
from functools import partial

import jax
import jax.numpy as jnp

from jaxgen.methods.common import check_network_input, init_params
from jaxgen.nn.autoencoder import Decoder, Encoder, check_image_size, init_variables
from jaxgen.nn.batch_stats import apply_with_batch_stats
from jaxgen.nn.mlp import MLP


def check_data(model, shape: tuple, who: str) -> None:
    """One `ValueError` unless examples of `shape` (`(D,)` or `(H, W, C)`) suit
    `model.network` and `model.decoder`."""
    check_network_input(shape, model.network, who, images=("conv",))
    if model.decoder == "bernoulli" and len(shape) != 3:
        raise ValueError(
            f"{who}: model.decoder='bernoulli' models pixels in [-1, 1] and takes images "
            f"[B, H, W, C]; got examples of shape {tuple(shape)} (use model.decoder='gaussian')"
        )
    if model.network == "conv":
        try:
            check_image_size(*shape[:2])
        except ValueError as e:
            raise ValueError(f"{who}: model.network='conv': {e}") from None


def encoder(model):
    """x `[B, ...]` → (μ, log σ²) stacked `[B, 2d]`."""
    if model.network == "conv":
        return Encoder(2 * model.latent, model.bn_momentum, model.width)
    return MLP((*model.hidden, 2 * model.latent), act=model.act)


def decoder(model, shape: tuple):
    """z `[B, d]` → μ_x(z) or ℓ(z) (flat `[B, D]` for the MLP)."""
    if model.network == "conv":
        tanh = model.decoder == "gaussian"
        return Decoder(shape[0], shape[2], model.bn_momentum, model.width, tanh=tanh)
    return MLP((*model.hidden, math.prod(shape)), act=model.act)


def init(model, shape: tuple, k_enc, k_dec) -> tuple[dict, dict]:
    """`(params {"encoder", "decoder"}, BatchNorm statistics)` for examples of `shape`."""
    if model.network == "conv":
        return _init_conv(model, tuple(shape), k_enc, k_dec)
    params = {
        "encoder": init_params(encoder(model), k_enc, jnp.zeros((1, math.prod(shape)))),
        "decoder": init_params(decoder(model, shape), k_dec, jnp.zeros((1, model.latent))),
    }
    return params, {}


@partial(jax.jit, static_argnums=(0, 1))
def _init_conv(model, shape: tuple, k_enc, k_dec):
    """The conv networks' reference initialisation (`init_variables`), one compiled program."""
    enc = init_variables(encoder(model), k_enc, jnp.zeros((1, *shape)))
    dec = init_variables(decoder(model, shape), k_dec, jnp.zeros((1, model.latent)))
    params = {"encoder": enc["params"], "decoder": dec["params"]}
    return params, {"encoder": enc["batch_stats"], "decoder": dec["batch_stats"]}


def apply_encoder(model, params, stats, x, *, train: bool):
    """`(h [B, 2d], stats)` for `x` `[B, ...]`: BatchNorm on the batch's statistics when `train`
    (and the running averages in `stats` updated), else on the running averages."""
    if model.network != "conv":
        return encoder(model).apply({"params": params["encoder"]}, x.reshape(x.shape[0], -1)), stats
    h, new = apply_with_batch_stats(
        encoder(model), params["encoder"], stats["encoder"], x, train=train
    )
    return h, {**stats, "encoder": new}


def apply_decoder(model, params, stats, z, shape: tuple, *, train: bool):
    """`(out [B, *shape], stats)` for `z` `[B, d]` (BatchNorm as in `apply_encoder`)."""
    dec = decoder(model, shape)
    if model.network != "conv":
        out = dec.apply({"params": params["decoder"]}, z)
        return out.reshape(z.shape[0], *shape), stats
    out, new = apply_with_batch_stats(dec, params["decoder"], stats["decoder"], z, train=train)
    return out, {**stats, "decoder": new}

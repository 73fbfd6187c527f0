"""VAEBM on Fashion-MNIST over the conv VAE base `vae/fashion_mnist_conv` (GLF's conv encoder and
decoder at width 32, latent 32, Gaussian decoder with σ_x floored at e⁻³; docs/methods/vae.md):
`vaebm/fashion_mnist`'s energy, chain (ε_z only, x = μ_x(z), a tanh in (-1, 1)) and optimizer.
The base's BatchNorm runs on its averages inside the chain.

    python -m experiments.train    --config experiments/configs/vae/fashion_mnist_conv.py --workdir runs/vae_fmnist_conv
    python -m experiments.train    --config experiments/configs/vaebm/fashion_mnist_conv.py \
        --workdir runs/vaebm_fmnist_conv --config.method.base_workdir=runs/vae_fmnist_conv
    python -m experiments.evaluate --config experiments/configs/vaebm/fashion_mnist_conv.py --workdir runs/vaebm_fmnist_conv
    # the paired control: the base with the same draws (K_test = 0)
    python -m experiments.evaluate --config experiments/configs/vaebm/fashion_mnist_conv.py \
        --workdir runs/vaebm_fmnist_conv --config.sample.langevin_steps=0
"""

import ml_collections

from experiments.configs.vaebm.fashion_mnist import get_config as mlp_based


def get_config() -> ml_collections.ConfigDict:
    c = mlp_based()
    c.model.base.update(
        dict(network="conv", width=32, latent=32, hidden=(256, 256), min_log_sigma_x=-3.0)
    )
    c.smoke_overrides = tuple(o for o in c.smoke_overrides if o[0] != "model.base.hidden")
    c.smoke_overrides += (("model.base.width", 4),)
    return c

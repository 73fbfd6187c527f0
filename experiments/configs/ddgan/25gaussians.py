"""DDGAN on 25 Gaussians (thesis §6.4.3, Fig. 6.9: T = 4 covers every mode sharply; T = 1, a
plain GAN, and the model without a latent are worse). docs/methods/ddgan.md.

    python -m experiments.train    --config experiments/configs/ddgan/25gaussians.py --workdir runs/ddgan_25g
    python -m experiments.evaluate --config experiments/configs/ddgan/25gaussians.py --workdir runs/ddgan_25g

Ablations: `--config.method.diffusion_steps=1` (2, 8), `--config.model.latent_dim=0` (no latent).
"""

from experiments.configs.ddgan_common import ddgan_toy2d_config


def get_config():
    return ddgan_toy2d_config("25gaussians")

"""The VAE base of VAEBM's 2-D experiment (thesis §4.4.1; docs/methods/vae.md): MLP encoder and
decoder (2 × 256, SiLU), latent 2, learned per-dimension σ_x, Adam 1e-3, batch 256. The thesis
follows Tanaka 2019 for the toy VAE and gives no sizes; these are ours.

    python -m experiments.train    --config experiments/configs/vae/25gaussians.py --workdir runs/vae_25g
    python -m experiments.evaluate --config experiments/configs/vae/25gaussians.py --workdir runs/vae_25g
"""

import ml_collections

from experiments.configs.common import base_config


def get_config() -> ml_collections.ConfigDict:
    c = base_config("vae", dataset="25gaussians", batch_size=256, num_steps=20_000)
    c.train.steps_per_call = 10
    c.eval.metrics = ("log_likelihood", "mode_coverage", "mmd", "energy_distance")
    # the smoke variant's IWAE: 8 samples instead of 1000 (the grid check alone is 128² points)
    c.smoke_overrides += (("sample.iwae_samples", 8), ("sample.iwae_chunk", 8))
    return c

"""DDGAN on 25 Gaussians (thesis §6.4.3, Fig. 6.9: T = 4 covers every mode sharply; T = 1, a
plain GAN, and the model without a latent are worse). docs/methods/ddgan.md.

    python -m experiments.train    --config experiments/configs/ddgan/25gaussians.py --workdir runs/ddgan_25g
    python -m experiments.evaluate --config experiments/configs/ddgan/25gaussians.py --workdir runs/ddgan_25g

Ablations: `--config.method.diffusion_steps=1` (2, 8), `--config.model.latent_dim=0` (no latent).

These are the thesis's settings (3 × 512, batch 512, 50k steps, Adam 1e-4), not yet run to the
end here (stopped at 21k, where samples still lie on the grid lines). What was measured on this
CPU (docs/results.md, "DDGAN on 25 Gaussians", 3 seeds): with `--config.model.hidden=(256,256,256)
--config.data.batch_size=256 --config.train.num_steps=30000 --config.optim.gen.lr=5e-4
--config.optim.disc.lr=5e-4 --config.optim.gen.total_steps=30000
--config.optim.disc.total_steps=30000`, T = 4 covers 16 of the 25 modes and T = 8
(`--config.method.diffusion_steps=8`) all 25.
"""

from experiments.configs.ddgan_common import ddgan_toy2d_config


def get_config():
    return ddgan_toy2d_config("25gaussians")

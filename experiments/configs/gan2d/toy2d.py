"""A small GAN on 2-D data (docs/methods/gan2d.md): generator with BatchNorm, discriminator, the
non-saturating losses, Adam (G 1e-4, D 4e-4, β = (0.5, 0.9)), EMA on G only, and a replay
buffer of earlier fakes for half of D's fake batch. Not a paper reproduction: the platform's
two-network recipe, and the baseline later GAN recipes (DDGAN) compare against.

    python -m experiments.train    --config experiments/configs/gan2d/toy2d.py --workdir runs/gan_8g
    python -m experiments.sample   --config experiments/configs/gan2d/toy2d.py --workdir runs/gan_8g \
        --num 2000 --out runs/gan_8g/samples.npy
    python -m experiments.evaluate --config experiments/configs/gan2d/toy2d.py --workdir runs/gan_8g
"""

import ml_collections

from experiments.configs.common import base_config


def get_config() -> ml_collections.ConfigDict:
    c = base_config("gan2d", dataset="8gaussians", batch_size=256, num_steps=5000)
    c.train.steps_per_call = 10
    c.eval.metrics = ("mode_coverage", "mmd", "energy_distance")
    return c

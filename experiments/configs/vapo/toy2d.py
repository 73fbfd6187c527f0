"""VAPO on 2-D data (Loo et al. 2024, Fig. 1; docs/methods/vapo.md §3).

The paper reports no 2-D numbers; it shows the learned field ∇Φ pointing at the data (Fig. 1).
Targets here: on `8gaussians` every mode gets 12.5% ± 3 points of the samples. The network,
method constants, optimizer (Adam 1e-3, EMA 0.999) and sampler (Dopri5, T = 1) are the recipe's
defaults.

    python -m experiments.train  --config experiments/configs/vapo/toy2d.py --workdir runs/vapo_8g
    python -m experiments.sample --config experiments/configs/vapo/toy2d.py --workdir runs/vapo_8g \
        --num 2000 --out runs/vapo_8g/samples.npy
    python -m experiments.evaluate --config experiments/configs/vapo/toy2d.py --workdir runs/vapo_8g

Other data: `--config.data.name=25gaussians` (any 2-D set of `jaxgen.data.TOY2D_NAMES`).
"""

import ml_collections

from experiments.configs.common import base_config


def get_config() -> ml_collections.ConfigDict:
    c = base_config("vapo", dataset="8gaussians", batch_size=256, num_steps=3000)
    c.train.steps_per_call = 10  # tiny steps: 10 per dispatch keeps the host out of the way
    c.eval.metrics = ("mode_coverage", "mmd", "energy_distance")
    return c

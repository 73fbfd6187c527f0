"""VAPO on 2-D data (Loo et al. 2024, Fig. 1; spec `vapo.md` §12, §14).

The paper reports no 2-D numbers; it shows the learned field ∇Φ pointing at the data (Fig. 1).
Targets here: on `8gaussians` every mode gets 12.5% ± 3 points of the samples.

    python -m experiments.train  --config experiments/configs/vapo/toy2d.py --workdir runs/vapo_8g
    python -m experiments.sample --config experiments/configs/vapo/toy2d.py --workdir runs/vapo_8g \
        --num 2000 --out runs/vapo_8g/samples.npy
    python -m experiments.evaluate --config experiments/configs/vapo/toy2d.py --workdir runs/vapo_8g

Other data: `--config.data.name=25gaussians` (any 2-D set of `jaxgen.data.TOY2D_NAMES`).
"""

import ml_collections

from experiments.configs.common import base_config
from experiments.configs.vapo_common import set_vapo_method, set_vapo_sampler


def get_config() -> ml_collections.ConfigDict:
    c = base_config(dataset="8gaussians", batch_size=256, num_steps=3000)
    c.recipe = "vapo"
    c.train.steps_per_call = 10  # tiny steps: 10 per dispatch keeps the host out of the way
    c.model.update(dict(network="mlp", hidden=(128, 128, 128), act="gelu"))
    set_vapo_method(c)
    c.optim.update(
        dict(
            optimizer="adam",
            lr=1e-3,
            b1=0.9,
            b2=0.999,
            weight_decay=0.0,
            warmup_steps=0,
            decay="constant",
            grad_clip=0.0,
            ema_rate=0.999,
        )
    )
    set_vapo_sampler(c, t_end=1.0)
    c.eval.metrics = ("mode_coverage", "mmd", "energy_distance")
    return c

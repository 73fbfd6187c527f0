"""FDRL on the reference code's own toy setting (spec §4.3; docs/methods/fdrl.md §3.2): the
Swiss roll of `make_swiss_roll(noise=0.25)`, columns (x, z), divided by 7.5 (`swissroll_fdrl`),
LSIF-χ², MLP 2-64-64-64-64-1 LeakyReLU(0.2), prior N(0, I), K = 200 Euler–Maruyama steps of
η = 1 with ν = 0.01, batch 1024, Adam 5e-5 × 0.1 at 5k, 10k, 15k of 20k steps, EMA 0.998.

    python -m experiments.train    --config experiments/configs/fdrl/swissroll.py --workdir runs/fdrl_swissroll
    python -m experiments.evaluate --config experiments/configs/fdrl/swissroll.py --workdir runs/fdrl_swissroll

`--config.data.name=8gaussians` runs the same pairing on our wider 8 Gaussians (where it
diverges: docs/results.md, "FDRL's LSIF-χ² on the code's Swiss roll").
"""

import ml_collections

from experiments.configs.common import base_config


def get_config() -> ml_collections.ConfigDict:
    c = base_config("fdrl", dataset="swissroll_fdrl", batch_size=1024, num_steps=20_000)
    c.train.update(dict(steps_per_call=10, log_every=200, ckpt_every=2000, sample_every=2000))
    c.method.update(dict(loss="lsif", divergence="pearson", flow_steps=200, step_size=1.0))
    c.optim.ratio.update(dict(lr=5e-5, decay="milestones", milestones=(5000, 10_000, 15_000)))
    c.eval.update(dict(num_samples=2000, batch_size=2000))
    c.eval.metrics = ("mmd", "energy_distance")
    return c

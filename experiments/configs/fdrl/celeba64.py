"""FDRL on CelebA 64×64 (Heng et al., Table 1: FID 17.77 LSIF-χ², 18.09 LR-KL; DDP prior).

The paper's setting (docs/methods/fdrl.md §3.2): the 5.13 M-parameter ratio ResNet of Table 3,
centre crop 140 then 64² (`celeba64`), DDP prior (d = 12288: a 0.6 GB Cholesky factor, fitted by
streaming float64 moments and kept once per run in `DIR/data_fit.npz`), K = 100 of η = 3,
K + κ = 120, Adam 1e-4 with ×0.1 at 80k and 90k of 100k steps, batch 64, EMA 0.998, flips.

    python -m experiments.train --config experiments/configs/fdrl/celeba64.py --workdir runs/fdrl_celeba \
        --config.data.data_dir=/path/to/tensorflow_datasets
"""

from experiments.configs.fdrl_common import fdrl_image_config


def get_config():
    c = fdrl_image_config(dataset="celeba64", layout="celeba64")
    # the smoke variant samples from N(0, I): the DDP fit's Cholesky at D = 12288 costs ≈ 20 s
    # of a test machine's core; the cifar10 smoke runs the same fit at D = 3072
    c.smoke_overrides += (("method.prior", "normal"),)
    return c

"""FDRL on LSUN Church 128×128 (Heng et al.: qualitative results only, no FID reported).

The paper's setting (docs/methods/fdrl.md §3.2): the 5.44 M-parameter ratio ResNet of Table 3,
the whole image resized to 128² (`lsun_church128`, no crop, as the code), DDP prior (d = 49152:
27 GiB of host memory at its peak, an 18 GiB float64 accumulator factorised in place and its
9 GiB float32 Cholesky factor, once per run; the factor is also held on every device), K = 100
of η = 3, K + κ = 120, Adam 1e-4 with ×0.1 at 80k and 90k of 100k steps, batch 64, EMA 0.998.

    python -m experiments.train --config experiments/configs/fdrl/lsun_church128.py \
        --workdir runs/fdrl_church --config.data.data_dir=/path/to/tensorflow_datasets
"""

from experiments.configs.fdrl_common import fdrl_image_config


def get_config():
    c = fdrl_image_config(dataset="lsun_church128", layout="lsun_church128")
    # the smoke variant samples from N(0, I): the DDP fit at D = 49152 needs 27 GiB of host
    # memory, more than a test machine has (the cifar10 smoke runs the same fit at D = 3072)
    c.smoke_overrides += (("method.prior", "normal"),)
    return c

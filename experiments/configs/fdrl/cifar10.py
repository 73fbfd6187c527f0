"""FDRL on CIFAR-10 32×32 (Heng et al., Table 1: FID 22.28 LSIF-χ², 22.61 LR-KL, 22.80 LR-JS,
22.82 LR-logD, all with the data-dependent prior; 30.2 with the uniform prior).

The paper's setting (docs/methods/fdrl.md §3.2): the 11.37 M-parameter ratio ResNet of Table 3,
DDP prior, K = 100 flow steps of η = 3 (ν = 0.01) per training step, K + κ = 120 to sample,
Adam 1e-4 with ×0.1 at 80k and 90k of 100k steps, batch 64, EMA 0.998, flips. The reference
code's `cifar10.yaml` turns spectral norm on, against the paper's text: `--config.model.
spectral_norm=True` gives it.

    python -m experiments.train --config experiments/configs/fdrl/cifar10.py --workdir runs/fdrl_cifar10 \
        --config.data.data_dir=/path/to/tensorflow_datasets

Other losses: `--config.method.loss=lr --config.method.divergence=kl` (or js, logd). Uniform
prior: `--config.method.prior=uniform --config.sample.refine_steps=10 --config.train.num_steps=120000`.
"""

from experiments.configs.fdrl_common import fdrl_image_config


def get_config():
    return fdrl_image_config(dataset="cifar10", layout="cifar10")

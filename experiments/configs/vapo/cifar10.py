"""VAPO on CIFAR-10 32×32 (Loo et al. 2024, Table 1: FID 16.6 on the training-set statistics).

Paper setting (docs/methods/vapo.md §3): DRL energy ResNet ch 128, ch_mult (1,2,2,2), 8 blocks per
resolution (≈30.7M parameters), GELU, weight norm; LAMB lr 5e-3, β1 0.9; batch 256; 1.3M
iterations; random flips; ODE Dopri5 rtol = atol = 1e-3, T = 2 (the paper's T was lost; sweep it).

    python -m experiments.train --config experiments/configs/vapo/cifar10.py --workdir runs/vapo_cifar10 \
        --config.data.data_dir=/path/to/tensorflow_datasets
"""

from experiments.configs.vapo_common import vapo_image_config


def get_config():
    return vapo_image_config(
        dataset="cifar10",
        batch_size=256,
        ch_mult=(1, 2, 2, 2),
        num_res_blocks=8,
        b1=0.9,
        channels=3,
    )

"""VAPO on CelebA 64×64 (Loo et al. 2024, Table 2: FID 14.5 on the test-set statistics).

Paper setting (docs/methods/vapo.md §3): DRL energy ResNet ch 128, ch_mult (1,2,2,2,4), 6 blocks per
resolution (≈51.4M parameters); LAMB lr 5e-3, β1 0.5; batch 128; 1.3M iterations; centre crop 140
then resize to 64; random flips; ODE Dopri5 rtol = atol = 1e-3, T = 2.

    python -m experiments.train --config experiments/configs/vapo/celeba64.py --workdir runs/vapo_celeba \
        --config.data.data_dir=/path/to/tensorflow_datasets
"""

from experiments.configs.vapo_common import vapo_image_config


def get_config():
    c = vapo_image_config(
        dataset="celeba64",
        batch_size=128,
        ch_mult=(1, 2, 2, 2, 4),
        num_res_blocks=6,
        b1=0.5,
        channels=3,
    )
    c.eval.reference_split = "test"  # the paper's CelebA FID is against test-set statistics
    return c

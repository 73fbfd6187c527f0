"""Short-run EBM on CelebA 64×64 (thesis Table 5.1: FID 69.6 noisy, 56.6 noise-free, 34.8 with
the generator loss; docs/methods/shortrun_ebm.md). The resolution is not stated; four stride-2
convs fit 64×64 with the 160-crop of ch. 3 (`celeba64_crop160`). nf = 32, K = 60, batch 64,
30k steps of Adam 5e-4.

    python -m experiments.train --config experiments/configs/shortrun_ebm/celeba64.py --workdir runs/srl_celeba
"""

from experiments.configs.shortrun_common import CONV_WIDTHS, image_config


def get_config():
    return image_config(
        dataset="celeba64_crop160",
        nf=32,
        widths=CONV_WIDTHS["celeba"],
        num_steps=30_000,
        langevin_steps=60,
    )

"""Short-run EBM on CIFAR-10 (thesis Table 5.1: FID 70.4 noisy, 61.6 noise-free, 47.9 with the
generator loss; docs/methods/shortrun_ebm.md). Table 5.2's network with nf = 64, K = 60,
batch 64, 40k steps of Adam 5e-4. Noisy dynamics diverge after about 20k steps (Fig. 5.9).

    python -m experiments.train --config experiments/configs/shortrun_ebm/cifar10.py --workdir runs/srl_cifar
"""

from experiments.configs.shortrun_common import CONV_WIDTHS, image_config


def get_config():
    return image_config(
        dataset="cifar10", nf=64, widths=CONV_WIDTHS["cifar10"], num_steps=40_000, langevin_steps=60
    )

"""VAPO on Fashion-MNIST 28×28 at CPU scale (not in the paper: the largest real image set on
these machines; see docs/results.md for what 2 CPU cores reach).

Reduced network (stated in the results): energy ResNet ch 32, ch_mult (1, 2, 2) (28 → 14 → 7),
1 block per resolution; Adam lr 1e-3 with global-norm clipping 1 (the setting that trains on
CPU, docs/methods/vapo.md §3), batch 64, flips, T = 2.

    python -m experiments.train --config experiments/configs/vapo/fashion_mnist.py --workdir runs/vapo_fmnist
"""

from experiments.configs.vapo_common import vapo_image_config


def get_config():
    c = vapo_image_config(
        dataset="fashion_mnist",
        batch_size=64,
        ch_mult=(1, 2, 2),
        num_res_blocks=1,
        b1=0.9,
        channels=1,
    )
    c.model.update(dict(ch=32, batch_splits=2))  # 2 concurrent batch slices: 2 CPU cores
    c.optim.potential.update(
        dict(optimizer="adam", lr=1e-3, warmup_steps=0, grad_clip=1.0, ema_rate=0.999)
    )
    c.train.update(dict(num_steps=20_000, ckpt_every=1000, sample_every=1000))
    c.eval.update(
        dict(
            num_samples=2000,
            batch_size=500,
            ood_sets=("digits", "interpolated", "uniform_noise", "gaussian_noise"),
        )
    )
    return c

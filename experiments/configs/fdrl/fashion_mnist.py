"""FDRL on Fashion-MNIST padded to 32×32, sized for a 2-core CPU (docs/methods/fdrl.md §3.2; no
paper number: FD-fashion_mnist / KID / precision-recall against the other methods here, and the
paper's orderings — DDP against the uniform prior, LSIF-χ² against LR-KL, FD against κ).

The paper's CIFAR-10 recipe (LSIF-χ², DDP prior clamped to [-1, 1], η = 3, ν = 0.01, Adam 1e-4,
dequantisation 0.03, flips) with what the CPU cannot afford cut: the "fashion_mnist" ratio
ResNet (149,713 parameters, ≈ 8.5 M MACs per example), K = 20 training flow steps instead of
100 (K + κ = 40 to sample), 600 steps of batch 64 at a constant rate instead of 100k with
milestones, EMA 0.99 for the short run (0.998 averages over more steps than the run has).
Measured on the 2-core CPU (2026-12-03): 2.9 s per step, ≈ 30 minutes for the run.

    python -m experiments.train    --config experiments/configs/fdrl/fashion_mnist.py --workdir runs/fdrl_fmnist
    python -m experiments.evaluate --config experiments/configs/fdrl/fashion_mnist.py --workdir runs/fdrl_fmnist

LR-KL: `--config.method.loss=lr --config.method.divergence=kl`; the uniform prior:
`--config.method.prior=uniform --config.sample.refine_steps=10` (the paper's κ for it).
"""

from experiments.configs.fdrl_common import fdrl_image_config


def get_config():
    c = fdrl_image_config(
        dataset="fashion_mnist",
        layout="fashion_mnist",
        num_steps=600,
        milestones=(),
        flow_steps=20,
        refine_steps=20,
    )
    c.data.pad_to_32 = True
    c.optim.ratio.ema_rate = 0.99
    c.train.update(dict(log_every=20, ckpt_every=100, sample_every=300))
    c.eval.update(dict(num_samples=2000, batch_size=500, round_size=1000))
    return c

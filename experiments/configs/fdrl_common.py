"""Settings shared by the FDRL image configs (docs/methods/fdrl.md §3.2, spec §4.3): the ratio
ResNet of the paper's Table 3, LSIF-χ² (LR-KL / JS / logD selectable), the data-dependent prior
(DDP) clamped to [-1, 1], K = 100 training flow steps of η = 3 with ν = 0.01, sampling at
K + κ = 120, Adam 1e-4 with ×0.1 at 80k and 90k of 100k steps, batch 64, EMA 0.998, the code's
0.03 Gaussian dequantisation of the data batches, random flips."""

import ml_collections

from experiments.configs.common import base_config


def fdrl_image_config(
    *,
    dataset: str,
    layout: str,
    spectral_norm: bool = False,
    batch_size: int = 64,
    num_steps: int = 100_000,
    milestones: tuple[int, ...] = (80_000, 90_000),
    flow_steps: int = 100,
    refine_steps: int = 20,
    flip: bool = True,
) -> ml_collections.ConfigDict:
    c = base_config("fdrl", dataset=dataset, batch_size=batch_size, num_steps=num_steps)
    c.data.flip = flip
    c.model.update(dict(network="resnet", layout=layout, spectral_norm=spectral_norm))
    c.method.update(
        dict(
            loss="lsif",
            divergence="pearson",
            prior="ddp",
            prior_jitter=1e-4,
            clip=True,
            flow_steps=flow_steps,
            step_size=3.0,
            noise=0.01,
            dequant=0.03,
        )
    )
    c.sample.refine_steps = refine_steps  # κ: 20 with the DDP prior, 10 with the uniform one
    decay = dict(decay="milestones", milestones=milestones) if milestones else {"decay": "constant"}
    c.optim.ratio.update(dict(lr=1e-4, b1=0.9, b2=0.999, ema_rate=0.998, **decay))
    c.train.update(dict(log_every=100, ckpt_every=5000, sample_every=5000))
    c.eval.update(dict(num_samples=50_000, batch_size=200, round_size=5000))
    # smoke variant: the same kinds of layers (the narrow CPU layout; the paper layouts' states
    # are built full-size by tests/test_abstract_init.py) and prior, two flow steps
    c.smoke_overrides = (
        ("model.layout", "fashion_mnist"),
        ("method.flow_steps", 2),
        ("sample.refine_steps", 1),
    )
    return c

"""Settings shared by the VAPO image configs (docs/methods/vapo.md §3); the method's constants
and the sampler are the recipe's defaults."""

import ml_collections

from experiments.configs.common import base_config


def vapo_image_config(
    *, dataset: str, batch_size: int, ch_mult, num_res_blocks: int, b1: float, channels: int
) -> ml_collections.ConfigDict:
    c = base_config("vapo", dataset=dataset, batch_size=batch_size, num_steps=1_300_000)
    c.data.flip = True
    c.train.update(dict(log_every=100, ckpt_every=10_000, sample_every=10_000, keep=3))
    c.model.update(
        dict(
            network="resnet",
            channels=channels,
            ch_mult=tuple(ch_mult),
            num_res_blocks=num_res_blocks,
        )
    )
    c.optim.potential.update(
        dict(optimizer="lamb", lr=5e-3, b1=b1, warmup_steps=1000, grad_clip=1.0, ema_rate=0.9999)
    )
    c.sample.t_end = 2.0
    c.eval.update(dict(num_samples=50_000, batch_size=500))
    # smoke variant: the same architecture, narrow and shallow
    c.smoke_overrides = (("model.ch", 8), ("model.num_res_blocks", 1))
    return c

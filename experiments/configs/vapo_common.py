"""Settings shared by the VAPO configs (spec `vapo.md` §6-§9)."""

import ml_collections

from experiments.configs.common import base_config


def vapo_image_config(
    *, dataset: str, batch_size: int, ch_mult, num_res_blocks: int, b1: float, channels: int
) -> ml_collections.ConfigDict:
    c = base_config(dataset=dataset, batch_size=batch_size, num_steps=1_300_000)
    c.recipe = "vapo"
    c.data.flip = True
    c.train.update(dict(log_every=100, ckpt_every=10_000, sample_every=10_000, keep=3))
    c.model.update(
        dict(
            network="resnet",
            channels=channels,
            ch=128,
            ch_mult=tuple(ch_mult),
            num_res_blocks=num_res_blocks,
            zero_init_scale=1e-3,
            residual_scale=1.0,
            data_init=False,  # NVAE-style data-dependent weight-norm init (off in the paper)
        )
    )
    set_vapo_method(c)
    c.optim.update(
        dict(
            optimizer="lamb",
            lr=5e-3,
            b1=b1,
            b2=0.999,
            weight_decay=0.0,
            warmup_steps=1000,
            decay="constant",
            grad_clip=1.0,
            ema_rate=0.9999,
        )
    )
    set_vapo_sampler(c, t_end=2.0)
    c.eval.update(dict(num_samples=50_000, batch_size=500, metrics=("default",)))
    return c


def set_vapo_method(c: ml_collections.ConfigDict) -> None:
    """The paper's constants: σ0 = 1, σ = 0.01, ε = 1e-4 = σ²/σ0², λ = 1e-4 (spec §7)."""
    c.method.update(
        dict(sigma0=1.0, sigma=0.01, eps=1e-4, lam=1e-4, jacobian=True, loss_per_dim=False)
    )


def set_vapo_sampler(c: ml_collections.ConfigDict, *, t_end: float) -> None:
    """Dopri5 with one step-size controller for the batch, rtol = atol = 1e-3 (spec §5.1)."""
    c.sample.update(
        dict(
            t_end=t_end,
            solver="dopri5",
            rtol=1e-3,
            atol=1e-3,
            fixed_steps=100,
            per_sample=False,
            max_steps=4096,
        )
    )

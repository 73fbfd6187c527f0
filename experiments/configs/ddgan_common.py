"""Settings shared by the DDGAN configs (docs/methods/ddgan.md §6): the public code's README
values, which its maintainers call the correct ones (the thesis's Table 6.8 values are noted
where they differ), the cosine decay of both rates to 1e-5 over the run, EMA on G only."""

import ml_collections

from experiments.configs.common import base_config
from jaxgen.data import example_shape


def ddgan_image_config(
    *,
    dataset: str,
    batch_size: int,
    epochs: int,
    train_size: int,
    diffusion_steps: int,
    generator: dict,
    disc: str,
    lr_d: float,
    lr_g: float,
    ema: float,
    r1_gamma: float,
    lazy_reg: int,
    pad_to_32: bool = False,
    num_steps: int = 0,
) -> ml_collections.ConfigDict:
    """An image config: `epochs` of `train_size` images at `batch_size` (global), T =
    `diffusion_steps`, the NCSN++ generator `generator` (fields of `model`), discriminator layout
    `disc`, random horizontal flips (as the public code, on every data set). The cosine decays
    are pinned to the planned run (`total_steps`), so a run lengthened later resumes.
    `num_steps` > 0 sets the run's length in steps instead of `epochs`."""
    num_steps = num_steps or epochs * (train_size // batch_size)
    c = base_config("ddgan", dataset=dataset, batch_size=batch_size, num_steps=num_steps)
    c.data.flip = True
    c.data.pad_to_32 = pad_to_32
    c.model.update(dict(network="ncsnpp", disc=disc, **generator))
    c.method.update(dict(diffusion_steps=diffusion_steps, r1_gamma=r1_gamma, lazy_reg=lazy_reg))
    for net, lr in (("gen", lr_g), ("disc", lr_d)):
        c.optim[net].update(
            dict(lr=lr, decay="cosine", total_steps=num_steps, min_lr_ratio=1e-5 / lr)
        )
    c.optim.gen.ema_rate = ema
    c.train.update(dict(log_every=100, ckpt_every=5000, sample_every=5000))
    c.eval.update(dict(num_samples=50_000, batch_size=500, round_size=5000))
    # smoke variant: the same kinds of layers, narrow; at 32² two levels of one block each (the
    # U-Net's compile time grows with its depth), at 256² all levels (to reach 16²) but narrow
    side = example_shape(dataset, pad_to_32=pad_to_32)[0]
    levels = (1, 2) if side <= 32 else (1,) * len(generator["ch_mult"])
    c.smoke_overrides = (
        ("model.ch_mult", levels),
        # R1 at every step: one branch of the lazy `lax.cond` to compile instead of two (the
        # lazy interval itself is tested on the 2-D networks in tests/test_ddgan.py)
        ("method.lazy_reg", 1),
        ("model.num_res_blocks", 1),
        ("model.nf", 8),
        ("model.z_emb_dim", 8),
        ("model.latent_dim", 4),
        ("model.n_mlp", 1),
        ("model.disc_ngf", 4),
    )
    return c


def ddgan_toy2d_config(dataset: str) -> ml_collections.ConfigDict:
    """The 25-Gaussians setting (thesis §6.4.3): MLPs of 3 × 512, LeakyReLU 0.2, Adam 1e-4 for
    both networks, batch 512, 50k iterations, T = 4 (z's size and R1 are not stated: z 2-D, the
    recipe's lazy R1 γ 0.02 every 15 steps)."""
    c = base_config("ddgan", dataset=dataset, batch_size=512, num_steps=50_000)
    c.model.update(dict(network="mlp", latent_dim=2))
    for net in ("gen", "disc"):
        c.optim[net].update(dict(lr=1e-4, decay="cosine", total_steps=50_000, min_lr_ratio=0.1))
    c.optim.gen.ema_rate = 0.999
    c.train.update(dict(log_every=500, ckpt_every=5000, sample_every=5000, steps_per_call=10))
    c.eval.update(dict(num_samples=10_000, batch_size=10_000))
    c.eval.metrics = ("mode_coverage", "mmd", "energy_distance")
    c.smoke_overrides = (("model.hidden", (16, 16, 16)),)
    return c

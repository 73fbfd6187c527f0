"""DDGAN on Fashion-MNIST padded to 32×32, sized for a 2-core CPU (docs/methods/ddgan.md §6;
no thesis number: FD-fashion_mnist / KID / precision-recall against the other methods here).

T = 4; a narrow NCSN++ G (the "fashion_mnist" layout: ch_mult (1, 2, 2), attention at 16², nz 32,
z_emb 64, 2 mapping layers, here at nf 8 with one residual block per level) and the small D at
ngf 8; batch 32, 1500 steps; the CIFAR-10 README's rates, R1 and EMA (0.999 for the short run).
Measured on the 2-core CPU (2026-12-02): 0.75 s per plain step, 5.2 s on the R1 steps (every
15th), ≈ 1.2 s per step on average, ≈ 30 minutes for the run. The wider layout (nf 16, two blocks, D ngf 16, batch 64) costs
7.4 s per step there: `--config.model.nf=16 --config.model.num_res_blocks=2
--config.model.disc_ngf=16 --config.data.batch_size=64` on an accelerator.

    python -m experiments.train    --config experiments/configs/ddgan/fashion_mnist.py --workdir runs/ddgan_fmnist
    python -m experiments.evaluate --config experiments/configs/ddgan/fashion_mnist.py --workdir runs/ddgan_fmnist
"""

from experiments.configs.ddgan_common import ddgan_image_config
from jaxgen.nn.ncsnpp import GENERATOR_CONFIGS


def get_config():
    generator = {k: v for k, v in GENERATOR_CONFIGS["fashion_mnist"].items() if k != "out_channels"}
    generator.update(nf=8, num_res_blocks=1)
    c = ddgan_image_config(
        dataset="fashion_mnist",
        batch_size=32,
        epochs=0,
        num_steps=1500,
        train_size=60_000,
        diffusion_steps=4,
        generator=generator,
        disc="fashion_mnist",
        lr_d=1.25e-4,
        lr_g=1.6e-4,
        ema=0.999,
        r1_gamma=0.02,
        lazy_reg=15,
        pad_to_32=True,
    )
    c.model.disc_ngf = 8
    c.train.update(dict(ckpt_every=500, sample_every=1000, log_every=50))
    c.eval.update(dict(num_samples=10_000, round_size=2000))
    return c

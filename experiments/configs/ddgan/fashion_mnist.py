"""DDGAN on Fashion-MNIST padded to 32×32, sized for a 2-core CPU (docs/methods/ddgan.md §6;
no thesis number: FD-fashion_mnist / KID / precision-recall against the other methods here).

T = 4; a narrow NCSN++ G (nf 16, ch_mult (1, 2, 2), attention at 16², nz 32, z_emb 64, 2 mapping
layers) and the small D at ngf 32; batch 64; the CIFAR-10 README's rates, R1 and EMA.

    python -m experiments.train    --config experiments/configs/ddgan/fashion_mnist.py --workdir runs/ddgan_fmnist
    python -m experiments.evaluate --config experiments/configs/ddgan/fashion_mnist.py --workdir runs/ddgan_fmnist
"""

from experiments.configs.ddgan_common import ddgan_image_config
from jaxgen.nn.ncsnpp import GENERATOR_CONFIGS


def get_config():
    generator = {k: v for k, v in GENERATOR_CONFIGS["fashion_mnist"].items() if k != "out_channels"}
    c = ddgan_image_config(
        dataset="fashion_mnist",
        batch_size=64,
        epochs=20,
        train_size=60_000,
        num_steps_t=4,
        generator=generator,
        disc="fashion_mnist",
        lr_d=1.25e-4,
        lr_g=1.6e-4,
        ema=0.9999,
        r1_gamma=0.02,
        lazy_reg=15,
        pad_to_32=True,
    )
    c.train.update(dict(ckpt_every=500, sample_every=1000, log_every=20))
    c.eval.update(dict(num_samples=10_000, round_size=2000))
    return c

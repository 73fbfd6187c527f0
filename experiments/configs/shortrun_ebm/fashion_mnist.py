"""Short-run EBM on Fashion-MNIST at 32×32 (thesis Table 5.1: FID 61.7 noisy, 50.1 noise-free,
40.6 noise-free + generator loss; docs/methods/shortrun_ebm.md). The thesis resizes 28 → 32;
here the images are zero-padded to 32 (`data.pad_to_32`, the loader's one 32×32 form).

Table 5.2's network with nf = 32, K = 40 Euler steps of 0.1·∇E from N(0, I), batch 64,
8000 steps of Adam 5e-4.

    python -m experiments.train    --config experiments/configs/shortrun_ebm/fashion_mnist.py --workdir runs/srl_fmnist
    python -m experiments.evaluate --config experiments/configs/shortrun_ebm/fashion_mnist.py --workdir runs/srl_fmnist

Variants: `--config.method.noise_std=0.1` (noisy dynamics), `--config.method.generator_loss=True`.
"Step size 0.1" may mean η = 0.1, i.e. `--config.method.step=0.05` (the method note §4).
"""

from experiments.configs.shortrun_common import CONV_WIDTHS, image_config


def get_config():
    c = image_config(
        dataset="fashion_mnist",
        nf=32,
        widths=CONV_WIDTHS["mnist"],
        num_steps=8000,
        langevin_steps=40,
    )
    c.data.pad_to_32 = True
    return c

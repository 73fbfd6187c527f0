"""DDGAN on CIFAR-10 32×32 (thesis Table 6.1: FID 3.75, recall 0.57 at NFE 4).

The public README's settings (docs/methods/ddgan.md §6): T = 4, NCSN++ G nf 128, ch_mult
(1, 2, 2, 2), nz 100, z_emb 256, 4 mapping layers; D 4 blocks; global batch 256; lr D 1.25e-4,
G 1.6e-4, Adam (0.5, 0.9), cosine to 1e-5; EMA 0.9999; R1 γ 0.02 every 15 steps; 1800 epochs.
The thesis's values: `--config.model.latent_dim=256 --config.model.z_emb_dim=512
--config.model.n_mlp=3 --config.method.r1_gamma=0.05 --config.optim.disc.lr=1e-4
--config.data.batch_size=128` (400k iterations).

    python -m experiments.train --config experiments/configs/ddgan/cifar10.py --workdir runs/ddgan_cifar10 \
        --config.data.data_dir=/path/to/tensorflow_datasets
"""

from experiments.configs.ddgan_common import ddgan_image_config
from jaxgen.nn.ncsnpp import GENERATOR_CONFIGS


def get_config():
    return ddgan_image_config(
        dataset="cifar10",
        batch_size=256,
        epochs=1800,
        train_size=50_000,
        diffusion_steps=4,
        generator=GENERATOR_CONFIGS["cifar10"],
        disc="cifar10",
        lr_d=1.25e-4,
        lr_g=1.6e-4,
        ema=0.9999,
        r1_gamma=0.02,
        lazy_reg=15,
    )

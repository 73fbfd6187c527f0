"""DDGAN on LSUN Church 256×256 (thesis Table 6.5: FID 5.25).

README settings (docs/methods/ddgan.md §6): T = 4, G nf 64 (thesis 128), ch_mult
(1, 1, 2, 2, 4, 4), nz 100, z_emb 256, 3 mapping layers; the large D; batch 64; lr D 1e-4,
G 1.6e-4 (thesis 2e-4); EMA 0.999; R1 γ 1 every 10 steps; 500 epochs of the first 120k
training images (937.5k iterations; the thesis trains 600k: `--config.train.num_steps=600000`).

    python -m experiments.train --config experiments/configs/ddgan/lsun_church256.py \
        --workdir runs/ddgan_church --config.data.data_dir=/path/to/tensorflow_datasets
"""

from experiments.configs.ddgan_common import ddgan_image_config
from jaxgen.nn.ncsnpp import GENERATOR_CONFIGS


def get_config():
    c = ddgan_image_config(
        dataset="lsun_church256",
        batch_size=64,
        epochs=500,
        train_size=120_000,
        diffusion_steps=4,
        generator=GENERATOR_CONFIGS["lsun_church256"],
        disc="lsun_church256",
        lr_d=1e-4,
        lr_g=1.6e-4,
        ema=0.999,
        r1_gamma=1.0,
        lazy_reg=10,
    )
    c.data.train_limit = 120_000  # the DDGAN code's subset (docs/methods/ddgan.md §6)
    return c

"""DDGAN on CelebA-HQ 256×256 (thesis Table 6.4: FID 7.64).

README settings (docs/methods/ddgan.md §6): T = 2 (the thesis implies 4), G nf 64, ch_mult
(1, 1, 2, 2, 4, 4), nz 100, z_emb 256, 3 mapping layers; the large D; batch 32; lr D 1e-4,
G 2e-4 (thesis 1.6e-4); EMA 0.9999 (thesis 0.999); R1 γ 2 (thesis 1) every 10 steps; 800 epochs
of the 30k images (750k iterations). The tfds set `celeb_a_hq/256` must be prepared (manual
download) in `--config.data.data_dir`; nothing is downloaded.

    python -m experiments.train --config experiments/configs/ddgan/celeba_hq256.py \
        --workdir runs/ddgan_celebahq --config.data.data_dir=/path/to/tensorflow_datasets
"""

from experiments.configs.ddgan_common import ddgan_image_config
from jaxgen.nn.ncsnpp import GENERATOR_CONFIGS


def get_config():
    c = ddgan_image_config(
        dataset="celeba_hq256",
        batch_size=32,
        epochs=800,
        train_size=30_000,
        diffusion_steps=2,
        generator=GENERATOR_CONFIGS["celebahq256"],
        disc="celebahq256",
        lr_d=1e-4,
        lr_g=2e-4,
        ema=0.9999,
        r1_gamma=2.0,
        lazy_reg=10,
    )
    c.eval.num_samples = 30_000  # the thesis's protocol (the public script draws 50k)
    return c

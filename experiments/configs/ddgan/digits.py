"""DDGAN on scikit-learn's 8×8 digits (not in the thesis: the smallest image set here, the quick
check that the image recipe makes recognisable samples with D off chance; docs/results.md).

T = 4 (the thesis's CIFAR-10 setting); the NCSN++ G at nf 16, ch_mult (1, 2) (8 → 4), one
residual block per level, nz 32, z_emb 64, 2 mapping layers (attention at 4², the
lowest level, as 16² is at 32²); the small D layout at ngf 16 (8 → 4 → 2 → 1). Batch 64, 20k steps, the CIFAR-10 README's
rates (G 1.6e-4, D 1.25e-4, cosine), R1 γ 0.02 every 15 steps, G's EMA 0.999; no flips (digits
are not mirror-symmetric). Evaluated on 300 samples against the 300-image test split, as
`vapo/digits.py` (FD is compared only between sets of one size).

    python -m experiments.train    --config experiments/configs/ddgan/digits.py --workdir runs/ddgan_digits
    python -m experiments.evaluate --config experiments/configs/ddgan/digits.py --workdir runs/ddgan_digits
"""

from experiments.configs.ddgan_common import ddgan_image_config
from jaxgen.nn.ncsnpp import GENERATOR_CONFIGS


def get_config():
    generator = {k: v for k, v in GENERATOR_CONFIGS["fashion_mnist"].items() if k != "out_channels"}
    generator.update(nf=16, ch_mult=(1, 2), num_res_blocks=1)
    c = ddgan_image_config(
        dataset="digits",
        batch_size=64,
        epochs=0,
        num_steps=20_000,
        train_size=1497,
        diffusion_steps=4,
        generator=generator,
        disc="fashion_mnist",
        lr_d=1.25e-4,
        lr_g=1.6e-4,
        ema=0.999,
        r1_gamma=0.02,
        lazy_reg=15,
    )
    c.data.flip = False
    c.model.attn_resolutions = (4,)
    c.train.update(dict(ckpt_every=1000, sample_every=2000, log_every=100))
    c.eval.update(dict(num_samples=300, batch_size=300, round_size=300))
    return c

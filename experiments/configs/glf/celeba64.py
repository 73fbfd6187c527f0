"""GLF on CelebA 64×64, centre crop 160 (thesis ch. 3, Table 3.1: FID 53.2 ± 0.2 for GLF,
41.8 ± 0.2 with the perceptual loss; docs/methods/glf.md). Latent 64, flow width 256, batch
256, 40 epochs, constant rate. FID needs the Inception weights file.

    python -m experiments.train    --config experiments/configs/glf/celeba64.py --workdir runs/glf_celeba64
    python -m experiments.evaluate --config experiments/configs/glf/celeba64.py --workdir runs/glf_celeba64
"""

from experiments.configs.glf_common import glf_config


def get_config():
    c = glf_config(dataset="celeba64_crop160", epochs=40, halve_at=(), latent=64, flow_hidden=256)
    c.method.perceptual_layers = 4  # 64-px images: 4 taps (if a perceptual network is set)
    return c

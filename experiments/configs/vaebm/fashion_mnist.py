"""VAEBM on Fashion-MNIST at this machine's scale (thesis §4.4.1, Table 4.1: a small VAE's FID
57.1 → 38.1 with the EBM; docs/methods/vaebm.md): the `vae/fashion_mnist` MLP base (latent 100)
tilted by a CPU cut of the small-VAE energy (nf 16; blocks 16↓, 16, 32↓, 32 on 28 × 28: 28 → 14 →
7), the chain in ε_z only with x = μ_x(z) (the small-VAE source paper's latent-space chain; the
decoder's per-pixel noise is not part of the image), negatives and samples the decoder means.
Langevin η = 0.01, 60 steps in training and 100 at test time, α = 0.1 (§4.4.1). Adam (0.99, 0.999)
at 1e-4 with weight decay 3e-5 and the second-moment clip; batch 32; 2000 steps (~30 min here).

    python -m experiments.train    --config experiments/configs/vae/fashion_mnist.py --workdir runs/vae_fmnist
    python -m experiments.train    --config experiments/configs/vaebm/fashion_mnist.py \
        --workdir runs/vaebm_fmnist --config.method.base_workdir=runs/vae_fmnist
    python -m experiments.evaluate --config experiments/configs/vaebm/fashion_mnist.py --workdir runs/vaebm_fmnist
    # the paired control: the base with the same draws (K_test = 0)
    python -m experiments.evaluate --config experiments/configs/vaebm/fashion_mnist.py \
        --workdir runs/vaebm_fmnist --config.sample.langevin_steps=0
"""

import ml_collections

from experiments.configs.common import base_config
from experiments.configs.vaebm import IMAGE_SMOKE


def get_config() -> ml_collections.ConfigDict:
    c = base_config("vaebm", dataset="fashion_mnist", batch_size=32, num_steps=2000)
    c.model.update(dict(network="resnet", nf=16, widths=(1, 1, 2, 2)))
    c.model.downs = (True, False, True, False)
    c.model.base.update(dict(hidden=(512, 512), latent=100, min_log_sigma_x=-3.0))
    c.method.update(dict(step_size=0.01, langevin_steps=60, use_eps_x=False, negatives="mean"))
    c.method.unroll = True  # conv energy: ~4× faster steps on XLA:CPU (shortrun_ebm's measure)
    c.optim.energy.lr = 1e-4
    c.sample.langevin_steps = 100
    c.train.update(dict(log_every=50, ckpt_every=250, sample_every=500))
    c.eval.update(dict(num_samples=5000, batch_size=500))
    c.eval.metrics = ("fd", "sample_grid")
    c.eval.check_features = True  # FD also in the independent check extractor (fd.check)
    c.smoke_overrides += IMAGE_SMOKE
    return c

"""An image base for VAEBM on Fashion-MNIST (docs/methods/vae.md): MLP encoder and decoder
(2 × 512, SiLU) on the flattened 28 × 28 pixels in [-1, 1], latent 100 (the thesis's small VAEs'
latent size; their DCGAN conv VAE with a Bernoulli decoder is not here yet), a Gaussian decoder
with a learned per-pixel σ_x floored at e⁻³ ≈ 0.05 (Fashion-MNIST's background has no variance: an
unfloored σ_x would run to zero there and the ELBO grow without bound). Adam 1e-3, batch 128.
A blurry base by design: the kind of base the thesis's Table 4.1 tilts (Fashion FID 57.1 → 38.1).

    python -m experiments.train    --config experiments/configs/vae/fashion_mnist.py --workdir runs/vae_fmnist
    python -m experiments.evaluate --config experiments/configs/vae/fashion_mnist.py --workdir runs/vae_fmnist
"""

import ml_collections

from experiments.configs.common import base_config


def get_config() -> ml_collections.ConfigDict:
    c = base_config("vae", dataset="fashion_mnist", batch_size=128, num_steps=20_000)
    c.model.update(dict(hidden=(512, 512), latent=100, min_log_sigma_x=-3.0))
    c.train.update(dict(log_every=500, ckpt_every=5000, sample_every=5000, steps_per_call=10))
    c.sample.decoder_mean = True  # the images are the decoder means (draws add per-pixel noise)
    c.eval.update(dict(num_samples=5000, batch_size=500))
    c.eval.metrics = ("fd", "sample_grid")
    c.eval.check_features = True  # FD also in the independent check extractor (fd.check)
    c.smoke_overrides += (("model.hidden", (16,)), ("model.latent", 4))
    return c

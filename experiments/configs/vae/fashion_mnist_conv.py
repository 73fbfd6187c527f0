"""A conv VAE base for VAEBM on Fashion-MNIST (docs/methods/vae.md §1): GLF's InfoGAN-style conv
encoder and decoder (`nn/autoencoder.py`, with BatchNorm) at width w = 32 (GLF's 64, halved so a
run takes about 10 min on this machine's 2 CPU cores: 577 s for the 5000 steps beside another
run; FD 85.8, check extractor 40.2 at 5000 samples, docs/results.md), latent 32, a Gaussian
decoder whose mean is a tanh in (-1, 1) with a learned per-pixel σ_x floored at e⁻³ ≈ 0.05
(as `vae/fashion_mnist.py`: the background has no variance). Adam 1e-3, batch 128, 5000 steps
(~11 epochs). The sizes are ours; the thesis's small VAEs (§4.4.1) use a DCGAN
decoder, latent 100 and a Bernoulli decoder for Fashion-MNIST.

    python -m experiments.train    --config experiments/configs/vae/fashion_mnist_conv.py --workdir runs/vae_fmnist_conv
    python -m experiments.evaluate --config experiments/configs/vae/fashion_mnist_conv.py --workdir runs/vae_fmnist_conv

The thesis's Bernoulli decoder (no σ_x, no ε_x; draws are its mean; no `log_density`):
add `--config.model.decoder=bernoulli` to both commands (another workdir).
"""

import ml_collections

from experiments.configs.common import base_config


def get_config() -> ml_collections.ConfigDict:
    c = base_config("vae", dataset="fashion_mnist", batch_size=128, num_steps=5000)
    c.model.update(dict(network="conv", width=32, latent=32, min_log_sigma_x=-3.0))
    c.train.update(dict(log_every=250, ckpt_every=1000, sample_every=1000, steps_per_call=10))
    c.sample.decoder_mean = True  # the images are the decoder means (draws add per-pixel noise)
    c.eval.update(dict(num_samples=5000, batch_size=500))
    c.eval.metrics = ("fd", "sample_grid", "reconstruction")
    c.eval.check_features = True  # FD also in the independent check extractor (fd.check)
    c.smoke_overrides += (("model.width", 4), ("model.latent", 4))
    return c

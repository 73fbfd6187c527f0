"""GLF on Fashion-MNIST 28×28 (thesis ch. 3, Table 3.1: FID 21.3 ± 0.2 for GLF, 10.3 ± 0.1 with
the perceptual loss, 51.8 ± 0.3 for VAE + flow prior at β = 1; docs/methods/glf.md). Here the
FID's Inception network is replaced by the project's FD-fashion_mnist extractor, so the numbers
are not comparable to the thesis's, only their ordering is.

Latent 20, flow width 64, batch 256, 100 epochs, the rate halved after 50.

    python -m experiments.train    --config experiments/configs/glf/fashion_mnist.py --workdir runs/glf_fmnist
    python -m experiments.evaluate --config experiments/configs/glf/fashion_mnist.py --workdir runs/glf_fmnist

Variants: `--config.method.variant=regularized --config.method.beta=400`,
`--config.method.variant=vae_flow_prior --config.method.beta=1` (or 400),
`--config.method.perceptual=fashion_mnist_vgg_v1` (GLF + perceptual loss).
"""

from experiments.configs.glf_common import glf_config


def get_config():
    return glf_config(
        dataset="fashion_mnist", epochs=100, halve_at=(50,), latent=20, flow_hidden=64
    )

"""GLF on CIFAR-10 32×32 (thesis ch. 3, Table 3.1: FID 88.3 ± 0.4 for GLF, 44.6 ± 0.3 with the
perceptual loss; docs/methods/glf.md). Latent 64, flow width 256, batch 256, 200 epochs, the
rate halved every 50. FID needs the Inception weights file (`eval.inception_weights`); the
perceptual variant needs a perceptual network for 32×32×3 images, which this repository does
not ship.

    python -m experiments.train    --config experiments/configs/glf/cifar10.py --workdir runs/glf_cifar10
    python -m experiments.evaluate --config experiments/configs/glf/cifar10.py --workdir runs/glf_cifar10
"""

from experiments.configs.glf_common import glf_config


def get_config():
    return glf_config(
        dataset="cifar10", epochs=200, halve_at=(50, 100, 150), latent=64, flow_hidden=256
    )

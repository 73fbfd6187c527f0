"""A sharp image base for VAEBM on Fashion-MNIST (docs/methods/vae.md §4): `vae/fashion_mnist`
with the KL weighted β = 0.1 (reconstruction 10× the KL: the role of GLF's β = 400 base in the
VAEBM issue). Its decoder means reconstruct sharper than the β = 1 base, but q(z) moves away from
N(0, I): draws from the prior land in the prior's holes. The second base the EBM is asked to
improve (thesis Table 4.1: the EBM improves every base it tilts).

    python -m experiments.train    --config experiments/configs/vae/fashion_mnist_sharp.py --workdir runs/vae_fmnist_sharp
    python -m experiments.evaluate --config experiments/configs/vae/fashion_mnist_sharp.py --workdir runs/vae_fmnist_sharp
"""

import ml_collections

from experiments.configs.vae.fashion_mnist import get_config as blurry_base


def get_config() -> ml_collections.ConfigDict:
    c = blurry_base()
    c.method.beta = 0.1
    return c

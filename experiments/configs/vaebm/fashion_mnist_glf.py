"""VAEBM on Fashion-MNIST over a sharp base: `vaebm/fashion_mnist`'s energy, chain and optimizer
on the GLF `vae_flow_prior` β = 400 run of `glf/fashion_mnist_sharp_base` (the thesis's sharp
base, ch. 4; docs/methods/vaebm.md §5). The chain moves the flow's noise u (ε_z, 20-d); the
decoder is deterministic (no ε_x) and BatchNorm runs on its averages; x = G(f⁻¹(u)) in (-1, 1).
Test-time step η = 0.001 (training: 0.01): in this 20-d noise space 100 steps at 0.01 change
which garment a sample is and did not improve the base in both extractors; at 0.001 FD 29.0 → 23.4,
check 10.3 → 7.9 (docs/results.md, "the thesis's sharp base").

    python -m experiments.train    --config experiments/configs/glf/fashion_mnist_sharp_base.py --workdir runs/glf/vfp400_w32
    python -m experiments.train    --config experiments/configs/vaebm/fashion_mnist_glf.py \
        --workdir runs/vaebm_fmnist_glf --config.method.base_workdir=runs/glf/vfp400_w32
    python -m experiments.evaluate --config experiments/configs/vaebm/fashion_mnist_glf.py --workdir runs/vaebm_fmnist_glf
    # the paired control: the base with the same draws (K_test = 0)
    python -m experiments.evaluate --config experiments/configs/vaebm/fashion_mnist_glf.py \
        --workdir runs/vaebm_fmnist_glf --config.sample.langevin_steps=0
"""

import ml_collections

from experiments.configs.vaebm.fashion_mnist import get_config as vae_based


def get_config() -> ml_collections.ConfigDict:
    c = vae_based()
    c.model.base_recipe = "glf"
    c.sample.step_size = 0.001
    c.model.glf_base.update(dict(latent=20, ae_width=32, flow_hidden=64))
    c.smoke_overrides = tuple(o for o in c.smoke_overrides if not o[0].startswith("model.base."))
    c.smoke_overrides += (
        ("model.glf_base.ae_width", 8),
        ("model.glf_base.flow_hidden", 8),
        ("model.glf_base.flow_blocks", 2),
        ("model.glf_base.latent", 4),
    )
    return c

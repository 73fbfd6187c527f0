"""The sharp VAEBM base on Fashion-MNIST (thesis ch. 4 tilts a β = 400 "VAE + flow prior"; the
VAEBM issue's second base; docs/methods/vaebm.md §5): GLF's `vae_flow_prior` variant at β = 400
on the 10-epoch protocol of docs/results.md "GLF on Fashion-MNIST" (2,340 steps at batch 256, the
rate halved at epoch 5), with the auto-encoder at width 32 instead of 64 so that VAEBM's Langevin
chain, one decoder pass per step, costs about a quarter as much on this CPU.

    python -m experiments.train    --config experiments/configs/glf/fashion_mnist_sharp_base.py --workdir runs/glf/vfp400_w32
    python -m experiments.evaluate --config experiments/configs/glf/fashion_mnist_sharp_base.py --workdir runs/glf/vfp400_w32
"""

from experiments.configs.glf_common import glf_config


def get_config():
    c = glf_config(dataset="fashion_mnist", epochs=10, halve_at=(5,), latent=20, flow_hidden=64)
    c.method.update(dict(variant="vae_flow_prior", beta=400.0))
    c.model.ae_width = 32
    c.train.sample_every = 468
    return c

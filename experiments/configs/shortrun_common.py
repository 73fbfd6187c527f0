"""Settings shared by the short-run EBM configs (docs/methods/shortrun_ebm.md §4; spec'd in the
thesis's §5.4): 2-D sets train the ODE flow x' = −∇E on [0, 0.2] (dopri5, tolerance 1e-5) at
batch 800 with Adam 1e-3; images run K Euler steps of 0.1·∇E from N(0, I) at batch 64 with
Adam 5e-4, noise-free by default. No EMA, no regulariser, fresh chains every step."""

import ml_collections

from experiments.configs.common import base_config
from jaxgen.nn.conv_energy import TABLE_5_2 as CONV_WIDTHS  # noqa: F401 (the configs' import)


def toy2d_config(dataset: str) -> ml_collections.ConfigDict:
    """3000 steps at batch 800 of the EBM objective with ODE negatives (the thesis's 2-D)."""
    c = base_config("shortrun_ebm", dataset=dataset, batch_size=800, num_steps=3000)
    c.train.update(dict(log_every=50, ckpt_every=500, sample_every=500))
    c.method.update(dict(sampler="ode", t_end=0.2, rtol=1e-5, atol=1e-5))
    c.optim.energy.update(dict(lr=1e-3))
    c.eval.update(dict(num_samples=10_000, batch_size=2000))
    c.eval.metrics = ("mode_coverage", "mmd", "energy_distance", "log_likelihood")
    c.smoke_overrides = (("model.hidden", (16, 16)), ("method.rtol", 1e-3), ("method.atol", 1e-3))
    return c


def image_config(
    *, dataset: str, nf: int, widths: tuple, num_steps: int, langevin_steps: int
) -> ml_collections.ConfigDict:
    """`num_steps` iterations at batch 64 with K = `langevin_steps` noise-free Euler steps."""
    c = base_config("shortrun_ebm", dataset=dataset, batch_size=64, num_steps=num_steps)
    c.train.update(dict(log_every=100, ckpt_every=1000, sample_every=2000))
    c.model.update(dict(network="conv", nf=nf, widths=widths))
    c.method.update(dict(sampler="euler", langevin_steps=langevin_steps, step=0.1, noise_std=0.0))
    c.optim.energy.update(dict(lr=5e-4))
    c.sample.update(dict(trace="hutchinson", num_probes=1))
    c.eval.update(dict(num_samples=10_000, batch_size=500, round_size=2000))
    c.eval.metrics = (
        "fd",
        "sample_grid",
        "nearest_neighbours",
        "interpolation",
        "energy_histogram",
    )
    c.smoke_overrides = (("model.nf", 4), ("method.langevin_steps", 2))
    return c

"""Settings shared by the GLF configs (docs/methods/glf.md §3, thesis §3.4.3): batch 256, Adam
1e-3 for the auto-encoder and the flow (the flow's β, ε and coupled L2 are the recipe's
defaults), the learning rate halved at the given epochs (the reference code's StepLR), no EMA."""

import ml_collections

from experiments.configs.common import base_config

TRAIN_SIZES = {"fashion_mnist": 60_000, "digits": 1797, "cifar10": 50_000}
TRAIN_SIZES["celeba64_crop160"] = 162_770


def glf_config(
    *,
    dataset: str,
    epochs: int,
    halve_at: tuple[int, ...],
    latent: int,
    flow_hidden: int,
    batch_size: int = 256,
) -> ml_collections.ConfigDict:
    """`epochs` of `batch_size` (the last incomplete batch of an epoch dropped), the rate × 0.5
    at each epoch of `halve_at`."""
    per_epoch = TRAIN_SIZES[dataset] // batch_size
    c = base_config("glf", dataset=dataset, batch_size=batch_size, num_steps=epochs * per_epoch)
    c.train.update(dict(log_every=50, ckpt_every=per_epoch, sample_every=5 * per_epoch))
    c.model.update(dict(latent=latent, flow_hidden=flow_hidden))
    for net in ("ae", "flow"):
        if halve_at:
            milestones = tuple(e * per_epoch for e in halve_at)
            c.optim[net].update(dict(decay="milestones", milestones=milestones, decay_factor=0.5))
    c.eval.update(
        dict(
            num_samples=10_000,  # the thesis's protocol: 10k samples against 10k real images
            batch_size=500,
            round_size=2000,
            metrics=("fd", "sample_grid", "nearest_neighbours", "interpolation", "reconstruction"),
            check_features=True,  # FD also in a second extractor (docs/methods/glf.md §4)
        )
    )
    # smoke variant: the same layers, narrow
    c.smoke_overrides = (
        ("model.ae_width", 8),
        ("model.flow_hidden", 8),
        ("model.flow_blocks", 2),
        ("model.latent", 4),
    )
    return c

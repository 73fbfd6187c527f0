"""FDRL unpaired translation between two Fashion-MNIST class groups (docs/methods/fdrl.md §4.2;
the paper's Cat2dog experiment at the scale of this CPU): tops (T-shirt/top 0, pullover 2,
shirt 6) → trousers (1).

The source group is the prior (`method.prior="source"`: each training batch carries a batch
of source images, `data.source` / `data.source_classes`); the ratio network learns
q̃ / p_trousers along the flow from the tops, so that K + κ flow steps carry a top towards the
trousers. The paper's Cat2dog setting (K = 100, K + κ = 110, LSIF-χ², η = 3, ν = 0.01, Adam
1e-4, batch 64) with the CPU's cuts of `fdrl/fashion_mnist.py`: the "fashion_mnist" net, K = 20,
κ = 10, 600 steps at a constant rate, EMA 0.99. Samples (grids, `experiments.evaluate`) are
translations of the tops' test images; FD is against the trousers' training images.

    python -m experiments.train    --config experiments/configs/fdrl/fashion_translation.py --workdir runs/fdrl_tops2trousers
    python -m experiments.sample   --config experiments/configs/fdrl/fashion_translation.py --workdir runs/fdrl_tops2trousers \\
        --from SOURCE.npy --out translated.npy
    python -m benchmarks.fdrl_translation --workdir runs/fdrl_tops2trousers
"""

from experiments.configs.fdrl_common import fdrl_image_config


def get_config():
    c = fdrl_image_config(
        dataset="fashion_mnist",
        layout="fashion_mnist",
        num_steps=600,
        milestones=(),
        flow_steps=20,
        refine_steps=10,
    )
    c.data.update(
        dict(pad_to_32=True, classes=(1,), source="fashion_mnist", source_classes=(0, 2, 6))
    )
    c.method.prior = "source"
    c.optim.ratio.ema_rate = 0.99
    c.train.update(dict(log_every=20, ckpt_every=100, sample_every=300))
    c.eval.update(dict(num_samples=1000, batch_size=500, round_size=500))
    c.eval.metrics = ("fd",)
    return c

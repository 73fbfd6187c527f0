"""Short-run EBM on scikit-learn's 8×8 digits (not in the thesis: Table 5.1's protocol — the
three dynamics at equal iterations — at the size these 2 CPU cores finish; docs/results.md).

Table 5.2's MNIST network (three stride-2 convs, 8 → 1) with nf = 32, K = 40 Euler steps of
0.1·∇E from N(0, I), batch 64, Adam 5e-4, no EMA, fresh chains, as the Fashion-MNIST config.
Evaluated on 300 samples: the digits test split has 300 images, and FD is only compared between
sets of one size (docs/results.md, "Feature extractors and FD calibration").

    python -m experiments.train    --config experiments/configs/shortrun_ebm/digits.py --workdir runs/srl_digits
    python -m experiments.evaluate --config experiments/configs/shortrun_ebm/digits.py --workdir runs/srl_digits

Variants: `--config.method.noise_std=0.1` (noisy dynamics), `--config.method.generator_loss=True`
(eq. 1.14; with `--config.method.clip_chains=True`, the setting that trained on Fashion-MNIST).
"""

from experiments.configs.shortrun_common import CONV_WIDTHS, image_config


def get_config():
    c = image_config(
        dataset="digits", nf=32, widths=CONV_WIDTHS["mnist"], num_steps=8000, langevin_steps=40
    )
    c.train.update(dict(log_every=100, ckpt_every=500, sample_every=1000))
    c.eval.update(dict(num_samples=300, batch_size=300, round_size=300))
    return c

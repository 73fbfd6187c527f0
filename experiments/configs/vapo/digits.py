"""VAPO on scikit-learn's 8×8 digits with a conv energy (not in the paper: the smallest image
set here, the quick check that the image recipe makes recognisable samples; docs/results.md).

Energy ResNet ch 32, ch_mult (1, 2) (8 → 4), 1 block per resolution; Adam 1e-3 with global-norm
clipping 1 (docs/methods/vapo.md §3's CPU setting), EMA 0.999, batch 128, no flips (digits are
not mirror-symmetric), T = 1 (the homotopy's end, paper eq. 19). Evaluated on 300 samples: the
digits test split has 300 images, and FD is only compared between sets of one size (its bias
grows like 1/n; docs/results.md, "Feature extractors and FD calibration").

    python -m experiments.train    --config experiments/configs/vapo/digits.py --workdir runs/vapo_digits
    python -m experiments.evaluate --config experiments/configs/vapo/digits.py --workdir runs/vapo_digits
"""

from experiments.configs.vapo_common import vapo_image_config


def get_config():
    c = vapo_image_config(
        dataset="digits", batch_size=128, ch_mult=(1, 2), num_res_blocks=1, b1=0.9, channels=1
    )
    c.data.flip = False
    c.model.update(dict(ch=32, batch_splits=2))
    c.optim.potential.update(
        dict(optimizer="adam", lr=1e-3, warmup_steps=0, grad_clip=1.0, ema_rate=0.999)
    )
    c.sample.t_end = 1.0
    c.train.update(dict(num_steps=20_000, ckpt_every=1000, sample_every=2000))
    c.eval.update(dict(num_samples=300, batch_size=300, ood_sets=("uniform_noise",)))
    return c

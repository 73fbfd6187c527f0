"""GLF on scikit-learn's 8×8 digits (not in the thesis: the smallest image set here, for quick
checks; docs/methods/glf.md). Latent 10, flow width 64, batch 64, 300 epochs (8,400 steps), the
rate halved after 150.

    python -m experiments.train    --config experiments/configs/glf/digits.py --workdir runs/glf_digits
    python -m experiments.evaluate --config experiments/configs/glf/digits.py --workdir runs/glf_digits
"""

from experiments.configs.glf_common import glf_config


def get_config():
    c = glf_config(
        dataset="digits", epochs=300, halve_at=(150,), latent=10, flow_hidden=64, batch_size=64
    )
    c.eval.update(dict(num_samples=2000, round_size=1000))
    return c

"""Short-run EBM on the 3×3 Gaussian grid (thesis §5.3.1, Fig. 5.5; docs/methods/
shortrun_ebm.md §4). Settings as `swissroll.py`. The thesis: −1.95 (EBM objective) vs −1.47
(maximum likelihood, `--config.method.objective=max_likelihood`) on its own version of the data.

    python -m experiments.train    --config experiments/configs/shortrun_ebm/9gaussians.py --workdir runs/srl_9g
    python -m experiments.evaluate --config experiments/configs/shortrun_ebm/9gaussians.py --workdir runs/srl_9g
"""

from experiments.configs.shortrun_common import toy2d_config


def get_config():
    return toy2d_config("9gaussians")

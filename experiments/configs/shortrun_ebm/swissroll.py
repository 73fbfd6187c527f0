"""Short-run EBM on the Swiss roll (thesis §5.3.1, Fig. 5.3; docs/methods/shortrun_ebm.md §4).

The energy (5 dense layers of 256, Swish) is trained with the EBM objective on negatives from
the ODE x' = −∇E on [0, 0.2] (dopri5, tolerance 1e-5), batch 800, 3000 steps of Adam 1e-3. The
thesis's test log-likelihood of that flow: −0.86 (EBM objective) vs −0.69 (maximum likelihood,
`--config.method.objective=max_likelihood`), on its own version of the data.

    python -m experiments.train    --config experiments/configs/shortrun_ebm/swissroll.py --workdir runs/srl_swiss
    python -m experiments.evaluate --config experiments/configs/shortrun_ebm/swissroll.py --workdir runs/srl_swiss
"""

from experiments.configs.shortrun_common import toy2d_config


def get_config():
    return toy2d_config("swissroll")

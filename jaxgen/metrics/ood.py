"""Out-of-distribution scores: AUROC of a score that should be higher in-distribution.

Pure float64 numpy; ties get average ranks, so the result equals
`sklearn.metrics.roc_auc_score(labels, scores)` with label 1 for in-distribution.
"""

import numpy as np
from scipy.stats import rankdata


def _scores(x, name: str) -> np.ndarray:
    a = np.asarray(x, np.float64).ravel()
    if a.size == 0:
        raise ValueError(f"{name} is empty")
    if not np.all(np.isfinite(a)):
        raise ValueError(f"{name} contains non-finite values (nan or inf)")
    return a


def auroc(scores_in, scores_out) -> float:
    """P(S_in > S_out) + ½ P(S_in = S_out): the area under the ROC curve (Mann–Whitney U).

    Args: `scores_in` `[N]` (label 1), `scores_out` `[M]` (label 0). 0.5 = indistinguishable,
    1 = every in-distribution score above every out-of-distribution score.
    """
    a, b = _scores(scores_in, "scores_in"), _scores(scores_out, "scores_out")
    ranks = rankdata(np.concatenate([a, b]))  # average ranks for ties
    u = ranks[: a.size].sum() - a.size * (a.size + 1) / 2.0
    return float(u / (a.size * b.size))


def summary(scores) -> dict:
    """Mean, std, min and max of a score array (for the histogram tables)."""
    a = _scores(scores, "scores")
    return {"mean": a.mean(), "std": a.std(), "min": a.min(), "max": a.max(), "n": int(a.size)}

"""The metrics `experiments.evaluate` offers, declared in one registry (`EVALUATORS`): a new
metric is one `Evaluator` entry, and `evaluate` reads from here which metrics a run can have
(its data kind and the recipe's declared extras), which data splits to check before sampling,
and what to call.

Every evaluator takes `(exp, state, x, out, seed)`: the run's `Experiment`, its restored state,
the evaluation samples `x` (`[N, 2]` points or `[N, H, W, C]` images in [-1, 1]), the output
folder and the evaluation's seed, and returns a dict of JSON-able scores that `evaluate` merges
into `metrics.json` (under the evaluator's `key`, or at the top level when `key` is None).
"fd" is the exception: its features are computed on the sampling rounds themselves
(`experiments.protocol`), so `evaluate` runs it there; it is registered for its name, checks
and documentation.
"""

import dataclasses
import inspect
from collections.abc import Callable

import jax
import numpy as np

from experiments import image_eval
from jaxgen.data import mixture_modes, sample_toy2d
from jaxgen.metrics import energy_distance, grid_log_likelihood, mmd_rbf, mode_coverage
from jaxgen.metrics.features import apply_in_batches
from jaxgen.train.figures import save_image_grid


@dataclasses.dataclass(frozen=True)
class Evaluator:
    """One metric: `data` "toy2d" or "image"; `needs` the recipe extra it calls (None: only
    samples); `splits` the run's data splits it reads (checked before any sample is drawn);
    `seed_offset` keeps its randomness apart from the sampler's and the other metrics'."""

    name: str
    data: str
    run: Callable | None
    key: str | None = ""  # "" = `name`; None = merge the scores at the top level
    needs: str | None = None
    splits: tuple[str, ...] = ()
    seed_offset: int = 0
    doc: str = ""


def _mode_coverage(exp, state, x, out, seed) -> dict:
    try:
        centers, std = mixture_modes(exp.c.data.name)
    except ValueError:
        return {}  # not a Gaussian mixture: no modes to cover
    return {"mode_coverage": mode_coverage(x, centers, std)}


def _reference_2d(exp, x, seed) -> np.ndarray:
    return np.asarray(sample_toy2d(exp.c.data.name, len(x), jax.random.PRNGKey(seed)))


def _mmd(exp, state, x, out, seed) -> dict:
    return {"mmd_rbf": mmd_rbf(x, _reference_2d(exp, x, seed))}


def _energy_distance(exp, state, x, out, seed) -> dict:
    return {"energy_distance": energy_distance(x, _reference_2d(exp, x, seed))}


def toy2d_log_likelihood(exp, state, x, out, seed, *, num: int = 10_000) -> dict:
    """Mean test log-likelihood of the recipe's declared `log_density` on fresh draws of the 2-D
    set. An unnormalised density is normalised on a grid of `eval.grid_points`² points (512²;
    the smoke variant 64²) over the data's bounds, padded by 50%; a normalised one (a flow's) is
    used as it is, and its log Z on a 128² grid over the same bounds is reported as a check
    (≈ 0 when the bounds hold its mass)."""
    test = np.asarray(sample_toy2d(exp.c.data.name, num, jax.random.PRNGKey(seed)))
    lim = 1.5 * float(np.abs(test).max())
    fn = exp.jitted("log_density", use_ema=exp.c.eval.ema)
    kw = {}
    if "key" in inspect.signature(exp.recipe.log_density).parameters:
        kw["key"] = jax.random.PRNGKey(seed + 1)  # a stochastic trace's probes
    log_density = lambda v: np.asarray(fn(state, v.astype(np.float32), **kw))
    bounds = ((-lim, lim), (-lim, lim))
    chunk = exp.c.eval.batch_size  # points per call: an IWAE density holds [K, chunk, width]
    if not exp.caps.log_density_normalised(exp.rc):
        points = exp.c.eval.get("grid_points", 512)  # configs saved before the field: 512
        return grid_log_likelihood(
            log_density, test, bounds=bounds, num_points=points, chunk_size=chunk
        )
    check = grid_log_likelihood(
        log_density, test[:chunk], bounds=bounds, num_points=128, chunk_size=chunk
    )
    values = apply_in_batches(log_density, test, chunk)
    return {"mean_log_likelihood": float(np.mean(values)), "log_z_grid_128": check["log_z"]}


def _sample_grid(exp, state, x, out, seed) -> str:
    save_image_grid(out / "samples.png", x[:64], scale=max(1, 64 // x.shape[1]))
    return str(out / "samples.png")


_ALL = (
    Evaluator("mode_coverage", "toy2d", _mode_coverage, key=None, seed_offset=10_000,
              doc="modes holding samples within 3σ, and the fraction within 3σ of any mode"),
    Evaluator("mmd", "toy2d", _mmd, key=None, seed_offset=10_000,
              doc="RBF MMD² against as many fresh draws of the data set"),
    Evaluator("energy_distance", "toy2d", _energy_distance, key=None, seed_offset=10_000,
              doc="energy distance against as many fresh draws of the data set"),
    Evaluator("log_likelihood", "toy2d", toy2d_log_likelihood, needs="log_density",
              seed_offset=30_000, doc="mean test log-likelihood (grid-normalised if needed)"),
    Evaluator("fd", "image", None,
              doc="Fréchet distance (FID with Inception weights) over the sampling rounds"),
    Evaluator("sample_grid", "image", _sample_grid, doc="the first 64 samples as a grid"),
    Evaluator("energy_histogram", "image",
              lambda exp, state, x, out, seed: image_eval.energy_histogram(exp, state, out),
              needs="energy", splits=("train", "test"),
              doc="the recipe's energy score on train vs test images, AUROC"),
    Evaluator("ood", "image", lambda exp, state, x, out, seed: image_eval.ood(
        exp, state, out, seed=seed), needs="energy", splits=("test",), seed_offset=10_000,
              doc="AUROC of the energy score, test split vs each of eval.ood_sets"),
    Evaluator("nearest_neighbours", "image",
              lambda exp, state, x, out, seed: image_eval.neighbours(exp.c, x, out),
              splits=("train", "test"), doc="samples beside their nearest training images"),
    Evaluator("interpolation", "image", lambda exp, state, x, out, seed: image_eval.interpolation(
        exp, state, out, seed=seed), needs="interpolate", seed_offset=20_000,
              doc="interpolation strips between prior draws"),
    Evaluator("reconstruction", "image",
              lambda exp, state, x, out, seed: image_eval.reconstruction(exp, state, out),
              needs="reconstruct", splits=("test",), doc="reconstruction error of test images"),
)  # fmt: skip
EVALUATORS = {e.name: e for e in _ALL}


def available(data: str, recipe_caps) -> tuple[str, ...]:
    """The metric names for this data kind ("toy2d" / "image") the recipe's extras support,
    in registry order."""
    return tuple(
        e.name for e in _ALL if e.data == data and (e.needs is None or recipe_caps.has(e.needs))
    )


def run(names, exp, state, x, out, *, seed: int) -> dict:
    """The scores of the metrics `names` (registered, not "fd") on samples `x`."""
    scores = {}
    for name in names:
        e = EVALUATORS[name]
        got = e.run(exp, state, x, out, seed + e.seed_offset)
        if e.key is None:
            scores.update(got)
        else:
            scores[e.key or e.name] = got
    return scores

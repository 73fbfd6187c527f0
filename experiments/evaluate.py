"""Evaluate a trained run: `python -m experiments.evaluate --config C --workdir DIR`.

Computes the metrics listed in `config.eval.metrics` on `eval.num_samples` samples (EMA weights
unless `eval.ema=False`) and writes `DIR/eval/metrics.json` (with the protocol: sample count,
sampler statistics, checkpoint step, feature network) and `DIR/eval/metrics.md`.
"""

import json
import sys
import time

import jax
import numpy as np

from experiments import cli, image_eval
from experiments import protocol as protocol_lib
from experiments.experiment import Experiment
from jaxgen.data import OOD_NAMES, mixture_modes, sample_toy2d
from jaxgen.methods.common import ConfigError, config_to_dict
from jaxgen.metrics import energy_distance, grid_log_likelihood, mmd_rbf, mode_coverage
from jaxgen.train.figures import save_image_grid

TOY2D_METRICS = ("mode_coverage", "mmd", "energy_distance")


def toy2d_metrics(name: str, samples: np.ndarray, metrics, *, seed: int) -> dict:
    """2-D metrics of `samples` `[N, 2]` against fresh draws of the data set `name`."""
    ref = np.asarray(sample_toy2d(name, len(samples), jax.random.PRNGKey(seed)))
    out = {}
    for m in metrics:
        if m == "mode_coverage":
            try:
                centers, std = mixture_modes(name)
            except ValueError:
                continue  # not a Gaussian mixture
            out["mode_coverage"] = mode_coverage(samples, centers, std)
        elif m == "mmd":
            out["mmd_rbf"] = mmd_rbf(samples, ref)
        elif m == "energy_distance":
            out["energy_distance"] = energy_distance(samples, ref)
    return out


def toy2d_log_likelihood(exp: Experiment, state, *, seed: int, num: int = 10_000) -> dict:
    """Mean test log-likelihood of the recipe's declared `log_density` on fresh draws of the 2-D
    set, normalised on a 512² grid over the data's bounds, padded by 50%."""
    test = np.asarray(sample_toy2d(exp.c.data.name, num, jax.random.PRNGKey(seed)))
    lim = 1.5 * float(np.abs(test).max())
    fn = exp.jitted("log_density", use_ema=exp.c.eval.ema)
    log_density = lambda x: np.asarray(fn(state, x.astype(np.float32)))
    return grid_log_likelihood(log_density, test, bounds=((-lim, lim), (-lim, lim)))


IMAGE_METRICS = (
    "fd",
    "sample_grid",
    "energy_histogram",
    "ood",
    "nearest_neighbours",
    "interpolation",
)
# the recipe capability each metric needs
_NEEDS = {
    "energy_histogram": "energy",
    "ood": "energy",
    "interpolation": "interpolate",
    "log_likelihood": "log_density",
}


def available_metrics(exp: Experiment) -> tuple[str, ...]:
    """The metrics this data set and the recipe's declared capabilities support."""
    names = (*TOY2D_METRICS, "log_likelihood") if exp.toy2d else IMAGE_METRICS
    return tuple(m for m in names if m not in _NEEDS or exp.caps.has(_NEEDS[m]))


def chosen_metrics(exp: Experiment) -> list[str]:
    c, available = exp.c, available_metrics(exp)
    metrics = [m for m in c.eval.metrics if m != "default"] or list(available)
    unknown = [m for m in metrics if m not in available]
    if unknown:
        raise ConfigError(
            f"config.eval.metrics: {unknown} not available for {c.data.name} with {c.recipe}; "
            f"available: {list(available)}"
        )
    for name in c.eval.ood_sets if "ood" in metrics else ():
        if name not in OOD_NAMES:
            raise ConfigError(
                f"config.eval.ood_sets: unknown set {name!r}; choose from {list(OOD_NAMES)}"
            )
    return metrics


def image_metrics(exp: Experiment, state, x, metrics, out, *, seed: int) -> dict:
    scores = {}
    for m in metrics:
        if m == "sample_grid":
            save_image_grid(out / "samples.png", x[:64], scale=max(1, 64 // x.shape[1]))
            scores[m] = str(out / "samples.png")
        elif m == "energy_histogram":
            scores[m] = image_eval.energy_histogram(exp, state, out)
        elif m == "ood":
            scores[m] = image_eval.ood(exp, state, out, seed=10_000 + seed)
        elif m == "nearest_neighbours":
            scores[m] = image_eval.neighbours(exp.c, x, out)
        elif m == "interpolation":
            scores[m] = image_eval.interpolation(exp, state, out, seed=20_000 + seed)
    return scores


def _image_scores(exp: Experiment, state, metrics, out, *, seed: int, protocol: dict):
    """`(sampler stats, scores)` of the image protocol: rounds, then the feature metrics."""
    c = exp.c
    net, fd_name, why = protocol_lib.feature_network(c) if "fd" in metrics else (None,) * 3
    if net is not None:
        protocol["feature_network"] = {"name": net.name, "hash": net.hash}
    protocol["round_size"] = int(c.eval.round_size)
    rounds = protocol_lib.sample_rounds(exp, state, net, out, seed=seed, protocol=protocol)
    stats = {"nfe_mean": float(np.mean(rounds.nfe)), "nfe_max": float(np.max(rounds.nfe))}
    x = protocol_lib.dequantise(rounds.cat("samples"))
    scores = image_metrics(exp, state, x, [m for m in metrics if m != "fd"], out, seed=seed)
    if "fd" in metrics:
        scores["fd"] = (
            protocol_lib.feature_metrics(c, net, fd_name, rounds, out)
            if net is not None
            else {fd_name: why}  # the one-line reason it is unavailable
        )
    return stats, scores


def evaluate(config, workdir: str, *, seed: int = 1) -> dict:
    """Evaluate the newest checkpoint of `workdir` (`config`: an experiment ConfigDict or its
    `Experiment`); writes and returns `eval/metrics.json`'s content."""
    exp = cli.as_experiment(config)
    c = exp.c
    metrics = chosen_metrics(exp)
    state, _ = exp.restore_latest(workdir)
    out = cli.workdir_paths(workdir)["eval"]
    out.mkdir(parents=True, exist_ok=True)
    protocol = {
        "num_samples": int(c.eval.num_samples),
        "checkpoint_step": int(state.step),
        "ema": bool(c.eval.ema),
        "recipe": c.recipe,
        "config": config_to_dict(exp.rc),
        "nfe_counts": exp.caps.nfe,
        "seed": seed,
    }
    t0 = time.perf_counter()
    if exp.toy2d:
        x, stats = exp.draw(state, c.eval.num_samples, seed=seed, use_ema=c.eval.ema)
        scores = toy2d_metrics(c.data.name, x, metrics, seed=10_000 + seed)
        if "log_likelihood" in metrics:
            scores["log_likelihood"] = toy2d_log_likelihood(exp, state, seed=30_000 + seed)
        np.save(out / "samples.npy", x)
    else:
        stats, scores = _image_scores(exp, state, metrics, out, seed=seed, protocol=protocol)
    result = {
        "protocol": protocol,
        "sampler_stats": stats,
        "seconds": time.perf_counter() - t0,
        **scores,
    }
    (out / "metrics.json").write_text(json.dumps(result, indent=1, default=str))
    (out / "metrics.md").write_text(metrics_table(result))
    return result


def metrics_table(result: dict) -> str:
    """A two-column markdown table of every scalar in `result` (nested keys joined by '.')."""
    rows = []

    def walk(prefix, v):
        if isinstance(v, dict):
            for k, sub in v.items():
                walk(f"{prefix}.{k}" if prefix else k, sub)
        elif isinstance(v, float):
            rows.append((prefix, f"{v:.4g}"))
        elif isinstance(v, (int, str, bool)):
            rows.append((prefix, str(v)))

    walk("", {k: v for k, v in result.items() if k != "protocol"})
    walk("protocol", {k: v for k, v in result["protocol"].items() if k != "config"})
    lines = ["| metric | value |", "|---|---|", *(f"| {k} | {v} |" for k, v in rows)]
    return "\n".join(lines) + "\n"


def main(argv):
    from absl import flags

    def run():
        exp = cli.parse_flags(argv)
        workdir = flags.FLAGS.workdir
        if workdir is None:
            raise ConfigError("--workdir is required")
        result = evaluate(exp, workdir)
        print(metrics_table(result), end="")
        print(f"written: {cli.workdir_paths(workdir)['eval'] / 'metrics.json'}")

    cli.run_main(run)


if __name__ == "__main__":
    cli.define_common_flags()
    main(sys.argv)

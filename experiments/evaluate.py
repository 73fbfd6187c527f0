"""Evaluate a trained run: `python -m experiments.evaluate --config C --workdir DIR`.

Computes the metrics listed in `config.eval.metrics` on `eval.num_samples` samples (EMA weights
unless `eval.ema=False`) and writes `DIR/eval/metrics.json` (with the protocol: sample count,
sampler statistics, checkpoint step, feature network) and `DIR/eval/metrics.md`.
`--step N` evaluates checkpoint N instead of the newest and writes to `DIR/eval/step_N/`.

A missing or bad FID weights file (`eval.inception_weights` / `$JAXGEN_INCEPTION_WEIGHTS`)
disables FID with one warning line and the other metrics still run; missing data that a chosen
metric needs stops the evaluation before any sample is drawn.
"""

import inspect
import json
import sys
import time
from pathlib import Path

import jax
import numpy as np

from experiments import cli, image_eval
from experiments import protocol as protocol_lib
from experiments.experiment import Experiment
from jaxgen.data import IMAGE_NAMES, OOD_NAMES, check_images_available, mixture_modes, sample_toy2d
from jaxgen.methods.common import ConfigError, config_to_dict
from jaxgen.metrics import energy_distance, grid_log_likelihood, mmd_rbf, mode_coverage
from jaxgen.metrics.features import apply_in_batches
from jaxgen.metrics.inception_weights import InceptionWeightsError
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
    set. An unnormalised density is normalised on a 512² grid over the data's bounds, padded by
    50%; a normalised one (a flow's) is used as it is, and its log Z on a 128² grid over the
    same bounds is reported as a check (≈ 0 when the bounds hold its mass)."""
    test = np.asarray(sample_toy2d(exp.c.data.name, num, jax.random.PRNGKey(seed)))
    lim = 1.5 * float(np.abs(test).max())
    fn = exp.jitted("log_density", use_ema=exp.c.eval.ema)
    kw = {}
    if "key" in inspect.signature(exp.recipe.log_density).parameters:
        kw["key"] = jax.random.PRNGKey(seed + 1)  # a stochastic trace's probes
    log_density = lambda x: np.asarray(fn(state, x.astype(np.float32), **kw))
    bounds = ((-lim, lim), (-lim, lim))
    if not exp.caps.log_density_normalised(exp.rc):
        return grid_log_likelihood(log_density, test, bounds=bounds)
    chunk = exp.c.eval.batch_size
    check = grid_log_likelihood(
        log_density, test[:chunk], bounds=bounds, num_points=128, chunk_size=chunk
    )
    values = apply_in_batches(log_density, test, chunk)
    return {"mean_log_likelihood": float(np.mean(values)), "log_z_grid_128": check["log_z"]}


IMAGE_METRICS = (
    "fd",
    "sample_grid",
    "energy_histogram",
    "ood",
    "nearest_neighbours",
    "interpolation",
    "reconstruction",
)
# the recipe capability each metric needs
_NEEDS = {
    "energy_histogram": "energy",
    "ood": "energy",
    "interpolation": "interpolate",
    "reconstruction": "reconstruct",
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
        elif m == "reconstruction":
            scores[m] = image_eval.reconstruction(exp, state, out)
    return scores


# the splits of the run's data set each image metric reads (fd's reference split is read up
# front in `_image_scores`, unless cached, and only when its feature network is there)
_DATA_SPLITS = {
    "energy_histogram": ("train", "test"),
    "ood": ("test",),
    "nearest_neighbours": ("train", "test"),
    "reconstruction": ("test",),
}


def check_data(c, metrics) -> None:
    """Stop (`DatasetMissingError`, one line) before sampling when a chosen metric needs data
    that is not on this machine: the run's splits, and the data sets among `eval.ood_sets`."""
    needed = {(c.data.name, split) for m in metrics for split in _DATA_SPLITS.get(m, ())}
    if "ood" in metrics:
        needed |= {(name, "test") for name in c.eval.ood_sets if name in IMAGE_NAMES}
    for name, split in sorted(needed):
        check_images_available(name, split, data_dir=c.data.data_dir or None)


def feature_network(c):
    """`protocol.feature_network(c)`, with a bad Inception weights file treated like a missing
    one: `(None, "fid", "unavailable: <what is wrong with which file>")`. When the network is
    unavailable, prints one warning line; the other metrics still run."""
    try:
        net, name, why = protocol_lib.feature_network(c)
    except InceptionWeightsError as e:  # not the weights: the same as no weights
        net, name, why = None, "fid", f"unavailable: {e}"
    if net is None:
        print(f"warning: {name} {why}; the other metrics still run", file=sys.stderr)
    return net, name, why


def _image_scores(exp: Experiment, state, metrics, out, *, seed: int, protocol: dict, ref_dir):
    """`(sampler stats, scores)` of the image protocol: rounds (in `out`), then the feature
    metrics (the reference statistics cached in `ref_dir`, shared by every step's evaluation)."""
    c = exp.c
    net, fd_name, why = feature_network(c) if "fd" in metrics else (None,) * 3
    check = protocol_lib.check_network(c) if net is not None else None
    if net is not None:
        protocol["feature_network"] = {"name": net.name, "hash": net.hash}
        protocol_lib.reference(c, net, ref_dir)  # the reference split's statistics, cached first
    if check is not None:  # named in the protocol, so these rounds get their own fingerprint
        protocol["check_network"] = {"name": check.name, "hash": check.hash}
        protocol_lib.reference(c, check, ref_dir)
    protocol["round_size"] = int(c.eval.round_size)
    rounds = protocol_lib.sample_rounds(
        exp, state, net, out, seed=seed, protocol=protocol, check=check
    )
    stats = {"nfe_mean": float(np.mean(rounds.nfe)), "nfe_max": float(np.max(rounds.nfe))}
    x = protocol_lib.dequantise(rounds.cat("samples"))
    scores = image_metrics(exp, state, x, [m for m in metrics if m != "fd"], out, seed=seed)
    if "fd" in metrics:
        scores["fd"] = (
            protocol_lib.feature_metrics(c, net, fd_name, rounds, ref_dir, check=check)
            if net is not None
            else {fd_name: why}  # the one-line reason it is unavailable
        )
    return stats, scores


def evaluate(config, workdir: str, *, seed: int = 1, step: int | None = None) -> dict:
    """Evaluate the newest checkpoint of `workdir`, or checkpoint `step` (`config`: an
    experiment ConfigDict or its `Experiment`); writes and returns `eval/metrics.json`'s
    content (`eval/step_<step>/metrics.json` for a given step)."""
    exp = cli.as_experiment(config)
    c = exp.c
    metrics = chosen_metrics(exp)
    if not exp.toy2d:
        check_data(c, metrics)  # before the checkpoint is read or any sample drawn
    state, _ = exp.restore_latest(workdir, step)
    out = eval_dir(workdir, step)
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
        ref_dir = eval_dir(workdir)
        ref_dir.mkdir(parents=True, exist_ok=True)
        stats, scores = _image_scores(
            exp, state, metrics, out, seed=seed, protocol=protocol, ref_dir=ref_dir
        )
    result = {
        "protocol": protocol,
        "sampler_stats": stats,
        "seconds": time.perf_counter() - t0,
        **scores,
    }
    (out / "metrics.json").write_text(json.dumps(result, indent=1, default=str))
    (out / "metrics.md").write_text(metrics_table(result))
    return result


def eval_dir(workdir: str, step: int | None = None) -> Path:
    """Where `evaluate` writes: `DIR/eval/`, or `DIR/eval/step_<step>/` for a chosen step."""
    out = cli.workdir_paths(workdir)["eval"]
    return out if step is None else out / f"step_{step}"


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
        exp = cli.parse_flags(argv, cluster=False)
        workdir = flags.FLAGS.workdir
        if workdir is None:
            raise ConfigError("--workdir is required")
        step = flags.FLAGS.step
        if step is not None and step < 0:
            raise ConfigError(f"--step must be a checkpoint step >= 0, got {step}")
        result = evaluate(exp, workdir, step=step)
        print(metrics_table(result), end="")
        print(f"written: {eval_dir(workdir, step) / 'metrics.json'}")

    cli.run_main(run)


if __name__ == "__main__":
    cli.define_common_flags()
    from absl import flags

    flags.DEFINE_integer("step", None, "evaluate this checkpoint step (default: the newest)")
    main(sys.argv)

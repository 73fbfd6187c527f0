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
from experiments.sampling import draw
from jaxgen.data import OOD_NAMES, mixture_modes, sample_toy2d
from jaxgen.methods import get_recipe
from jaxgen.metrics import energy_distance, mmd_rbf, mode_coverage
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


IMAGE_METRICS = (
    "fd",
    "sample_grid",
    "energy_histogram",
    "ood",
    "nearest_neighbours",
    "interpolation",
)
_NEEDS = {"energy_histogram": "energy", "ood": "energy", "interpolation": "interpolate"}


def available_metrics(c) -> tuple[str, ...]:
    """The metrics this data set and recipe support (image metrics need recipe capabilities)."""
    if cli.is_toy2d(c):
        return TOY2D_METRICS
    recipe = get_recipe(c.recipe)
    return tuple(m for m in IMAGE_METRICS if hasattr(recipe, _NEEDS.get(m, "sample")))


def chosen_metrics(c) -> list[str]:
    available = available_metrics(c)
    metrics = [m for m in c.eval.metrics if m != "default"] or list(available)
    unknown = [m for m in metrics if m not in available]
    if unknown:
        cli._die(
            f"config.eval.metrics: {unknown} not available for {c.data.name} with {c.recipe}; "
            f"available: {list(available)}"
        )
    for name in c.eval.ood_sets if "ood" in metrics else ():
        if name not in OOD_NAMES:
            cli._die(f"config.eval.ood_sets: unknown set {name!r}; choose from {list(OOD_NAMES)}")
    return metrics


def image_metrics(c, state, x, metrics, out, *, shape, seed: int) -> dict:
    scores = {}
    for m in metrics:
        if m == "sample_grid":
            save_image_grid(out / "samples.png", x[:64], scale=max(1, 64 // x.shape[1]))
            scores[m] = str(out / "samples.png")
        elif m == "energy_histogram":
            scores[m] = image_eval.energy_histogram(c, state, out)
        elif m == "ood":
            scores[m] = image_eval.ood(c, state, out, seed=10_000 + seed)
        elif m == "nearest_neighbours":
            scores[m] = image_eval.neighbours(c, x, out)
        elif m == "interpolation":
            scores[m] = image_eval.interpolation(c, state, out, shape=shape, seed=20_000 + seed)
    return scores


def evaluate(c, workdir: str, *, seed: int = 1) -> dict:
    shape = cli.example_shape(c)
    metrics = chosen_metrics(c)
    state, _ = cli.restore_latest(c, workdir, shape=shape)
    out = cli.workdir_paths(workdir)["eval"]
    out.mkdir(parents=True, exist_ok=True)
    protocol = {
        "num_samples": int(c.eval.num_samples),
        "checkpoint_step": int(state.step),
        "ema": bool(c.eval.ema),
        "sampler": dict(cli.recipe_config(c).__dict__),
        "seed": seed,
    }
    t0 = time.perf_counter()
    if cli.is_toy2d(c):
        x, stats = draw(c, state, c.eval.num_samples, seed=seed, shape=shape, use_ema=c.eval.ema)
        scores = toy2d_metrics(c.data.name, x, metrics, seed=10_000 + seed)
        np.save(out / "samples.npy", x)
    else:
        net, fd_name, why = protocol_lib.feature_network(c) if "fd" in metrics else (None,) * 3
        if net is not None:
            protocol["feature_network"] = {"name": net.name, "hash": net.hash}
        protocol["round_size"] = int(c.eval.round_size)
        rounds = protocol_lib.sample_rounds(
            c, state, net, out, seed=seed, shape=shape, protocol=protocol
        )
        stats = {"nfe_mean": float(np.mean(rounds.nfe)), "nfe_max": float(np.max(rounds.nfe))}
        x = protocol_lib.dequantise(rounds.cat("samples"))
        scores = image_metrics(
            c, state, x, [m for m in metrics if m != "fd"], out, shape=shape, seed=seed
        )
        if "fd" in metrics:
            scores["fd"] = (
                protocol_lib.feature_metrics(c, net, fd_name, rounds, out)
                if net is not None
                else {fd_name: why}  # the one-line reason it is unavailable
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
    walk("protocol", {k: v for k, v in result["protocol"].items() if k != "sampler"})
    lines = ["| metric | value |", "|---|---|", *(f"| {k} | {v} |" for k, v in rows)]
    return "\n".join(lines) + "\n"


def main(argv):
    c = cli.parse_flags(argv)
    if flags_workdir() is None:
        cli._die("--workdir is required")
    try:
        result = evaluate(c, flags_workdir())
    except (RuntimeError, ValueError) as e:
        cli._die(str(e))
    print(metrics_table(result), end="")
    print(f"written: {cli.workdir_paths(flags_workdir())['eval'] / 'metrics.json'}")


def flags_workdir():
    from absl import flags

    return flags.FLAGS.workdir


if __name__ == "__main__":
    cli.define_common_flags()
    main(sys.argv)

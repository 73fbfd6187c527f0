"""Evaluate a trained run: `python -m experiments.evaluate --config C --workdir DIR`.

Computes the metrics listed in `config.eval.metrics` on `eval.num_samples` EMA samples and writes
`DIR/eval/metrics.json` (with the protocol: sample count, sampler statistics, checkpoint step).
"""

import json
import sys
import time

import jax
import numpy as np

from experiments import cli
from experiments.sampling import draw
from jaxgen.data import mixture_modes, sample_toy2d
from jaxgen.metrics import energy_distance, mmd_rbf, mode_coverage

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


def evaluate(c, workdir: str, *, seed: int = 1) -> dict:
    state, _ = cli.restore_latest(c, workdir)
    metrics = [m for m in c.eval.metrics if m != "default"] or list(TOY2D_METRICS)
    unknown = [m for m in metrics if m not in TOY2D_METRICS]
    if unknown:
        cli._die(f"config.eval.metrics: unknown metric(s) {unknown}; available: {TOY2D_METRICS}")
    if not cli.is_toy2d(c):
        cli._die(f"evaluate: metrics for image data ({c.data.name}) are not available yet")
    t0 = time.perf_counter()
    x, stats = draw(c, state, c.eval.num_samples, seed=seed, shape=cli.example_shape(c))
    sample_seconds = time.perf_counter() - t0
    result = {
        "protocol": {
            "num_samples": int(c.eval.num_samples),
            "checkpoint_step": int(state.step),
            "ema": True,
            "sampler": dict(cli.recipe_config(c).__dict__),
            "seed": seed,
        },
        "sampler_stats": stats,
        "sample_seconds": sample_seconds,
        **toy2d_metrics(c.data.name, x, metrics, seed=10_000 + seed),
    }
    out = cli.workdir_paths(workdir)["eval"]
    out.mkdir(parents=True, exist_ok=True)
    np.save(out / "samples.npy", x)
    (out / "metrics.json").write_text(json.dumps(result, indent=1, default=str))
    return result


def main(argv):
    c = cli.parse_flags(argv)
    if flags_workdir() is None:
        cli._die("--workdir is required")
    try:
        result = evaluate(c, flags_workdir())
    except RuntimeError as e:
        cli._die(str(e))
    print(json.dumps({k: v for k, v in result.items() if k != "protocol"}, default=str))


def flags_workdir():
    from absl import flags

    return flags.FLAGS.workdir


if __name__ == "__main__":
    cli.define_common_flags()
    main(sys.argv)

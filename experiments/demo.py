"""`make demo`: train VAPO on 8gaussians (about a minute on 2 CPU cores), sample, plot, score.

    python -m experiments.demo --workdir runs/demo [--config.data.name=25gaussians ...]

Writes `DIR/samples.png` (samples over data), `DIR/field.png` (Φ and ∇Φ, the paper's Fig. 1),
`DIR/metrics.json`, plus everything `experiments.train` writes.
"""

import json
import sys
import time
from functools import partial
from pathlib import Path

import jax
import numpy as np
from absl import flags

from experiments import cli, evaluate
from experiments.train import train
from jaxgen.data import sample_toy2d
from jaxgen.methods import vapo
from jaxgen.train.figures import save_field_plot, save_scatter

DEFAULT_CONFIG = "experiments/configs/vapo/toy2d.py"


def main(argv):
    if not any(a.startswith("--config=") or a == "--config" for a in argv):
        argv = [argv[0], f"--config={DEFAULT_CONFIG}", *argv[1:]]
    c = cli.parse_flags(argv)
    workdir = flags.FLAGS.workdir or "runs/demo"
    if not cli.is_toy2d(c):
        cli._die("the demo trains on 2-D data; set --config.data.name to one of the 2-D sets")
    t0 = time.perf_counter()
    state = train(c, workdir)
    train_s = time.perf_counter() - t0
    t1 = time.perf_counter()
    result = evaluate.evaluate(c, workdir)
    eval_s = time.perf_counter() - t1
    root = Path(workdir)
    x = np.load(root / "eval" / "samples.npy")
    data = np.asarray(sample_toy2d(c.data.name, 2000, jax.random.PRNGKey(7)))
    lim = float(np.abs(data).max()) * 1.3
    save_scatter(
        root / "samples.png",
        x,
        data,
        bounds=(-lim, lim),
        title=f"VAPO on {c.data.name}: {len(x)} samples, "
        f"NFE {result['sampler_stats']['nfe_mean']:.0f}",
    )
    rc = cli.recipe_config(c)
    params = state.potential.ema_params
    save_field_plot(
        root / "field.png",
        jax.jit(partial(vapo.potential, params, config=rc)),
        jax.jit(partial(vapo.velocity, params, config=rc)),
        data=data,
        bounds=(-lim, lim),
        title=f"learned potential Φ and flow ∇Φ ({c.data.name})",
    )
    result["train_seconds"], result["eval_seconds"] = train_s, eval_s
    (root / "metrics.json").write_text(json.dumps(result, indent=1, default=str))
    cov = result.get("mode_coverage", {})
    print(
        json.dumps(
            {
                "workdir": str(root),
                "train_s": round(train_s, 1),
                "sample_and_eval_s": round(eval_s, 1),
                "nfe": result["sampler_stats"]["nfe_mean"],
                "mode_fractions": [round(f, 4) for f in cov.get("mode_fractions", [])],
                "high_quality_fraction": cov.get("high_quality_fraction"),
                "mmd_rbf": result.get("mmd_rbf"),
                "figures": [str(root / "samples.png"), str(root / "field.png")],
            },
            indent=1,
        )
    )


if __name__ == "__main__":
    cli.define_common_flags()
    main(sys.argv)

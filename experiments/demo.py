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
from jaxgen.methods.common import ConfigError
from jaxgen.train.figures import save_field_plot, save_scatter

DEFAULT_CONFIG = "experiments/configs/vapo/toy2d.py"


def demo(argv):
    if not any(a.startswith("--config=") or a == "--config" for a in argv):
        argv = [argv[0], f"--config={DEFAULT_CONFIG}", *argv[1:]]
    exp = cli.parse_flags(argv)
    c, workdir = exp.c, flags.FLAGS.workdir or "runs/demo"
    if not exp.toy2d or c.recipe != "vapo":
        raise ConfigError("the demo trains VAPO on 2-D data; set --config.data.name to a 2-D set")
    t0 = time.perf_counter()
    state = train(exp, workdir)
    train_s = time.perf_counter() - t0
    t1 = time.perf_counter()
    result = evaluate.evaluate(exp, workdir)
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
    rc = exp.rc
    params = state.potential.ema_params
    save_field_plot(
        root / "field.png",
        jax.jit(partial(vapo.potential, params, config=rc)),
        jax.jit(partial(vapo.velocity, params, config=rc)),
        label=exp.caps.energy_label,
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


def main(argv):
    cli.run_main(lambda: demo(argv))


if __name__ == "__main__":
    cli.define_common_flags()
    main(sys.argv)

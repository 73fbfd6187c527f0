"""Sample a trained run: `python -m experiments.sample --config C --workdir D --num N --out F`.

Loads the newest checkpoint (EMA weights) and writes float32 `[N, 2]` (2-D data) or
`[N, H, W, C]` in [-1, 1] (images), in the dataset's scaling.

Translation (a recipe with a `translate` extra, e.g. FDRL trained with `data.source`):
`--from SOURCE.npy` translates the images in that file (float32 `[N, H, W, C]` in [-1, 1], the
run's example shape) instead of drawing; `--num` is then ignored.

From Python: `x, stats, step = sample(config_dict, workdir, num)`.
"""

import json
import sys
from pathlib import Path

import numpy as np
from absl import flags

from experiments import cli

flags.DEFINE_integer("num", 1000, "number of samples")
flags.DEFINE_string("out", None, "output .npy file")
flags.DEFINE_integer("seed", 0, "sampling seed")
flags.DEFINE_bool("raw", False, "use the raw (non-EMA) parameters")
flags.DEFINE_string("from", None, "translate the images in this .npy file instead of drawing")


def sample(config, workdir: str, num: int, *, seed: int = 0, use_ema: bool = True):
    """`(samples [num, ...] float32, sampler stats, checkpoint step)` of the newest checkpoint
    (`config`: an experiment ConfigDict or its `Experiment`)."""
    exp = cli.as_experiment(config)
    if num <= 0:
        raise ValueError(f"--num={num}: must be positive")
    state, _ = exp.restore_latest(workdir)
    x, stats = exp.draw(state, num, seed=seed, use_ema=use_ema)
    return x, stats, int(state.step)


def translate_file(config, workdir: str, path: str, *, seed: int = 0, use_ema: bool = True):
    """`(translations, sampler stats, checkpoint step)` of the images in the .npy file `path`
    by the newest checkpoint; one clear error when the recipe cannot translate or the images
    do not fit the run."""
    exp = cli.as_experiment(config)
    if "translate" not in exp.caps.extras:
        raise cli.ConfigError(f"--from: the {exp.c.recipe} recipe does not translate images")
    if not Path(path).exists():
        raise cli.ConfigError(f"--from={path}: no such file")
    x0 = exp.check_examples(np.load(path), f"--from={path}")  # before any checkpoint is read
    state, _ = exp.restore_latest(workdir)
    x, stats = exp.translate(state, x0, seed=seed, use_ema=use_ema)
    return x, stats, int(state.step)


def main(argv):
    def run():
        exp = cli.parse_flags(argv, cluster=False)
        f = flags.FLAGS
        if f.workdir is None or f.out is None:
            raise cli.ConfigError("--workdir and --out are required")
        if f["from"].value:
            x, stats, step = translate_file(
                exp, f.workdir, f["from"].value, seed=f.seed, use_ema=not f.raw
            )
        else:
            x, stats, step = sample(exp, f.workdir, f.num, seed=f.seed, use_ema=not f.raw)
        out = Path(f.out)
        out.parent.mkdir(parents=True, exist_ok=True)
        np.save(out, x)
        print(json.dumps({"out": str(out), "shape": list(x.shape), "step": step, **stats}))

    cli.run_main(run)


if __name__ == "__main__":
    cli.define_common_flags()
    main(sys.argv)

"""Sample a trained run: `python -m experiments.sample --config C --workdir D --num N --out F`.

Loads the newest checkpoint (EMA weights) and writes float32 `[N, 2]` (2-D data) or
`[N, H, W, C]` in [-1, 1] (images), in the dataset's scaling.

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


def sample(config, workdir: str, num: int, *, seed: int = 0, use_ema: bool = True):
    """`(samples [num, ...] float32, sampler stats, checkpoint step)` of the newest checkpoint
    (`config`: an experiment ConfigDict or its `Experiment`)."""
    exp = cli.as_experiment(config)
    if num <= 0:
        raise ValueError(f"--num={num}: must be positive")
    state, _ = exp.restore_latest(workdir)
    x, stats = exp.draw(state, num, seed=seed, use_ema=use_ema)
    return x, stats, int(state.step)


def main(argv):
    def run():
        exp = cli.parse_flags(argv, cluster=False)
        f = flags.FLAGS
        if f.workdir is None or f.out is None:
            raise cli.ConfigError("--workdir and --out are required")
        x, stats, step = sample(exp, f.workdir, f.num, seed=f.seed, use_ema=not f.raw)
        out = Path(f.out)
        out.parent.mkdir(parents=True, exist_ok=True)
        np.save(out, x)
        print(json.dumps({"out": str(out), "shape": list(x.shape), "step": step, **stats}))

    cli.run_main(run)


if __name__ == "__main__":
    cli.define_common_flags()
    main(sys.argv)

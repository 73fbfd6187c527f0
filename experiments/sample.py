"""Sample a trained run: `python -m experiments.sample --config C --workdir D --num N --out F`.

Loads the newest checkpoint (EMA weights) and writes float32 `[N, 2]` (2-D data) or
`[N, H, W, C]` in [-1, 1] (images), in the dataset's scaling.
"""

import json
import sys
from pathlib import Path

import numpy as np
from absl import flags

from experiments import cli
from experiments.sampling import draw

flags.DEFINE_integer("num", 1000, "number of samples")
flags.DEFINE_string("out", None, "output .npy file")
flags.DEFINE_integer("seed", 0, "sampling seed")
flags.DEFINE_bool("raw", False, "use the raw (non-EMA) parameters")


def main(argv):
    c = cli.parse_flags(argv)
    f = flags.FLAGS
    if f.workdir is None or f.out is None:
        cli._die("--workdir and --out are required")
    if f.num <= 0:
        cli._die(f"--num={f.num}: must be positive")
    shape = cli.example_shape(c)
    state, _ = cli.restore_latest(c, f.workdir, shape=shape)
    try:
        x, stats = draw(c, state, f.num, seed=f.seed, shape=shape, use_ema=not f.raw)
    except RuntimeError as e:
        cli._die(str(e))
    out = Path(f.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    np.save(out, x)
    print(json.dumps({"out": str(out), "shape": list(x.shape), "step": int(state.step), **stats}))


if __name__ == "__main__":
    cli.define_common_flags()
    main(sys.argv)

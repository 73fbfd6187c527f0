"""VAEBM on images: samples of one test-time chain after 0, 20, 60, 100 and 200 Langevin steps
(docs/methods/vaebm.md §2), scored by FD in the data set's extractor and its check extractor.

    python -m benchmarks.vaebm_chain --workdir runs/vaebm_fmnist [--num 2000] [--out NAME] \
        [--eta 0.05] [--steps 0 20 60 100 200]

From fresh ε ~ N(0, I) (the test-time start), η the run's `sample.step_size` (0: its training
η) unless `--eta` is given (a larger test-time step: how far the chain must move). The images
are the decoder means at each snapshot, 8-bit quantised as `evaluate` does, each set scored
against the run's train-split reference statistics. Step 0 is the base itself with the same
draws. Also the fractions of decoder-mean pixels outside [-1, 1] and above 1: the energy sees
them clamped, so has no gradient there. FD's bias grows like 1/n: set these beside references
of the same `--num`.
"""

import argparse
from pathlib import Path

import jax
import numpy as np

from benchmarks.common import record, restore
from experiments import protocol as protocol_lib
from experiments.experiment import workdir_paths
from jaxgen.methods import vaebm
from jaxgen.metrics import load_extractor

STEPS = (0, 20, 60, 100, 200)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--workdir", required=True)
    ap.add_argument("--num", type=int, default=2000)
    ap.add_argument("--batch", type=int, default=500)
    ap.add_argument("--out", default="", help="record as docs/bench/<OUT>.json")
    ap.add_argument("--eta", type=float, default=0.0, help="test-time step (0: the run's)")
    ap.add_argument("--steps", type=int, nargs="+", default=list(STEPS), help="snapshots")
    args = ap.parse_args()
    if args.eta < 0 or any(k < 0 for k in args.steps):
        ap.error("--eta and --steps must be >= 0")
    exp, state = restore(Path(args.workdir))
    c, cfg = exp.c, exp.rc
    nets = {
        "fd": protocol_lib.feature_network(c)[0],
        "fd_check": load_extractor(c.data.name, check=True),
    }
    ref_dir = workdir_paths(args.workdir)["eval"]
    refs = {k: protocol_lib.reference(c, net, ref_dir)[0] for k, net in nets.items()}
    base = vaebm.tilt_base(cfg, exp.shape)
    eta = args.eta or cfg.sample.step_size or cfg.method.step_size
    params = state.energy.eval_params(c.eval.ema)
    segment = jax.jit(
        lambda e, k, n: vaebm.run_chain(
            params, state.base, e, k, config=cfg, base=base, steps=n, eta=eta
        )[0],
        static_argnums=2,
    )
    decode = jax.jit(lambda e: base.generate(state.base, e, mean=True)[0])
    batches = [
        vaebm.fresh_eps(jax.random.PRNGKey(1000 + i), args.batch, base, cfg)
        for i in range(-(-args.num // args.batch))
    ]
    rows, done = {}, 0
    for k_test in sorted(set(args.steps)):
        if k_test > done:
            batches = [
                segment(e, jax.random.PRNGKey(k_test * 7919 + i), k_test - done)
                for i, e in enumerate(batches)
            ]
            done = k_test
        x = np.concatenate([np.asarray(decode(e)) for e in batches])[: args.num]
        # decoder means outside the pixel range: the energy sees them clamped, so has no
        # gradient there (docs/methods/vaebm.md §2)
        outside = float(np.mean(np.abs(x) > 1.0))
        above = float(np.mean(x > 1.0))  # white beyond white: the clamp hides them from f
        x = protocol_lib.unpad(c, protocol_lib.dequantise(protocol_lib.quantise(x)))
        rows[k_test] = {
            k: protocol_lib.frechet_to_reference(net.features(x), refs[k])
            for k, net in nets.items()
        }
        rows[k_test]["pixels_outside_range"] = outside
        rows[k_test]["pixels_above_range"] = above
        print({"k_test": k_test, **{k: round(v, 3) for k, v in rows[k_test].items()}}, flush=True)
    if args.out:
        payload = {
            "workdir": args.workdir,
            "step": int(state.step),
            "num": args.num,
            "eta": eta,
            "by_k_test": rows,
        }
        print(f"wrote {record(args.out, payload)}")


if __name__ == "__main__":
    main()

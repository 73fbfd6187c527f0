"""FD of a trained run beside its simple controls, with the spread over independent draws of
the same size: the run's samples, a 16-component diagonal GMM's and the independent-pixel
model's (both fitted to the train split), each scored on `--draws` sets of `--num` images.

    python -m benchmarks.fd_spread --workdir runs/vapo_digits --num 300 --draws 5 [--out NAME]

FD's bias grows like 1/n and its spread at a few hundred samples is several units, so a single
300-sample FD says little; rows of one size and their standard deviations do. The run's
samples are 8-bit quantised as `experiments.evaluate` does, with its EMA setting; everything is
scored against the run's reference statistics (train split, the project's extractor).
"""

import argparse
from pathlib import Path

import numpy as np

from benchmarks.calibrate_feature_distances import gmm_samples, pixel_samples
from benchmarks.common import record, restore
from experiments import protocol as protocol_lib
from experiments.experiment import workdir_paths
from tools.train_feature_extractors import load_split


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--workdir", required=True)
    ap.add_argument("--num", type=int, default=300)
    ap.add_argument("--draws", type=int, default=5)
    ap.add_argument("--out", default="", help="record as docs/bench/<OUT>.json")
    args = ap.parse_args()
    exp, state = restore(Path(args.workdir))
    c = exp.c
    net, name, reason = protocol_lib.feature_network(c)
    if net is None:
        raise SystemExit(f"error: no feature network for {c.data.name}: {reason}")
    ref, _ = protocol_lib.reference(c, net, workdir_paths(args.workdir)["eval"])
    x_train, _ = load_split(c.data.name, "train")
    score = lambda x: protocol_lib.frechet_to_reference(net.features(x), ref)
    rows = {"run": [], "gmm16": [], "independent_pixels": []}
    for seed in range(args.draws):
        x, _ = exp.draw(state, args.num, seed=100 + seed, use_ema=c.eval.ema)
        x = protocol_lib.unpad(c, protocol_lib.dequantise(protocol_lib.quantise(x)))
        rows["run"].append(score(x))
        rows["gmm16"].append(score(gmm_samples(x_train, args.num, seed=seed)))
        rows["independent_pixels"].append(score(pixel_samples(x_train, args.num, seed=seed)))
        print({k: round(v[-1], 2) for k, v in rows.items()}, flush=True)
    summary = {
        k: {"mean": float(np.mean(v)), "sd": float(np.std(v, ddof=1)), "values": v}
        for k, v in rows.items()
    }
    for k, v in summary.items():
        print(f"{k}: {name} {v['mean']:.1f} ± {v['sd']:.1f} ({args.draws} draws of {args.num})")
    if args.out:
        payload = {
            "workdir": args.workdir,
            "step": int(state.step),
            "num": args.num,
            "draws": args.draws,
            "metric": name,
            "rows": summary,
        }
        print(f"wrote {record(args.out, payload)}")


if __name__ == "__main__":
    main()

"""The terminal time T of the VAPO sampling ODE on a trained image run (the paper's "T > 1 is
best" claim, paper App. B.3; docs/methods/vapo.md §5.1): per T, the NFE per sample,
FD-<dataset> (and KID, precision/recall) in the project's features, and the mean pixel distance
of a sample to its nearest training image; EMA and raw weights. Writes one figure with a row of
samples per T (`docs/figures/vapo_<dataset>_t_sweep.png`) and
`docs/bench/vapo_<dataset>_t_sweep.json`.

    python -m benchmarks.vapo_t_sweep --workdir runs/vapo_fmnist [--num 1000] [--t 1 1.5 2 3] \
        [--raw-t 2]

The run's config is read from `WORKDIR/config.json` (written by `experiments.train`), on top of
the current defaults of `experiments/configs/common.py` (so older runs gain new eval fields).
Each T has its own `Experiment` (one compiled sampler, shared by the EMA and raw weights); it is
compiled and warmed up by drawing one chunk first (`warmup_s`), so `sample_seconds` excludes
compilation.
"""

import argparse
import copy
import time
from pathlib import Path

import ml_collections
import numpy as np

from benchmarks.common import RESULTS, record
from experiments import cli
from experiments import protocol as protocol_lib
from experiments.configs.common import base_config
from experiments.experiment import load_saved_config, workdir_paths
from experiments.image_eval import split_images
from jaxgen.metrics import (
    kernel_inception_distance,
    nearest_neighbours,
    precision_recall,
)
from jaxgen.train.figures import save_image_rows


def experiment_at(c, t_end: float):
    """The run's `Experiment` with the sampler's terminal time set to `t_end` (each has its own
    compiled sampler)."""
    c = copy.deepcopy(c)
    c.sample.t_end = float(t_end)
    return cli.experiment(c)


def sweep_row(exp, state, net, name, ref, ref_feats, train, *, num, ema):
    """One (T, weights) row. The sampler is compiled and warmed up by drawing one chunk
    (`eval.batch_size` samples) first, timed as `warmup_s`; `sample_seconds` is the compiled
    draw of `num` samples."""
    chunk = min(num, exp.c.eval.batch_size)
    t0 = time.perf_counter()
    exp.draw(state, chunk, seed=0, use_ema=ema)
    warmup = time.perf_counter() - t0
    t0 = time.perf_counter()
    x, stats = exp.draw(state, num, seed=1, use_ema=ema)
    seconds = time.perf_counter() - t0
    x = protocol_lib.dequantise(protocol_lib.quantise(x))
    feats = net.features(x)
    kid, _ = kernel_inception_distance(feats, ref_feats, num_subsets=50, subset_size=min(num, 1000))
    pr = precision_recall(ref_feats[:num], feats, k=3)
    _, nn_dist = nearest_neighbours(x[:200], train, 1)
    row = {
        "t_end": exp.rc.sample.t_end,
        "ema": ema,
        "nfe_per_sample": stats["nfe_mean"],
        name: protocol_lib.frechet_to_reference(feats, ref),
        "kid": kid,
        **pr,
        "mean_nn_distance": float(nn_dist.mean()),
        "sample_seconds": seconds,
        "warmup_s": warmup,
    }
    return row, x[:10]


def run_config(workdir: str) -> ml_collections.ConfigDict:
    """The config saved by `experiments.train` in `workdir`, with missing fields defaulted."""
    saved = load_saved_config(Path(workdir) / "config.json").to_dict()
    c = base_config(
        saved.get("recipe", "vapo"), dataset=saved["data"]["name"], batch_size=1, num_steps=0
    )
    for key, value in saved.items():
        if isinstance(value, dict):
            c[key].update(value)
        else:
            c[key] = value
    return c


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--workdir", required=True)
    ap.add_argument("--num", type=int, default=1000)
    ap.add_argument("--t", type=float, nargs="+", default=[1.0, 1.5, 2.0, 3.0])
    ap.add_argument("--raw-t", type=float, nargs="*", default=[2.0], help="T values, raw weights")
    args = ap.parse_args()
    c = run_config(args.workdir)
    exps = {t: experiment_at(c, t) for t in sorted({*args.t, *args.raw_t})}
    state, _ = exps[args.t[0]].restore_latest(args.workdir)
    net, name, reason = protocol_lib.feature_network(c)
    if net is None:
        raise SystemExit(f"error: no feature network for {c.data.name}: {reason}")
    ref, ref_feats = protocol_lib.reference(c, net, workdir_paths(args.workdir)["eval"])
    train = split_images(c, "train")
    rows, strips = [], []
    runs = [(True, t) for t in args.t] + [(False, t) for t in args.raw_t]
    for ema, t_end in runs:
        row, strip = sweep_row(
            exps[t_end], state, net, name, ref, ref_feats, train, num=args.num, ema=ema
        )
        rows.append(row)
        strips.append(strip)
        print({k: round(v, 4) if isinstance(v, float) else v for k, v in row.items()}, flush=True)
    fig = RESULTS.parent / "figures" / f"vapo_{c.data.name}_t_sweep.png"
    save_image_rows(fig, np.stack(strips), scale=2)
    record(
        f"vapo_{c.data.name}_t_sweep",
        {"workdir": args.workdir, "step": int(state.step), "num_samples": args.num, "rows": rows},
    )
    print(f"figure: {fig} (rows: EMA T={args.t}, then raw weights T={args.raw_t})")


if __name__ == "__main__":
    main()

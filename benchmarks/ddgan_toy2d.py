"""DDGAN on 25 Gaussians (thesis §6.4.3, Fig. 6.9; docs/methods/ddgan.md): the ablation table
and the scatter plots, from finished runs.

    python -m benchmarks.ddgan_toy2d RUNS_DIR [--out] [--record-as NAME]

`RUNS_DIR` holds one workdir per run named `<variant>_s<seed>` (e.g. `T4_s0`, `T4noz_s2`), each
trained and evaluated by `experiments.train` / `experiments.evaluate` (the commands are in
docs/results.md). Reported per variant over its seeds: modes hit (of 25), modes holding at least
half their fair share of the samples, the high-quality fraction (samples within 3 std of a
mode), the KL of the mode histogram to uniform and the RBF MMD² (`eval/metrics.json`, 10k
samples), mean ± sample standard deviation over seeds. The scatter plots show 2000 EMA samples
of each variant's seed-0 run over the mode centres: `docs/figures/<NAME>.png` (NAME
`ddgan_25gaussians` by default).
"""

import argparse
import json
from pathlib import Path

import numpy as np

from benchmarks.common import record, restore
from jaxgen.data import mixture_modes

FIGURES = Path(__file__).resolve().parents[1] / "docs" / "figures"
METRICS = {
    "modes_hit": lambda m: m["mode_coverage"]["modes_hit"],
    # modes holding at least half of their fair share (1/50 of the samples): "hit" counts a mode
    # with a single sample, which says nothing when samples cover the square
    "modes_at_half_share": lambda m: sum(
        f >= 0.5 / len(m["mode_coverage"]["mode_fractions"])
        for f in m["mode_coverage"]["mode_fractions"]
    ),
    "high_quality_fraction": lambda m: m["mode_coverage"]["high_quality_fraction"],
    "kl_to_uniform": lambda m: m["mode_coverage"]["kl_to_uniform"],
    "mmd_rbf": lambda m: m["mmd_rbf"],
}


def collect(root: Path) -> dict:
    """`{variant: {"seeds": [...], metric: [per seed]}}` of the evaluated runs under `root`."""
    table = {}
    for run in sorted(root.glob("*_s*")):
        path = run / "eval" / "metrics.json"
        if not path.exists():
            print(f"skipped {run.name}: no eval/metrics.json")
            continue
        variant, seed = run.name.rsplit("_s", 1)
        metrics = json.loads(path.read_text())
        row = table.setdefault(variant, {"seeds": [], **{k: [] for k in METRICS}})
        row["seeds"].append(int(seed))
        for name, read in METRICS.items():
            row[name].append(float(read(metrics)))
    return table


def plot(root: Path, variants: list, path: Path, num: int = 2000) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    centres, _ = mixture_modes("25gaussians")
    fig, axes = plt.subplots(1, len(variants), figsize=(3 * len(variants), 3.2))
    for ax, variant in zip(np.atleast_1d(axes), variants, strict=True):
        exp, state = restore(root / f"{variant}_s0")
        x, _ = exp.draw(state, num, seed=0)
        ax.scatter(x[:, 0], x[:, 1], s=1, alpha=0.4)
        ax.scatter(centres[:, 0], centres[:, 1], s=12, c="red", marker="x")
        ax.set(xlim=(-5.5, 5.5), ylim=(-5.5, 5.5), title=variant, xticks=[], yticks=[])
        ax.set_aspect("equal")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    print(f"wrote {path}")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("runs", type=Path)
    p.add_argument("--out", action="store_true")
    p.add_argument("--record-as", default="ddgan_25gaussians", help="record and figure name")
    args = p.parse_args()
    table = collect(args.runs)
    if not table:
        raise SystemExit(f"ddgan_toy2d: no evaluated runs under {args.runs}")
    print("| variant | seeds | " + " | ".join(METRICS) + " |")
    print("|---" * (len(METRICS) + 2) + "|")
    for variant, row in table.items():
        sd = lambda v: np.std(v, ddof=1) if len(v) > 1 else 0.0  # sample sd over seeds
        cells = [f"{np.mean(row[k]):.4g} ± {sd(row[k]):.2g}" for k in METRICS]
        print(f"| {variant} | {len(row['seeds'])} | " + " | ".join(cells) + " |")
    if args.out:
        with_seed0 = [v for v, row in table.items() if 0 in row["seeds"]]
        plot(args.runs, with_seed0, FIGURES / f"{args.record_as}.png")
        cmd = f"python -m benchmarks.ddgan_toy2d {args.runs} --out --record-as {args.record_as}"
        print(f"wrote {record(args.record_as, {'command': cmd, 'variants': table})}")


if __name__ == "__main__":
    main()

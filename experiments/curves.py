"""Training curves of one or more runs from their `metrics.jsonl`: one panel per metric.

    python -m experiments.curves --workdir runs/ddgan_fmnist [--keys loss_d loss_g] [--smooth 5]
    python -m experiments.curves --workdir lsif=runs/a --workdir lrkl=runs/b --out curves.png
    python -m experiments.curves --workdir runs/a --keys loss e_neg --symlog e_neg   # log axis

`--keys` defaults to the recipe's headline metrics (from the run's `config.json`); the figure
goes to `--out`, by default `WORKDIR/curves.png` of the first run.
"""

import argparse
import json
import sys
from pathlib import Path

from jaxgen.methods import get_recipe
from jaxgen.train.figures import save_curves


def _rows(workdir: Path) -> list[dict]:
    path = workdir / "metrics.jsonl"
    if not path.exists():
        raise SystemExit(f"error: {path} does not exist (train the run first)")
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _headline(workdir: Path) -> tuple[str, ...]:
    config = workdir / "config.json"
    if not config.exists():
        raise SystemExit(f"error: {config} does not exist: name the metrics with --keys")
    return tuple(get_recipe(json.loads(config.read_text())["recipe"]).CAPABILITIES.headline)


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--workdir", action="append", required=True, help="DIR or NAME=DIR")
    p.add_argument("--keys", nargs="+", default=None)
    p.add_argument("--smooth", type=int, default=1, help="running mean over N logged points")
    p.add_argument("--symlog", nargs="+", default=(), help="metrics on a symmetric log axis")
    p.add_argument("--out", default="")
    args = p.parse_args(argv)
    runs = {}
    for spec in args.workdir:
        name, _, folder = spec.rpartition("=")
        runs[name or Path(folder).name] = Path(folder)
    keys = tuple(args.keys) if args.keys else _headline(next(iter(runs.values())))
    rows = {name: _rows(folder) for name, folder in runs.items()}
    stray = sorted(set(args.symlog) - set(keys))
    if stray:
        raise SystemExit(f"error: --symlog {stray} are not among the plotted metrics {list(keys)}")
    missing = [k for k in keys if not any(k in r for rs in rows.values() for r in rs)]
    if missing:
        raise SystemExit(f"error: no run logged {missing}; the logged metrics are {_logged(rows)}")
    out = Path(args.out) if args.out else next(iter(runs.values())) / "curves.png"
    save_curves(out, rows, keys, symlog=tuple(args.symlog), smooth=max(1, args.smooth))
    print(f"curves: {out}")


def _logged(rows: dict) -> list[str]:
    return sorted({k for rs in rows.values() for r in rs for k in r if k != "step"})


if __name__ == "__main__":
    main(sys.argv[1:])

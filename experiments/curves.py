"""Training curves of one or more runs from their `metrics.jsonl`: one panel per metric.

    python -m experiments.curves --workdir runs/ddgan_fmnist [--keys loss_d loss_g] [--smooth 5]
    python -m experiments.curves --workdir lsif=runs/a --workdir lrkl=runs/b --out curves.png
    python -m experiments.curves --workdir runs/a --keys loss e_neg --symlog e_neg   # log axis

`--keys` defaults to the recipe's headline metrics (from the run's `config.json`); the figure
goes to `--out`, by default `WORKDIR/curves.png` of the first run.

`--workdir` is `DIR` or `NAME=DIR`: an argument that is an existing directory is a `DIR`, even
when its path holds a `=`; otherwise it splits at its first `=` when the part before it is a
name (not empty, no `/`). A line of `metrics.jsonl` that is not a JSON row (a row cut short by a
killed trainer) is skipped with one warning line. Errors are one line, `error: ...`, exit 2.
"""

import argparse
import sys
from pathlib import Path

from experiments import cli
from experiments.run_files import check_workdir, load_saved_config
from jaxgen.methods import get_recipe
from jaxgen.methods.common import ConfigError
from jaxgen.train.figures import save_curves
from jaxgen.train.logging import read_metrics


def run_spec(spec: str) -> tuple[str, Path]:
    """`(name, folder)` of one `--workdir` argument (the rule in the module docstring); the
    name of a bare `DIR` is its last component."""
    name, eq, folder = spec.partition("=")
    if Path(spec).is_dir() or not eq or not name or "/" in name:
        name, folder = "", spec
    folder = Path(folder)
    check_workdir(folder)
    return name or folder.name, folder


def _rows(workdir: Path) -> list[dict]:
    path = workdir / "metrics.jsonl"
    if not path.exists():
        raise ConfigError(f"{path} does not exist (train the run first)")
    return read_metrics(workdir)


def _headline(workdir: Path) -> tuple[str, ...]:
    config = workdir / "config.json"
    if not config.exists():
        raise ConfigError(f"{config} does not exist: name the metrics with --keys")
    return tuple(get_recipe(load_saved_config(config).recipe).CAPABILITIES.headline)


def curves(argv) -> Path:
    """Parse `argv`, draw the figure and return its path; a bad argument or run is one
    `ConfigError` (or `OSError`) line."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--workdir", action="append", required=True, help="DIR or NAME=DIR")
    p.add_argument("--keys", nargs="+", default=None)
    p.add_argument("--smooth", type=int, default=1, help="running mean over N logged points")
    p.add_argument("--symlog", nargs="+", default=(), help="metrics on a symmetric log axis")
    p.add_argument("--out", default="")
    args = p.parse_args(argv)
    runs = dict(run_spec(spec) for spec in args.workdir)
    keys = tuple(args.keys) if args.keys else _headline(next(iter(runs.values())))
    rows = {name: _rows(folder) for name, folder in runs.items()}
    stray = sorted(set(args.symlog) - set(keys))
    if stray:
        raise ConfigError(f"--symlog {stray} are not among the plotted metrics {list(keys)}")
    missing = [k for k in keys if not any(k in r for rs in rows.values() for r in rs)]
    if missing:
        raise ConfigError(f"no run logged {missing}; the logged metrics are {_logged(rows)}")
    out = Path(args.out) if args.out else next(iter(runs.values())) / "curves.png"
    save_curves(out, rows, keys, symlog=tuple(args.symlog), smooth=max(1, args.smooth))
    print(f"curves: {out}")
    return out


def main(argv=None) -> None:
    cli.run_main(lambda: curves(argv))


def _logged(rows: dict) -> list[str]:
    return sorted({k for rs in rows.values() for r in rs for k in r if k != "step"})


if __name__ == "__main__":
    main(sys.argv[1:])

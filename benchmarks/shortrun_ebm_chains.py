"""Where a trained short-run EBM's chains end (docs/methods/shortrun_ebm.md §4): the range of
its samples against the data box [-1, 1], and the energies there.

    python -m benchmarks.shortrun_ebm_chains runs/srl_noisefree runs/srl_genloss [--num 256] [--out]

For each run (its `config.json` and newest checkpoint; the weights `eval.ema` names), draws
`--num` samples with the run's own dynamics (K noise-free or noisy euler steps from N(0, I)) and
reports their pixel range, mean and spread, the fraction of pixels outside [-1, 1], the spread
across samples (mean over pixels of the per-pixel standard deviation: near 0 when every sample
is the same image), and the mean energy E of the samples, of the same samples clipped to
[-1, 1], and of `--num` training images. A generator-loss run whose negatives' energy falls far
below the data's (the collapse in docs/results.md) shows here whether the chains left the box.
"""

import argparse
from pathlib import Path

import numpy as np

from benchmarks.common import record, restore


def chain_range(workdir: Path, num: int, seed: int = 3) -> dict:
    """The sample statistics of one run (see the module docstring)."""
    from jaxgen.data import load_images
    from jaxgen.data.pipeline import to_unit_range

    exp, state = restore(workdir)
    c = exp.c
    x, _ = exp.draw(state, num, seed=seed, use_ema=c.eval.ema)
    x = np.asarray(x, np.float64)
    energy = lambda v: -np.asarray(exp.jitted("energy", use_ema=c.eval.ema)(state, v))
    src = load_images(
        c.data.name, "train", pad_to_32=c.data.pad_to_32, data_dir=c.data.data_dir or None
    )
    data = np.asarray(to_unit_range(src.images[:num], src.max_value), np.float32)
    return {
        "run": str(workdir),
        "step": int(state.step),
        "generator_loss": bool(exp.rc.method.generator_loss),
        "noise_std": float(exp.rc.method.noise_std),
        "min": float(x.min()),
        "max": float(x.max()),
        "mean": float(x.mean()),
        "std": float(x.std()),
        "fraction_outside_box": float(np.mean(np.abs(x) > 1)),
        "spread_across_samples": float(x.std(0).mean()),
        "energy_samples": float(energy(x.astype(np.float32)).mean()),
        "energy_samples_clipped": float(energy(np.clip(x, -1, 1).astype(np.float32)).mean()),
        "energy_data": float(energy(data).mean()),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", help="run directories (DIR/config.json)")
    parser.add_argument("--num", type=int, default=256)
    parser.add_argument("--out", action="store_true")
    parser.add_argument(
        "--record-as", default="shortrun_ebm_chains", help="--out writes docs/bench/NAME.json"
    )
    args = parser.parse_args()
    if args.num < 2:
        raise SystemExit(f"shortrun_ebm_chains: --num must be >= 2, got {args.num}")
    rows = []
    for run in args.runs:
        rows.append(chain_range(Path(run), args.num))
        print(
            ", ".join(
                f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}" for k, v in rows[-1].items()
            )
        )
    if args.out:
        cmd = "python -m benchmarks.shortrun_ebm_chains " + " ".join(args.runs)
        if args.record_as != "shortrun_ebm_chains":
            cmd += f" --record-as {args.record_as}"
        path = record(args.record_as, {"command": cmd, "num": args.num, "runs": rows})
        print(f"wrote {path}")


if __name__ == "__main__":
    main()

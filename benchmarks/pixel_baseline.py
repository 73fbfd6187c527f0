"""The independent-pixel model's bits/dim (`jaxgen.metrics.pixel_baseline`), the control beside
every likelihood reported for an 8-bit image set (docs/results.md, "Baselines").

    python -m benchmarks.pixel_baseline [--dataset fashion_mnist] [--num 300] [--out]

Fits a 256-level histogram per pixel to the whole train split (add-one smoothing) and scores the
first `--num` test images (the images `benchmarks.vapo_bits_per_dim` scores) and the whole test
split. `--out` writes `docs/bench/pixel_baseline_<dataset>.json`.
"""

import argparse
import time

import numpy as np

from benchmarks.common import record
from jaxgen.data import load_images
from jaxgen.metrics.pixel_baseline import fit_pixel_histogram, pixel_bits_per_dim


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--dataset", default="fashion_mnist")
    p.add_argument("--num", type=int, default=300)
    p.add_argument("--alpha", type=float, default=1.0)
    p.add_argument("--out", action="store_true")
    args = p.parse_args()
    train, test = (load_images(args.dataset, split) for split in ("train", "test"))
    if train.max_value != 255:
        raise SystemExit(f"pixel_baseline: expects 8-bit images, got max_value={train.max_value}")
    t0 = time.perf_counter()
    probs = fit_pixel_histogram(np.asarray(train.images), alpha=args.alpha)
    bpd = pixel_bits_per_dim(probs, np.asarray(test.images))
    first = bpd[: args.num]
    result = {
        "dataset": args.dataset,
        "alpha": args.alpha,
        "num_train": len(train.images),
        f"bits_per_dim_first_{args.num}": float(first.mean()),
        f"bits_per_dim_first_{args.num}_se": float(first.std(ddof=1) / np.sqrt(len(first))),
        "bits_per_dim_test": float(bpd.mean()),
        "num_test": len(bpd),
        "seconds": time.perf_counter() - t0,
    }
    print(result)
    if args.out:
        print(f"wrote {record(f'pixel_baseline_{args.dataset}', result)}")


if __name__ == "__main__":
    main()

"""What do FD-<dataset>, KID and precision/recall numbers mean? Reference points per data set.

    python -m benchmarks.calibrate_feature_distances [--datasets fashion_mnist digits]

In each extractor's features (`jaxgen.metrics.load_extractor`), against the train split:
  (a) the test set itself (the floor: finite-sample noise and the train/test gap),
  (b) the test set blurred with a Gaussian of sigma = 1 px,
  (c) the test set plus Gaussian noise of std 0.1 and 0.3 (in [-1, 1] units), clipped,
  (d) samples of a 16-component diagonal Gaussian mixture fitted to train pixels
      (sklearn, fixed seed; fitted on at most 10,000 train images), clipped to [-1, 1],
  (e) samples of the independent-pixel model (a 256-level histogram per pixel fitted to all
      train images, `jaxgen.metrics.pixel_baseline`): the images' marginals, no structure.
FD uses the full train statistics; KID compares with all train features (subsets of
min(1000, N) rows); precision/recall (k=3) use a random train subset as large as the test set.
Prints a markdown table and writes `docs/bench/feature_distance_calibration.json`.

`--num N` scores N images per row instead (the first N test images for (a)–(c), N model samples
for (d)–(e)): FD's bias grows like 1/n, so a model evaluated on 2000 samples is compared with
the rows of `--num 2000` (`docs/bench/feature_distance_calibration_n2000.json`), never with
the 10k-image rows. `--check` scores every row in the data set's independent check extractor
(`jaxgen.metrics.CHECK_EXTRACTORS`, the `fd.check` numbers of `evaluate`) instead.
"""

import argparse
import json
import time

import numpy as np
from scipy.ndimage import gaussian_filter
from sklearn.mixture import GaussianMixture

from benchmarks.common import record
from jaxgen.metrics import (
    FEATURE_EXTRACTORS,
    FeatureStats,
    frechet_distance,
    kernel_inception_distance,
    load_extractor,
    precision_recall,
)
from jaxgen.metrics.pixel_baseline import fit_pixel_histogram, sample_pixel_histogram
from tools.train_feature_extractors import load_split

SEED = 0
GMM_COMPONENTS = 16
GMM_MAX_TRAIN = 10_000


def gmm_samples(x_train: np.ndarray, n: int, *, seed: int) -> np.ndarray:
    """`n` images `[n, H, W, C]` from a diagonal GMM fitted to (a subset of) `x_train` pixels."""
    rng = np.random.default_rng(seed)
    idx = rng.permutation(len(x_train))[:GMM_MAX_TRAIN]
    flat = x_train[idx].reshape(len(idx), -1).astype(np.float64)
    gmm = GaussianMixture(GMM_COMPONENTS, covariance_type="diag", random_state=seed).fit(flat)
    samples, _ = gmm.sample(n)  # grouped by component; shuffle for readability only
    samples = samples[rng.permutation(n)]
    return np.clip(samples, -1.0, 1.0).astype(np.float32).reshape(n, *x_train.shape[1:])


def conditions(x_train, x_test, *, seed: int) -> dict[str, np.ndarray]:
    """The perturbed image sets, each `[N_test, H, W, C]` in [-1, 1]."""
    rng = np.random.default_rng(seed)
    out = {
        "(a) test set (floor)": x_test,
        "(b) test, Gaussian blur σ=1 px": gaussian_filter(
            x_test, sigma=(0, 1, 1, 0), mode="nearest"
        ),
    }
    for std in (0.1, 0.3):
        noisy = x_test + std * rng.standard_normal(x_test.shape).astype(np.float32)
        out[f"(c) test + noise std {std}"] = np.clip(noisy, -1.0, 1.0)
    out[f"(d) GMM-{GMM_COMPONENTS} (diag) samples"] = gmm_samples(x_train, len(x_test), seed=seed)
    out["(e) independent-pixel samples"] = pixel_samples(x_train, len(x_test), seed=seed)
    return out


def pixel_samples(x_train: np.ndarray, n: int, *, seed: int) -> np.ndarray:
    """`n` images `[n, H, W, C]` of the per-pixel histogram of `x_train` (in [-1, 1], levels
    recovered from the data's own grid)."""
    levels = len(np.unique(x_train[: min(len(x_train), 2000)]))
    levels = 256 if levels > 17 else 17  # 8-bit sets; sklearn's digits are 0..16
    k = np.rint((x_train + 1.0) * (levels - 1) / 2.0).astype(np.int64)
    probs = fit_pixel_histogram(k, levels=levels)
    return sample_pixel_histogram(probs, n, seed=seed)


def calibrate(dataset: str, num: int = 0, check: bool = False) -> dict:
    extractor = load_extractor(dataset, check=check)
    x_train, _ = load_split(dataset, "train")
    x_test, y_test = load_split(dataset, "test")
    if num:
        x_test, y_test = x_test[:num], y_test[:num]
    stats = FeatureStats()
    train_feats = []
    for start in range(0, len(x_train), 10_000):
        f = extractor.features(x_train[start : start + 10_000])
        stats.update(f)
        train_feats.append(f)
    mu, sigma, _ = stats.finalize()
    train_feats = np.concatenate(train_feats)
    rng = np.random.default_rng(SEED)
    real_pr = train_feats[rng.permutation(len(train_feats))[: len(x_test)]]
    rows = {}
    for label, images in conditions(x_train, x_test, seed=SEED).items():
        t0 = time.perf_counter()
        feats, logits = extractor.features_and_logits(images)
        mu_f, sigma_f, _ = FeatureStats().update(feats).finalize()
        kid, kid_std = kernel_inception_distance(
            train_feats, feats, num_subsets=100, subset_size=1000, seed=SEED
        )
        pr = precision_recall(real_pr, feats, k=3)
        rows[label] = {
            "fd": frechet_distance(mu_f, sigma_f, mu, sigma),
            "kid": kid,
            "kid_std": kid_std,
            **pr,
            "accuracy": float(np.mean(logits.argmax(axis=1) == y_test))
            if label.startswith(("(a)", "(b)", "(c)"))
            else None,
            "num_samples": len(images),
            "seconds": time.perf_counter() - t0,
        }
        print(f"  {dataset} {label}: {json.dumps(rows[label])}", flush=True)
    return {
        "extractor": extractor.name,
        "extractor_hash": extractor.hash,
        "num_train": len(x_train),
        "num_test": len(x_test),
        "rows": rows,
    }


def markdown(results: dict) -> str:
    lines = [
        "| data set (extractor) | images vs train | FD | KID (mean ± std over subsets) "
        "| precision | recall | classifier acc. |",
        "|---|---|---|---|---|---|---|",
    ]
    for dataset, res in results.items():
        for label, r in res["rows"].items():
            acc = "–" if r["accuracy"] is None else f"{r['accuracy']:.3f}"
            lines.append(
                f"| {dataset} ({res['extractor']}, n={r['num_samples']}) | {label} "
                f"| {r['fd']:.4g} | {r['kid']:.3g} ± {r['kid_std']:.2g} "
                f"| {r['precision']:.3f} | {r['recall']:.3f} | {acc} |"
            )
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--datasets", nargs="+", default=list(FEATURE_EXTRACTORS))
    parser.add_argument("--num", type=int, default=0, help="images per row (0: the test split)")
    parser.add_argument("--check", action="store_true", help="in the check extractor instead")
    args = parser.parse_args(argv)
    results = {}
    for dataset in args.datasets:
        print(f"calibrating {dataset} ...", flush=True)
        results[dataset] = calibrate(dataset, args.num, args.check)
    table = markdown(results)
    print(table)
    payload = {
        "command": "python -m benchmarks.calibrate_feature_distances"
        + (f" --num {args.num}" if args.num else "")
        + (" --check" if args.check else ""),
        "settings": {
            "seed": SEED,
            "gmm_components": GMM_COMPONENTS,
            "gmm_max_train_images": GMM_MAX_TRAIN,
            "kid": {"num_subsets": 100, "subset_size": 1000},
            "precision_recall_k": 3,
        },
        "results": results,
        "markdown": table,
    }
    name = "feature_distance_calibration" + (f"_n{args.num}" if args.num else "")
    name += "_check" if args.check else ""
    print(f"wrote {record(name, payload)}")


if __name__ == "__main__":
    main()

"""What do FD-<dataset>, KID and precision/recall numbers mean? Reference points per data set.

    python -m benchmarks.calibrate_feature_distances [--datasets fashion_mnist digits]

In each extractor's features (`jaxgen.metrics.load_extractor`), against the train split:
  (a) the test set itself (the floor: finite-sample noise and the train/test gap),
  (b) the test set blurred with a Gaussian of sigma = 1 px,
  (c) the test set plus Gaussian noise of std 0.1 and 0.3 (in [-1, 1] units), clipped,
  (d) samples of a 16-component diagonal Gaussian mixture fitted to train pixels
      (sklearn, fixed seed; fitted on at most 10,000 train images), clipped to [-1, 1].
FD uses the full train statistics; KID compares with all train features (subsets of
min(1000, N) rows); precision/recall (k=3) use a random train subset as large as the test set.
Prints a markdown table and writes `docs/bench/feature_distance_calibration.json`.
"""

import argparse
import json
import time

import numpy as np
from scipy.ndimage import gaussian_filter
from sklearn.mixture import GaussianMixture

from benchmarks.common import record
from benchmarks.train_feature_extractors import load_split
from jaxgen.metrics import (
    FEATURE_EXTRACTORS,
    FeatureStats,
    frechet_distance,
    kernel_inception_distance,
    load_extractor,
    precision_recall,
)

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
    return out


def calibrate(dataset: str) -> dict:
    extractor = load_extractor(dataset)
    x_train, _ = load_split(dataset, "train")
    x_test, y_test = load_split(dataset, "test")
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
    args = parser.parse_args(argv)
    results = {}
    for dataset in args.datasets:
        print(f"calibrating {dataset} ...", flush=True)
        results[dataset] = calibrate(dataset)
    table = markdown(results)
    print(table)
    payload = {
        "command": "python -m benchmarks.calibrate_feature_distances",
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
    print(f"wrote {record('feature_distance_calibration', payload)}")


if __name__ == "__main__":
    main()

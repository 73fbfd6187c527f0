"""Sample-quality metrics in feature space with a preemption-safe sampling protocol.

Samples are drawn in rounds of `eval.round_size`; each round is quantised to 8 bits (the FID
convention: (x+1)/2 clipped to [0, 1], ×255, rounded), its features are computed, and the round
is written to `eval/rounds_<fingerprint>/round_XXXX.npz` before the next one starts. A resumed
`evaluate` reuses the finished rounds of the same protocol (checkpoint step, seed, sample count,
round size, EMA, sampler, feature network) and draws only the missing ones.

Feature networks: the project's extractors for `fashion_mnist` and `digits` ("fd_<dataset>"),
the FID Inception-v3 for the other image sets ("fid", when its weights file is present).
"""

import hashlib
import json
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from experiments.image_eval import split_images
from jaxgen.data.pipeline import to_unit_range
from jaxgen.io import atomic_write
from jaxgen.metrics import (
    FEATURE_EXTRACTORS,
    FeatureStats,
    feature_statistics,
    frechet_distance,
    inception_score,
    kernel_inception_distance,
    load_extractor,
    load_stats,
    precision_recall,
    save_stats,
)


def feature_network(c):
    """`(network, metric_name, None)` for the run's data set, or `(None, metric_name, reason)`
    when the network's weights are unavailable (then the metric reports the reason). The network
    has `.name` and `.hash` (the SHA-256 of its weights), recorded with every statistic."""
    if c.data.name in FEATURE_EXTRACTORS:
        return load_extractor(c.data.name), f"fd_{c.data.name}", None
    from jaxgen.metrics.inception import load_fid_inception
    from jaxgen.metrics.inception_weights import unavailable_reason

    path = c.eval.inception_weights or None
    reason = unavailable_reason(path)
    if reason is not None:
        return None, "fid", reason
    return load_fid_inception(path), "fid", None


def quantise(x) -> np.ndarray:
    """Images in [-1, 1] → uint8 (the FID convention)."""
    return np.round(np.clip((np.asarray(x) + 1.0) * 0.5, 0.0, 1.0) * 255.0).astype(np.uint8)


def dequantise(u8) -> np.ndarray:
    return to_unit_range(u8, 255.0)


def frechet_to_reference(features, ref) -> float:
    """FD / FID of features `[N, F]` (N > F) against `ReferenceStats` `ref`."""
    mu, sigma = feature_statistics(features)
    return frechet_distance(mu, sigma, ref.mu, ref.sigma)


class RoundResults:
    """What the rounds produced: at most `keep` samples (uint8) and features, the streamed
    feature statistics of all samples, all logits (for IS), and the NFE of each round."""

    def __init__(self, keep: int):
        self.keep, self.samples, self.features, self.logits, self.nfe = keep, [], [], [], []
        self.stats = FeatureStats()

    def add(self, z) -> None:
        held = sum(len(s) for s in self.samples)
        self.samples.append(z["samples"][: max(0, self.keep - held)])
        self.nfe.append(float(z["nfe"]))
        if "features" in z:
            self.stats.update(z["features"])
            self.features.append(z["features"][: max(0, self.keep - held)])
            self.logits.append(z["logits"])

    def cat(self, name: str):
        parts = getattr(self, name)
        return np.concatenate(parts) if parts else None


def sample_rounds(exp, state, net, out: Path, *, seed: int, protocol: dict) -> RoundResults:
    """Draw `eval.num_samples` samples in rounds of `eval.round_size`, resuming finished rounds
    (every round reuses the run's one compiled sampler)."""
    c = exp.c
    fingerprint = hashlib.sha256(json.dumps(protocol, sort_keys=True).encode()).hexdigest()[:12]
    rdir = out / f"rounds_{fingerprint}"
    rdir.mkdir(parents=True, exist_ok=True)
    (rdir / "protocol.json").write_text(json.dumps(protocol, indent=1, default=str))
    n, size = c.eval.num_samples, c.eval.round_size
    results = RoundResults(keep=c.eval.kid_reference_max)
    for r in tqdm(range(-(-n // size)), desc="eval rounds", disable=None):
        path = rdir / f"round_{r:04d}.npz"
        if not path.exists():
            # every round draws `size` (one compiled shape), the last one keeps what it needs
            x, stats = exp.draw(state, size, seed=seed * 100_003 + r, use_ema=c.eval.ema)
            x = x[: min(size, n - r * size)]
            u8 = quantise(x)
            arrays = {"samples": u8, "nfe": np.float64(stats.get("nfe_mean", np.nan))}
            if net is not None:
                arrays["features"], arrays["logits"] = net.features_and_logits(dequantise(u8))
            atomic_write(path, lambda f, a=arrays: np.savez(f, **a))
        with np.load(path) as z:
            results.add({k: z[k] for k in z.files})
    return results


def reference(c, net, out: Path):
    """`(ReferenceStats, features subset for KID / precision-recall)` of the reference split
    (`eval.reference_split`), computed once and cached next to the evaluation."""
    split = c.eval.reference_split
    stats_path = out / f"reference_{c.data.name}_{split}_{net.name}.npz"
    feats_path = stats_path.with_suffix(".features.npy")
    if not stats_path.exists() or not feats_path.exists():
        feats = net.features(split_images(c, split))
        mu, sigma = feature_statistics(feats)
        keep = np.random.default_rng(0).permutation(len(feats))[: c.eval.kid_reference_max]
        atomic_write(feats_path, lambda f: np.save(f, feats[keep]))
        save_stats(stats_path, mu, sigma, len(feats), net.name, net.hash)
    ref = load_stats(stats_path, expect_extractor=net.name, expect_hash=net.hash)
    return ref, np.load(feats_path)


def feature_metrics(c, net, name: str, rounds: RoundResults, out: Path) -> dict:
    """FD / FID against the reference statistics, KID and precision/recall against reference
    features (on at most `eval.kid_reference_max` samples), and IS (Inception only)."""
    ref, ref_feats = reference(c, net, out)
    mu, sigma, n = rounds.stats.finalize()
    feats = rounds.cat("features")
    n_kid = min(len(feats), len(ref_feats), c.eval.kid_subset_size)
    kid, kid_std = kernel_inception_distance(
        feats, ref_feats, num_subsets=c.eval.kid_subsets, subset_size=n_kid
    )
    n_pr = min(len(feats), len(ref_feats))
    result = {
        name: frechet_distance(mu, sigma, ref.mu, ref.sigma),
        "num_samples": int(n),
        "kid": kid,
        "kid_std": kid_std,
        **precision_recall(ref_feats[:n_pr], feats[:n_pr], k=3),
        "reference": {"split": c.eval.reference_split, "num_samples": int(ref.num_samples)},
        "feature_network": {"name": net.name, "hash": net.hash},
    }
    if name == "fid":
        result["inception_score"], result["inception_score_std"] = inception_score(
            rounds.cat("logits")
        )
    return result

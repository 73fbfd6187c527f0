"""Sample-quality metrics in feature space with a preemption-safe sampling protocol.

Samples are drawn in rounds of `eval.round_size`; each round is quantised to 8 bits (the FID
convention: (x+1)/2 clipped to [0, 1], ×255, rounded), its features are computed, and the round
is written to `eval/rounds_<fingerprint>/round_XXXX.npz` before the next one starts. A resumed
`evaluate` reuses the finished rounds of the same protocol (checkpoint step, seed, sample count,
round size, EMA, sampler, feature network) and draws only the missing ones. A damaged round, or
damaged cached reference statistics, is one line naming the file: delete it (or move it aside)
and the same command recomputes it; nothing is deleted for you.

Feature networks: the project's extractors for `fashion_mnist` and `digits` ("fd_<dataset>"),
the FID Inception-v3 for the other image sets ("fid", when its weights file is present). With
`eval.check_features`, each round's samples also get features in the data set's independent check
extractor (`CHECK_EXTRACTORS`), and the FD / KID / precision-recall in it are reported under
"check" ("fd_check_<dataset>"): a second opinion for models trained with a feature-based loss.
"""

import hashlib
import json
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from experiments.image_eval import split_images
from experiments.run_files import save_json
from jaxgen.data.pipeline import to_unit_range
from jaxgen.io import atomic_savez, atomic_write, load_side_npy, load_side_npz
from jaxgen.methods.common import ConfigError
from jaxgen.metrics import (
    CHECK_EXTRACTORS,
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

# the fix for a damaged round or reference file: each is recomputed when it is missing
RECOMPUTED = "delete it (or move it aside): the same command recomputes it"


def check_eval_sizes(c) -> None:
    """One `ConfigError` naming the field when `eval.batch_size` or `eval.round_size` is not
    a positive count (0 divided the rounds, or stepped a chunk loop by nothing)."""
    for field in ("batch_size", "round_size"):
        if not c.eval[field] > 0:
            raise ConfigError(f"config.eval.{field}={c.eval[field]!r}: must be > 0")


def feature_network(c):
    """`(network, metric_name, None)` for the run's data set, or `(None, metric_name, reason)`
    when the network's weights are unavailable (then the metric reports the reason). The network
    has `.name` and `.hash` (the SHA-256 of its weights), recorded with every statistic."""
    if c.data.name in FEATURE_EXTRACTORS:
        return load_extractor(c.data.name), f"fd_{c.data.name}", None
    from jaxgen.metrics.inception_weights import load_fid_inception, unavailable_reason

    path = c.eval.inception_weights or None
    reason = unavailable_reason(path)
    if reason is not None:
        return None, "fid", reason
    return load_fid_inception(path), "fid", None


def check_network(c):
    """The data set's check extractor when `eval.check_features` is on and one is registered,
    else None."""
    if c.eval.get("check_features", False) and c.data.name in CHECK_EXTRACTORS:
        return load_extractor(c.data.name, check=True)
    return None


def unpad(c, images) -> np.ndarray:
    """Images `[N, 32, 32, C]` of a `data.pad_to_32` run cropped back to the 28×28 the loader
    padded (2 pixels a side), which is what the 28×28 feature networks take; others unchanged."""
    if c.data.pad_to_32 and images.shape[1:3] == (32, 32):
        return images[:, 2:30, 2:30]
    return images


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
    """What the rounds produced: at most `keep` samples (uint8) and features (and check
    features), the streamed feature statistics of all samples (`stats`, `check_stats`), all
    logits (for IS), and each round's sampler statistics (`<stat>_mean` / `<stat>_max` of the
    recipe's declared `sampler_stats`)."""

    def __init__(self, keep: int):
        self.keep, self.samples, self.features, self.logits, self.stat_rows = keep, [], [], [], []
        self.check_features, self.stats, self.check_stats = [], FeatureStats(), FeatureStats()

    def add(self, z) -> None:
        held = sum(len(s) for s in self.samples)
        room = max(0, self.keep - held)
        self.samples.append(z["samples"][:room])
        row = {k[len("stat_") :]: float(v) for k, v in z.items() if k.startswith("stat_")}
        if not row and "nfe" in z:  # a round written before 2026-12-07: its mean NFE only
            row = {"nfe_mean": float(z["nfe"]), "nfe_max": float(z["nfe"])}
        self.stat_rows.append(row)
        if "features" in z:
            self.stats.update(z["features"])
            self.features.append(z["features"][:room])
            self.logits.append(z["logits"])
        if "check_features" in z:
            self.check_stats.update(z["check_features"])
            self.check_features.append(z["check_features"][:room])

    def sampler_stats(self, names) -> dict:
        """`<stat>_mean` (mean over rounds) and `<stat>_max` (max over rounds) of each stat in
        `names` (the recipe's `Capabilities.sampler_stats`) that the rounds recorded."""
        out = {}
        for k in names:
            rows = [r for r in self.stat_rows if f"{k}_mean" in r]
            if rows:
                out[f"{k}_mean"] = float(np.mean([r[f"{k}_mean"] for r in rows]))
                out[f"{k}_max"] = float(max(r.get(f"{k}_max", r[f"{k}_mean"]) for r in rows))
        return out

    def cat(self, name: str):
        parts = getattr(self, name)
        return np.concatenate(parts) if parts else None


def sample_rounds(
    exp, state, net, out: Path, *, seed: int, protocol: dict, check=None
) -> RoundResults:
    """Draw `eval.num_samples` samples in rounds of `eval.round_size`, resuming finished rounds
    (every round reuses the run's one compiled sampler); `check`: also store each round's
    features in that network (`protocol` must then name it, so such rounds get their own
    fingerprint)."""
    c = exp.c
    check_eval_sizes(c)
    fingerprint = hashlib.sha256(json.dumps(protocol, sort_keys=True).encode()).hexdigest()[:12]
    rdir = out / f"rounds_{fingerprint}"
    save_json(rdir / "protocol.json", protocol)
    n, size = c.eval.num_samples, c.eval.round_size
    results = RoundResults(keep=c.eval.kid_reference_max)
    for r in tqdm(range(-(-n // size)), desc="eval rounds", disable=None):
        path = rdir / f"round_{r:04d}.npz"
        if not path.exists():
            # every round draws `size` (one compiled shape), the last one keeps what it needs
            x, stats = exp.draw(state, size, seed=seed * 100_003 + r, use_ema=c.eval.ema)
            x = x[: min(size, n - r * size)]
            u8 = quantise(x)
            arrays = {"samples": u8, **{f"stat_{k}": np.float64(v) for k, v in stats.items()}}
            images = unpad(c, dequantise(u8))  # the saved round, as the networks see it
            if net is not None:
                arrays["features"], arrays["logits"] = net.features_and_logits(images)
            if check is not None:
                arrays["check_features"] = check.features(images)
            atomic_savez(path, arrays)
        results.add(load_side_npz(path, "an evaluation round", RECOMPUTED))
    return results


def reference(c, net, out: Path):
    """`(ReferenceStats, features subset for KID / precision-recall)` of the reference split
    (`eval.reference_split`), computed once and cached next to the evaluation (both files
    again when either is missing; a damaged one is one line naming it)."""
    split = c.eval.reference_split
    classes = "".join(f"_c{k}" for k in c.data.get("classes", ()))  # a class subset's own
    limit = c.data.get("train_limit", 0)
    classes += f"_first{limit}" if limit and split == "train" else ""  # a training subset's own
    stats_path = out / f"reference_{c.data.name}{classes}_{split}_{net.name}.npz"
    feats_path = stats_path.with_suffix(".features.npy")
    if not stats_path.exists() or not feats_path.exists():
        feats = net.features(unpad(c, split_images(c, split)))
        mu, sigma = feature_statistics(feats)
        keep = np.random.default_rng(0).permutation(len(feats))[: c.eval.kid_reference_max]
        atomic_write(feats_path, lambda f: np.save(f, feats[keep]))
        save_stats(stats_path, mu, sigma, len(feats), net.name, net.hash)
    ref = load_stats(stats_path, expect_extractor=net.name, expect_hash=net.hash, fix=RECOMPUTED)
    return ref, load_side_npy(feats_path, "the reference-features file", RECOMPUTED)


def distances(c, net, stats: FeatureStats, feats, ref_dir: Path) -> dict:
    """FD (key "fd") against the reference statistics in `net`, KID and precision/recall against
    its reference features (at most `eval.kid_reference_max`), of the samples' streamed `stats`
    and kept features `feats` `[M, F]`; the reference is cached in `ref_dir`."""
    ref, ref_feats = reference(c, net, ref_dir)
    mu, sigma, n = stats.finalize()
    n_kid = min(len(feats), len(ref_feats), c.eval.kid_subset_size)
    kid, kid_std = kernel_inception_distance(
        feats, ref_feats, num_subsets=c.eval.kid_subsets, subset_size=n_kid
    )
    n_pr = min(len(feats), len(ref_feats))
    return {
        "fd": frechet_distance(mu, sigma, ref.mu, ref.sigma),
        "num_samples": int(n),
        "kid": kid,
        "kid_std": kid_std,
        **precision_recall(ref_feats[:n_pr], feats[:n_pr], k=3),
        "reference": {"split": c.eval.reference_split, "num_samples": int(ref.num_samples)},
        "feature_network": {"name": net.name, "hash": net.hash},
    }


def feature_metrics(c, net, name: str, rounds: RoundResults, ref_dir: Path, check=None) -> dict:
    """FD / FID against the reference statistics (cached in `ref_dir`), KID and precision/recall
    against reference features (on at most `eval.kid_reference_max` samples), IS (Inception
    only), and with a `check` extractor the same in its features under "check"
    ("fd_check_<dataset>")."""
    scores = distances(c, net, rounds.stats, rounds.cat("features"), ref_dir)
    result = {name: scores.pop("fd"), **scores}
    if name == "fid":
        result["inception_score"], result["inception_score_std"] = inception_score(
            rounds.cat("logits")
        )
    if check is not None:
        scores = distances(c, check, rounds.check_stats, rounds.cat("check_features"), ref_dir)
        result["check"] = {f"fd_check_{c.data.name}": scores.pop("fd"), **scores}
    return result

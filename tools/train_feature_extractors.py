"""Train the project's feature networks (small CNN classifiers) deterministically.

    python -m tools.train_feature_extractors [--which fd check perceptual]
        [--datasets fashion_mnist digits] [--overwrite]

Three kinds: "fd" (the FD-<dataset> extractors, `FEATURE_EXTRACTORS`), "check" (the independent
check extractors, `CHECK_EXTRACTORS`) and "perceptual" (`PERCEPTUAL_NETWORKS`, for perceptual
losses). Networks whose weights file exists are skipped unless `--overwrite`, so a default run
never replaces the weights whose hashes earlier results record.

For each network: Adam on softmax cross-entropy with fixed seeds (parameter init from
`jax.random.PRNGKey(seed)`, batch order from `numpy.random.default_rng(seed)`; each kind its own
seed), then the weights are written to `jaxgen/metrics/weights/<name>.msgpack`, reloaded through
the library's loader and evaluated on the full train and test splits. Prints a JSON summary and
merges it into `docs/bench/feature_extractors.json` (entries not retrained are kept; each entry
records the machine it was trained on).
"""

import argparse
import json
import time
from pathlib import Path

import jax
import numpy as np
import optax

from jaxgen.data import load_images, to_unit_range
from jaxgen.metrics import FEATURE_EXTRACTORS, load_extractor
from jaxgen.metrics.features import CHECK_EXTRACTORS, apply_in_batches, save_extractor_weights
from jaxgen.nn.perceptual import PERCEPTUAL_NETWORKS, load_perceptual
from tools.records import RESULTS, machine, record

SETTINGS = {
    "fashion_mnist": {"epochs": 4, "batch_size": 128, "learning_rate": 1e-3},
    "digits": {"epochs": 40, "batch_size": 64, "learning_rate": 1e-3},
}
KIND_SEEDS = {"fd": 0, "check": 1, "perceptual": 2}  # distinct inits and batch orders per kind
# the section of docs/bench/feature_extractors.json each kind's entries go to
SECTIONS = {"fd": "extractors", "check": "check_extractors", "perceptual": "perceptual_networks"}


def networks(kind: str, datasets) -> list[tuple[str, object]]:
    """`(key, spec)` of each network of `kind` on `datasets` (key: the registry's key)."""
    if kind == "perceptual":
        return [(k, s) for k, s in PERCEPTUAL_NETWORKS.items() if s.dataset in datasets]
    registry = FEATURE_EXTRACTORS if kind == "fd" else CHECK_EXTRACTORS
    return [(d, registry[d]) for d in datasets if d in registry]


def load_trained(kind: str, key: str, batch_size: int = 256):
    """`(hash, logits_fn)` of the saved network: `logits_fn(x [N,H,W,C]) -> [N, K]` numpy."""
    if kind == "perceptual":
        net = load_perceptual(key)
        fn = jax.jit(lambda x: net.apply(net.params, x)[1])
        return net.hash, lambda x: apply_in_batches(fn, x, batch_size)
    extractor = load_extractor(key, check=kind == "check", batch_size=batch_size)
    return extractor.hash, extractor.logits


def load_split(dataset: str, split: str) -> tuple[np.ndarray, np.ndarray]:
    """Images float32 `[N, H, W, C]` in [-1, 1] and int labels `[N]`."""
    src = load_images(dataset, split)
    return to_unit_range(src.images, src.max_value), np.asarray(src.labels, np.int32)


def make_train_step(spec, tx: optax.GradientTransformation):
    """Jitted (params, opt_state, x [B,H,W,C], y [B]) -> (params, opt_state, loss); `spec`'s
    module returns `(anything, logits [B, K])`."""
    module = spec.module()

    def loss_fn(params, x, y):
        _, logits = module.apply({"params": params}, x)
        return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()

    @jax.jit
    def step(params, opt_state, x, y):
        loss, grads = jax.value_and_grad(loss_fn)(params, x, y)
        updates, opt_state = tx.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, loss

    return step


def train(spec, x, y, *, key, epochs, batch_size, learning_rate, seed):
    """Trained params and the mean loss of each epoch; the last incomplete batch is dropped."""
    params = spec.init_params(key)
    tx = optax.adam(learning_rate)
    opt_state = tx.init(params)
    step = make_train_step(spec, tx)
    rng = np.random.default_rng(seed)
    steps = len(x) // batch_size
    epoch_losses = []
    for epoch in range(epochs):
        t0 = time.perf_counter()
        perm = rng.permutation(len(x))
        losses = []
        for i in range(steps):
            idx = perm[i * batch_size : (i + 1) * batch_size]
            params, opt_state, loss = step(params, opt_state, x[idx], y[idx])
            losses.append(loss)
        epoch_losses.append(float(np.mean(jax.device_get(losses))))
        print(
            f"  {spec.name} epoch {epoch + 1}/{epochs}: loss {epoch_losses[-1]:.4f} "
            f"({time.perf_counter() - t0:.1f} s)",
            flush=True,
        )
    return params, epoch_losses


def accuracy(logits_fn, x, y) -> float:
    return float(np.mean(logits_fn(x).argmax(axis=1) == y))


def architecture(spec) -> dict:
    arch = {"channels": list(spec.channels), "input": list(spec.image_shape)}
    if hasattr(spec, "feature_dim"):
        arch["feature_dim"] = spec.feature_dim
    return arch


def run(kind: str, key: str, spec) -> dict:
    settings = {**SETTINGS[spec.dataset], "seed": KIND_SEEDS[kind]}
    x_train, y_train = load_split(spec.dataset, "train")
    x_test, y_test = load_split(spec.dataset, "test")
    t0 = time.perf_counter()
    params, losses = train(
        spec, x_train, y_train, key=jax.random.PRNGKey(settings["seed"]), **settings
    )
    train_seconds = time.perf_counter() - t0
    path = save_extractor_weights(spec, params)
    weights_hash, logits_fn = load_trained(kind, key)
    return {
        "name": spec.name,
        "kind": kind,
        "dataset": spec.dataset,
        "weights_file": str(path.relative_to(path.parents[3])),
        "weights_bytes": path.stat().st_size,
        "sha256": weights_hash,
        "num_params": int(sum(np.size(p) for p in jax.tree.leaves(params))),
        "architecture": architecture(spec),
        **settings,
        "num_train": len(x_train),
        "num_test": len(x_test),
        "epoch_losses": losses,
        "train_seconds": train_seconds,
        "train_accuracy": accuracy(logits_fn, x_train, y_train),
        "test_accuracy": accuracy(logits_fn, x_test, y_test),
        "machine": machine(),
    }


def merged(previous: dict, new: dict) -> dict:
    """The record's sections with `new` {section: {key: entry}} over `previous`'s entries; a kept
    entry without its own "machine" gets the machine `previous` was written on."""
    out = {}
    for section in SECTIONS.values():
        entries = {
            k: {**e, "machine": e.get("machine", previous.get("machine"))}
            for k, e in previous.get(section, {}).items()
        }
        entries.update(new.get(section, {}))
        if entries:
            out[section] = entries
    return out


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--which", nargs="+", choices=list(SECTIONS), default=list(SECTIONS))
    parser.add_argument("--datasets", nargs="+", default=list(FEATURE_EXTRACTORS))
    parser.add_argument(
        "--overwrite", action="store_true", help="retrain networks whose weights file exists"
    )
    args = parser.parse_args(argv)
    new = {}
    for kind in args.which:
        for key, spec in networks(kind, args.datasets):
            if spec.weights_path.exists() and not args.overwrite:
                print(f"kept {spec.weights_path} (--overwrite retrains it)", flush=True)
                continue
            print(f"training {spec.name} ({kind}) ...", flush=True)
            new.setdefault(SECTIONS[kind], {})[key] = run(kind, key, spec)
    if not new:
        print("nothing trained")
        return
    print(json.dumps(new, indent=1))
    record_path = Path(RESULTS) / "feature_extractors.json"
    previous = json.loads(record_path.read_text()) if record_path.exists() else {}
    payload = {"command": "python -m tools.train_feature_extractors", **merged(previous, new)}
    print(f"wrote {record('feature_extractors', payload)}")


if __name__ == "__main__":
    main()

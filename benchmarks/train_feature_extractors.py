"""Train the FD-<dataset> feature extractors (small CNN classifiers) deterministically.

    python -m benchmarks.train_feature_extractors [--datasets fashion_mnist digits]

For each data set: Adam on softmax cross-entropy with fixed seeds (parameter init from
`jax.random.PRNGKey(seed)`, batch order from `numpy.random.default_rng(seed)`), then the weights
are written to `jaxgen/metrics/weights/<name>.msgpack`, reloaded through `load_extractor` and
evaluated on the full train and test splits. Prints a JSON summary and writes
`docs/bench/feature_extractors.json`.
"""

import argparse
import json
import time

import jax
import numpy as np
import optax

from benchmarks.common import record
from jaxgen.data import load_images, to_unit_range
from jaxgen.metrics import FEATURE_EXTRACTORS, load_extractor
from jaxgen.metrics.features import ExtractorSpec, save_extractor_weights

SETTINGS = {
    "fashion_mnist": {"epochs": 4, "batch_size": 128, "learning_rate": 1e-3, "seed": 0},
    "digits": {"epochs": 40, "batch_size": 64, "learning_rate": 1e-3, "seed": 0},
}


def load_split(dataset: str, split: str) -> tuple[np.ndarray, np.ndarray]:
    """Images float32 `[N, H, W, C]` in [-1, 1] and int labels `[N]`."""
    src = load_images(dataset, split)
    return to_unit_range(src.images, src.max_value), np.asarray(src.labels, np.int32)


def make_train_step(spec: ExtractorSpec, tx: optax.GradientTransformation):
    """Jitted (params, opt_state, x [B,H,W,C], y [B]) -> (params, opt_state, loss)."""
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


def train(spec: ExtractorSpec, x, y, *, key, epochs, batch_size, learning_rate, seed):
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


def accuracy(extractor, x, y) -> float:
    return float(np.mean(extractor.logits(x).argmax(axis=1) == y))


def run(dataset: str) -> dict:
    spec = FEATURE_EXTRACTORS[dataset]
    settings = SETTINGS[dataset]
    x_train, y_train = load_split(dataset, "train")
    x_test, y_test = load_split(dataset, "test")
    t0 = time.perf_counter()
    params, losses = train(
        spec, x_train, y_train, key=jax.random.PRNGKey(settings["seed"]), **settings
    )
    train_seconds = time.perf_counter() - t0
    path = save_extractor_weights(spec, params)
    extractor = load_extractor(dataset)
    return {
        "name": spec.name,
        "weights_file": str(path.relative_to(path.parents[3])),
        "weights_bytes": path.stat().st_size,
        "sha256": extractor.hash,
        "num_params": int(sum(np.size(p) for p in jax.tree.leaves(params))),
        "architecture": {
            "channels": list(spec.channels),
            "feature_dim": spec.feature_dim,
            "input": list(spec.image_shape),
        },
        **settings,
        "num_train": len(x_train),
        "num_test": len(x_test),
        "epoch_losses": losses,
        "train_seconds": train_seconds,
        "train_accuracy": accuracy(extractor, x_train, y_train),
        "test_accuracy": accuracy(extractor, x_test, y_test),
    }


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--datasets", nargs="+", default=list(FEATURE_EXTRACTORS))
    args = parser.parse_args(argv)
    results = {}
    for dataset in args.datasets:
        print(f"training {FEATURE_EXTRACTORS[dataset].name} ...", flush=True)
        results[dataset] = run(dataset)
    payload = {"command": "python -m benchmarks.train_feature_extractors", "extractors": results}
    print(json.dumps(results, indent=1))
    print(f"wrote {record('feature_extractors', payload)}")


if __name__ == "__main__":
    main()

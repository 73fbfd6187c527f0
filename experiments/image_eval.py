"""Image evaluations of a trained run (docs/methods/vapo.md §5): energy histograms, OOD AUROC,
nearest neighbours and interpolation strips. Each takes the run's `Experiment`, its restored
`state` and the output folder, writes its figure, and returns a JSON-able dict.
"""

import jax
import numpy as np

from jaxgen.data import ood_images
from jaxgen.data.pipeline import load_images, to_unit_range
from jaxgen.metrics import auroc, nearest_neighbours, score_summary
from jaxgen.metrics.features import apply_in_batches
from jaxgen.train.figures import save_histograms, save_image_rows


def split_images(c, split: str, limit: int = 0) -> np.ndarray:
    """The run's data set split (only `data.classes`, if set) as float32 `[N, H, W, C]` in
    [-1, 1], no flips (`limit` > 0: the first `limit` images)."""
    d = c.data
    src = load_images(
        d.name,
        split,
        pad_to_32=d.pad_to_32,
        data_dir=d.data_dir or None,
        classes=d.get("classes", ()),
        train_limit=d.get("train_limit", 0),
    )
    images = src.images[:limit] if limit else src.images
    return to_unit_range(images, src.max_value)


def energies(exp, state, x, *, use_ema: bool = True) -> np.ndarray:
    """The recipe's energy score of each image `[N, ...]` → `[N]`, in fixed-size jitted batches."""
    fn = exp.jitted("energy", use_ema=use_ema)
    batch = exp.c.eval.batch_size
    return apply_in_batches(lambda b: fn(state, b), np.asarray(x), batch).astype(np.float64)


def energy_histogram(exp, state, out) -> dict:
    """The recipe's energy score (its `Capabilities.energy_label`, e.g. VAPO's Φ) on train and
    test images: overlaid histograms and the train-vs-test AUROC (VAPO Fig. 4)."""
    c, limit = exp.c, exp.c.eval.histogram_max
    train, test = split_images(c, "train", limit), split_images(c, "test", limit)
    e_train, e_test = energies(exp, state, train), energies(exp, state, test)
    path = out / "energy_histogram.png"
    save_histograms(
        path, {"train": e_train, "test": e_test}, xlabel=exp.caps.energy_label, title=c.data.name
    )
    return {
        "train": score_summary(e_train),
        "test": score_summary(e_test),
        "auroc_train_vs_test": auroc(e_train, e_test),
        "figure": str(path),
    }


def ood(exp, state, out, *, seed: int) -> dict:
    """AUROC of the energy score separating the test split (positive) from each OOD set in
    `eval.ood_sets`."""
    c = exp.c
    test = split_images(c, "test", c.eval.ood_num)
    e_test = energies(exp, state, test)
    result = {"in_distribution": f"{c.data.name} test ({len(test)})"}
    for i, name in enumerate(c.eval.ood_sets):
        x = ood_images(
            name, test, len(test), jax.random.PRNGKey(seed + i), data_dir=c.data.data_dir or None
        )
        e = energies(exp, state, x)
        result[name] = {"auroc": auroc(e_test, e), "num": len(x), "energy": score_summary(e)}
    return result


def neighbours(c, samples, out) -> dict:
    """Each of the first `eval.nn_queries` samples followed by its `eval.nn_k` nearest training
    images by pixel L2 (Fig. 5); also the same distance for real test images, for scale."""
    train = split_images(c, "train")
    q = samples[: c.eval.nn_queries]
    idx, dist = nearest_neighbours(q, train, c.eval.nn_k)
    path = out / "nearest_neighbours.png"
    save_image_rows(path, np.concatenate([q[:, None], train[idx]], 1), scale=2)
    test = split_images(c, "test", len(q))
    _, test_dist = nearest_neighbours(test, train, 1)
    return {
        "mean_nn_distance": float(dist[:, 0].mean()),
        "test_mean_nn_distance": float(test_dist[:, 0].mean()),
        "figure": str(path),
    }


def interpolation(exp, state, out, *, seed: int) -> dict:
    """`eval.interp_rows` slerp strips of `eval.interp_steps` images each (Fig. 3)."""
    c = exp.c
    fn = exp.jitted("interpolate", shape=exp.shape)
    rows, nfe = [], []
    for r in range(c.eval.interp_rows):
        x, stats = fn(state, c.eval.interp_steps, key=jax.random.PRNGKey(seed + r))
        rows.append(np.asarray(x))
        nfe.append(float(np.mean(stats["nfe"])))
    path = out / "interpolation.png"
    save_image_rows(path, np.stack(rows), scale=2)
    return {"figure": str(path), "nfe_mean": float(np.mean(nfe))}


def reconstruction(exp, state, out) -> dict:
    """The recipe's reconstructions G(E(x)) of the test split (at most `eval.ood_num` images):
    summed squared error per image in [0, 1] units (the training loss's scale) and per pixel,
    and a figure of the first 16 (originals above, reconstructions below)."""
    c = exp.c
    test = split_images(c, "test", c.eval.ood_num)
    fn = exp.jitted("reconstruct", use_ema=c.eval.ema)
    x_hat = apply_in_batches(lambda b: fn(state, b), test, c.eval.batch_size)
    sq = (((np.clip(x_hat, -1, 1) - test) * 0.5) ** 2).reshape(len(test), -1)
    path = out / "reconstructions.png"
    save_image_rows(path, np.stack([test[:16], x_hat[:16]]), scale=2)
    return {
        "num": len(test),
        "sse_per_image": float(sq.sum(1).mean()),
        "mse_per_pixel": float(sq.mean()),
        "figure": str(path),
    }

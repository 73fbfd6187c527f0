"""Figures written during and after training: 2-D scatter plots, image grids, field plots."""

from pathlib import Path

import numpy as np


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def image_grid(images, ncol: int | None = None) -> np.ndarray:
    """Tile `[N, H, W, C]` images in [-1, 1] into one uint8 `[rows·H, ncol·W, C]` array."""
    x = np.clip((np.asarray(images, np.float32) + 1.0) * 127.5, 0, 255).astype(np.uint8)
    n, h, w, c = x.shape
    ncol = ncol or int(np.ceil(np.sqrt(n)))
    nrow = int(np.ceil(n / ncol))
    grid = np.zeros((nrow * (h + 1) + 1, ncol * (w + 1) + 1, c), np.uint8)
    for k in range(n):
        r, q = divmod(k, ncol)
        grid[1 + r * (h + 1) : 1 + r * (h + 1) + h, 1 + q * (w + 1) : 1 + q * (w + 1) + w] = x[k]
    return grid


def save_image_grid(path, images, ncol: int | None = None, *, scale: int = 1) -> None:
    from PIL import Image

    g = image_grid(images, ncol)
    img = Image.fromarray(g[..., 0] if g.shape[-1] == 1 else g)
    if scale > 1:
        img = img.resize((img.width * scale, img.height * scale), Image.Resampling.NEAREST)
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    img.save(path)


def save_scatter(path, samples, reference=None, *, title: str = "", bounds=None) -> None:
    """Samples `[N, 2]` (red) over reference data `[M, 2]` (grey)."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(5, 5))
    if reference is not None:
        ax.scatter(*np.asarray(reference).T, s=2, c="0.6", alpha=0.5, label="data")
    ax.scatter(*np.asarray(samples).T, s=2, c="tab:red", alpha=0.6, label="samples")
    if bounds is not None:
        ax.set_xlim(bounds), ax.set_ylim(bounds)
    ax.set_aspect("equal"), ax.legend(loc="upper right", markerscale=4), ax.set_title(title)
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120, bbox_inches="tight")
    plt.close(fig)


def save_field_plot(
    path,
    score_fn,
    field_fn,
    *,
    label: str = "score",
    data=None,
    bounds=(-3.0, 3.0),
    num: int = 25,
    title: str = "",
) -> None:
    """A 2-D scalar as filled contours with the vector field its particles follow as arrows
    (VAPO's Fig. 1: Φ and ∇Φ, `label="Φ(x)"`; a short-run EBM's −E and −∇E).

    `score_fn`, `field_fn`: `[N, 2] -> [N]` and `[N, 2] -> [N, 2]` (numpy in, numpy out);
    `data` `[M, 2]` is drawn over them.
    """
    plt = _plt()
    fine = np.linspace(*bounds, 200, dtype=np.float32)
    gx, gy = np.meshgrid(fine, fine)
    score = np.asarray(score_fn(np.stack([gx.ravel(), gy.ravel()], 1))).reshape(gx.shape)
    coarse = np.linspace(*bounds, num, dtype=np.float32)
    cx, cy = np.meshgrid(coarse, coarse)
    v = np.asarray(field_fn(np.stack([cx.ravel(), cy.ravel()], 1)))
    norm = np.linalg.norm(v, axis=1, keepdims=True) + 1e-12
    fig, ax = plt.subplots(figsize=(6, 5))
    cs = ax.contourf(gx, gy, score, levels=30, cmap="viridis")
    fig.colorbar(cs, ax=ax, label=label)
    ax.quiver(cx.ravel(), cy.ravel(), *(v / norm).T, color="white", alpha=0.8, width=0.003)
    if data is not None:
        ax.scatter(*np.asarray(data).T, s=1, c="red", alpha=0.3)
    ax.set_aspect("equal"), ax.set_title(title or f"{label} and its flow field")
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120, bbox_inches="tight")
    plt.close(fig)


def save_histograms(path, scores: dict, *, bins: int = 100, xlabel: str = "", title: str = ""):
    """Overlaid normalised histograms of named score arrays (e.g. an energy score on train vs
    test images, VAPO's Fig. 4)."""
    plt = _plt()
    arrays = {k: np.asarray(v, np.float64).ravel() for k, v in scores.items()}
    lo = min(a.min() for a in arrays.values())
    hi = max(a.max() for a in arrays.values())
    edges = np.linspace(lo, hi, bins + 1)
    fig, ax = plt.subplots(figsize=(6, 4))
    for name, a in arrays.items():
        ax.hist(a, bins=edges, density=True, alpha=0.5, label=f"{name} (n={a.size})")
    ax.set_xlabel(xlabel), ax.set_ylabel("density"), ax.legend(), ax.set_title(title)
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120, bbox_inches="tight")
    plt.close(fig)


def save_image_rows(path, rows, *, scale: int = 1) -> None:
    """Image rows `[R, K, H, W, C]` in [-1, 1] as one grid with R rows of K images
    (nearest-neighbour grids: a sample then its neighbours; interpolation strips)."""
    rows = np.asarray(rows)
    save_image_grid(path, rows.reshape(-1, *rows.shape[2:]), ncol=rows.shape[1], scale=scale)


def save_curves(path, runs: dict, keys, *, symlog=(), smooth: int = 1) -> None:
    """One panel per metric in `keys` against the step, one line per run: `runs` maps a run's
    name to its `metrics.jsonl` rows (dicts with "step"). Metrics in `symlog` get a symmetric
    log axis; `smooth` > 1 plots a running mean over that many logged points beside the raw
    (faint) line."""
    plt = _plt()
    fig, axes = plt.subplots(1, len(keys), figsize=(4 * len(keys), 3.2), squeeze=False)
    for name, rows in runs.items():
        steps = np.array([r["step"] for r in rows])
        for ax, key in zip(axes[0], keys, strict=True):
            y = np.array([r.get(key, np.nan) for r in rows], float)
            if smooth > 1 and len(y) >= smooth:
                (line,) = ax.plot(steps, y, alpha=0.25)
                mean = np.convolve(y, np.ones(smooth) / smooth, mode="valid")
                ax.plot(steps[smooth - 1 :], mean, color=line.get_color(), label=name)
            else:
                ax.plot(steps, y, label=name)
    for ax, key in zip(axes[0], keys, strict=True):
        ax.set_title(key)
        ax.set_xlabel("step")
        if key in symlog:
            ax.set_yscale("symlog")
    axes[0][0].legend()
    fig.tight_layout()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)

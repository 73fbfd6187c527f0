"""Sample grids side by side, each under its title, in one PNG (a paired comparison is read
cell by cell: the same ε in the same cell of each grid).

    python -m tools.side_by_side runs/vaebm_fmnist/eval_k0_samples.png "base (K_test = 0)" \\
        runs/vaebm_fmnist/eval_k100_samples.png "VAEBM (K_test = 100)" \\
        --out docs/figures/vaebm_fashion_mnist_k0_k100.png
"""

import argparse
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.image as mpimg  # noqa: E402
import matplotlib.pyplot as plt  # noqa: E402


def side_by_side(pairs: list[tuple[str, str]], out: str, *, title: str = "") -> None:
    """Write the images `pairs` = [(path, caption), ...] in one row to `out`."""
    images = [mpimg.imread(path) for path, _ in pairs]
    width = sum(im.shape[1] for im in images) / 100 + 0.3 * len(images)
    height = max(im.shape[0] for im in images) / 100 + (0.9 if title else 0.6)
    fig, axes = plt.subplots(1, len(images), figsize=(width, height), squeeze=False)
    for ax, im, (_, caption) in zip(axes[0], images, pairs, strict=True):
        ax.imshow(im, cmap="gray" if im.ndim == 2 else None, interpolation="nearest")
        ax.set_title(caption, fontsize=10)
        ax.axis("off")
    if title:
        fig.suptitle(title, fontsize=11)
    fig.tight_layout()
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=100)
    plt.close(fig)


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("items", nargs="+", help="PATH CAPTION [PATH CAPTION ...]")
    p.add_argument("--out", required=True)
    p.add_argument("--title", default="")
    a = p.parse_args(argv)
    if len(a.items) % 2:
        sys.exit("error: give the images as PATH CAPTION pairs (an odd number of items was given)")
    pairs = list(zip(a.items[::2], a.items[1::2], strict=True))
    missing = [path for path, _ in pairs if not Path(path).is_file()]
    if missing:
        sys.exit(f"error: no such image: {missing[0]}")
    side_by_side(pairs, a.out, title=a.title)
    print(f"written: {a.out}")


if __name__ == "__main__":
    main()

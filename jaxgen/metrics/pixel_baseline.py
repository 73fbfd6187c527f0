"""The independent-pixel baseline: a categorical distribution over the 256 levels of every pixel,
fitted by counting (with add-α smoothing), and nothing else — no pixel sees another.

It is the control every image likelihood and every sample grid here sits beside
(docs/results.md, "Baselines"): a model whose bits/dim is worse than this one has not yet learned
even the per-pixel marginals, and a sampler whose FD is worse than these samples' has not yet
learned any of the images' structure.

Bits/dim follow the usual discrete convention (docs/methods/shortrun_ebm.md eq. 1.8): for 8-bit
images, −log₂ P(k) per pixel; with uniform dequantisation this equals the continuous density's
bits/dim on [0, 256)-scaled pixels exactly, since a histogram's density is constant per bin.
"""

import numpy as np

LEVELS = 256


def fit_pixel_histogram(images, *, alpha: float = 1.0, levels: int = LEVELS) -> np.ndarray:
    """Per-pixel probabilities `[H, W, C, levels]` of `images` `[N, H, W, C]` (integers in
    0..levels−1; 256 for 8-bit images, 17 for sklearn's digits), each pixel's counts plus
    `alpha` (add-α smoothing), normalised."""
    k = np.asarray(images)
    if k.ndim != 4:
        raise ValueError(f"fit_pixel_histogram: images must be [N, H, W, C], got shape {k.shape}")
    if not np.issubdtype(k.dtype, np.integer) or k.min() < 0 or k.max() >= levels:
        raise ValueError(f"fit_pixel_histogram: images must hold integer levels in 0..{levels - 1}")
    if alpha <= 0:
        raise ValueError(f"fit_pixel_histogram: alpha must be > 0, got {alpha}")
    flat = k.reshape(len(k), -1)
    counts = np.full((flat.shape[1], levels), float(alpha))
    for j in range(flat.shape[1]):
        counts[j] += np.bincount(flat[:, j], minlength=levels)
    probs = counts / counts.sum(axis=1, keepdims=True)
    return probs.reshape(*k.shape[1:], levels)


def pixel_bits_per_dim(probs, images) -> np.ndarray:
    """Bits/dim `[N]` of 8-bit `images` `[N, H, W, C]` under the histogram `probs`
    `[H, W, C, 256]`: the mean over pixels of −log₂ P(k)."""
    k = np.asarray(images)
    if k.shape[1:] != probs.shape[:-1]:
        raise ValueError(
            f"pixel_bits_per_dim: images {k.shape[1:]} do not match the histogram's "
            f"{probs.shape[:-1]}"
        )
    p = np.take_along_axis(probs[None], k[..., None].astype(np.int64), axis=-1)[..., 0]
    return -np.log2(p).reshape(len(k), -1).mean(axis=1)


def sample_pixel_histogram(probs, num: int, *, seed: int) -> np.ndarray:
    """`num` images `[num, H, W, C]` in [-1, 1] drawn pixel by pixel from `probs`
    `[H, W, C, L]`, level k at 2k/(L − 1) − 1, as the data loaders scale pixels
    (`jaxgen.data.to_unit_range`)."""
    rng = np.random.default_rng(seed)
    levels = probs.shape[-1]
    cdf = np.cumsum(probs.reshape(-1, levels), axis=1)
    u = rng.uniform(size=(num, cdf.shape[0], 1))
    k = np.minimum((u > cdf[None]).sum(axis=-1), levels - 1)
    x = 2.0 * k / (levels - 1) - 1.0
    return x.reshape(num, *probs.shape[:-1]).astype(np.float32)

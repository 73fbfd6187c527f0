"""FIR anti-aliased 2× resampling of images `[B, H, W, C]` (NCSN++, Song et al. 2021 App. H,
after StyleGAN2's `upfirdn2d`; docs/methods/ddgan.md §5).

The filter is separable: the 1-D taps `kernel` (default [1, 3, 3, 1]) are normalised to sum 1
and applied along H, then along W, with zero padding, so the 2-D filter is the outer product of
the normalised taps (sum 1). Every function here is a pure jnp function of static shapes.

* `downsample_2d` filters, then keeps every second sample: along one axis, with [1, 3, 3, 1],
  out[i] = (x[2i−1] + 3x[2i] + 3x[2i+1] + x[2i+2]) / 8 (pad 1 each side). Output pixel i is
  centred between inputs 2i and 2i+1: no half-pixel shift.
* `upsample_2d` inserts a zero after every sample, then filters with the taps scaled by the
  factor 2 per axis (4 in 2-D), so the two phases out[2i] = (x[i−1] + 3x[i]) / 4 and
  out[2i+1] = (3x[i] + x[i+1]) / 4 each sum to 1: a constant image stays constant.
* `blur_2d` filters without resampling, with explicit padding (the first half of the fused
  "blur, then strided conv" down-sampling convolution).

Zero padding means the outermost row and column of a constant image are not constant (the
filter overhangs the border by one sample); the interior is exact.
"""

from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np

FIR_KERNEL = (1, 3, 3, 1)


def normalised_taps(kernel: Sequence[float] = FIR_KERNEL) -> np.ndarray:
    """The 1-D taps divided by their sum (float32, shape `[K]`)."""
    k = np.asarray(kernel, np.float32)
    if k.ndim != 1 or k.size < 2:
        raise ValueError(f"FIR taps must be a 1-D sequence of at least 2 values, got {kernel}")
    return k / k.sum()


def fir_kernel_2d(kernel: Sequence[float] = FIR_KERNEL) -> np.ndarray:
    """The separable 2-D filter `[K, K]`: the outer product of the normalised taps (sum 1)."""
    k = normalised_taps(kernel)
    return np.outer(k, k)


def _filter_axis(x, taps: np.ndarray, axis: int, pad: tuple[int, int], stride: int = 1):
    """Correlate `x` with `taps` along `axis` after zero padding `pad`, keeping every
    `stride`-th output (the taps are symmetric, so correlation = convolution)."""
    widths = [(0, 0)] * x.ndim
    widths[axis] = pad
    xp = jnp.pad(x, widths)
    n_out = (xp.shape[axis] - len(taps)) // stride + 1
    out = 0.0
    for j, w in enumerate(taps):
        part = jax.lax.slice_in_dim(xp, j, j + stride * (n_out - 1) + 1, stride, axis)
        out = out + float(w) * part
    return out.astype(x.dtype)


def blur_2d(x, pad: tuple[int, int], kernel: Sequence[float] = FIR_KERNEL):
    """`[B, H, W, C]` → `[B, H + sum(pad) − K + 1, W + sum(pad) − K + 1, C]`: the normalised
    separable filter over H and W after zero padding `pad` = (before, after) on both."""
    k = normalised_taps(kernel)
    return _filter_axis(_filter_axis(x, k, 1, pad), k, 2, pad)


def downsample_2d(x, kernel: Sequence[float] = FIR_KERNEL):
    """`[B, H, W, C]` → `[B, H/2, W/2, C]` (H, W even): anti-aliasing filter, then decimation."""
    _check_even(x)
    k = normalised_taps(kernel)
    p = len(k) - 2
    pad = ((p + 1) // 2, p // 2)
    return _filter_axis(_filter_axis(x, k, 1, pad, 2), k, 2, pad, 2)


def _zero_stuff(x, axis: int):
    """Insert one zero after every sample along `axis` (length n → 2n)."""
    stuffed = jnp.stack([x, jnp.zeros_like(x)], axis=axis + 1)
    shape = list(x.shape)
    shape[axis] *= 2
    return stuffed.reshape(shape)


def upsample_2d(x, kernel: Sequence[float] = FIR_KERNEL):
    """`[B, H, W, C]` → `[B, 2H, 2W, C]`: zero insertion, then the filter with gain 2 per axis
    (4 in 2-D), so constants are preserved away from the border."""
    k = 2.0 * normalised_taps(kernel)
    p = len(k) - 2
    pad = ((p + 1) // 2 + 1, p // 2)
    h = _filter_axis(_zero_stuff(x, 1), k, 1, pad)
    return _filter_axis(_zero_stuff(h, 2), k, 2, pad)


def _check_even(x) -> None:
    if x.ndim != 4 or x.shape[1] % 2 or x.shape[2] % 2:
        raise ValueError(f"FIR down-sampling takes [B, H, W, C] with even H, W; got {x.shape}")

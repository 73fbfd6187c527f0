"""Out-of-distribution image sets shaped like an in-distribution set (VAPO Table 3;
docs/methods/vapo.md §5.3).

`ood_images(name, like, num, key)` returns `[num, H, W, C]` in [-1, 1] with the example shape of
`like`:
- "interpolated": ½(x_a + x_b) for random pairs a ≠ b of `like` (the IGEBM/VAEBM convention);
- "uniform_noise": i.i.d. U[-1, 1] pixels; "gaussian_noise": N(0, 0.5²) pixels clipped to [-1, 1];
- any image data set name (e.g. "digits"): its test split, resized (bilinear, antialiased) to
  H×W, and its channels repeated or averaged to C.
"""

import jax
import jax.numpy as jnp
import numpy as np

from jaxgen.data.pipeline import IMAGE_NAMES, load_images, to_unit_range

SYNTHETIC_OOD = ("interpolated", "uniform_noise", "gaussian_noise")
OOD_NAMES = (*SYNTHETIC_OOD, *IMAGE_NAMES)


def interpolated_pairs(x, num: int, key):
    """½(x_a + x_b) for `num` random pairs of distinct rows of `x` `[N, ...]` (N ≥ 2)."""
    n = len(x)
    if n < 2:
        raise ValueError("interpolated OOD images need at least 2 images")
    k_a, k_b = jax.random.split(key)
    a = np.asarray(jax.random.randint(k_a, (num,), 0, n))
    b = (a + 1 + np.asarray(jax.random.randint(k_b, (num,), 0, n - 1))) % n  # b ≠ a
    x = np.asarray(x, np.float32)
    return 0.5 * (x[a] + x[b])


def resize_images(x, height: int, width: int, channels: int) -> np.ndarray:
    """`[N, h, w, c]` → `[N, height, width, channels]` (bilinear, antialiased; channels repeated
    from 1 or averaged to 1)."""
    x = jnp.asarray(x, jnp.float32)
    if x.shape[1:3] != (height, width):
        x = jax.image.resize(x, (x.shape[0], height, width, x.shape[3]), "linear", antialias=True)
    if x.shape[3] != channels:
        if x.shape[3] == 1:
            x = jnp.repeat(x, channels, axis=3)
        elif channels == 1:
            x = jnp.mean(x, axis=3, keepdims=True)
        else:
            raise ValueError(f"cannot map {x.shape[3]} channels to {channels}")
    return np.clip(np.asarray(x), -1.0, 1.0)


def ood_images(name: str, like, num: int, key, *, data_dir: str | None = None) -> np.ndarray:
    """`num` images of the OOD set `name`, shaped like the examples of `like` `[N, H, W, C]`."""
    like = np.asarray(like)
    if like.ndim != 4:
        raise ValueError(f"`like` must be images [N, H, W, C]; got shape {like.shape}")
    shape = (num, *like.shape[1:])
    if name == "interpolated":
        return interpolated_pairs(like, num, key)
    if name == "uniform_noise":
        return np.asarray(jax.random.uniform(key, shape, jnp.float32, -1.0, 1.0))
    if name == "gaussian_noise":
        return np.clip(np.asarray(0.5 * jax.random.normal(key, shape, jnp.float32)), -1.0, 1.0)
    if name in IMAGE_NAMES:
        src = load_images(name, "test", data_dir=data_dir)
        idx = np.asarray(jax.random.permutation(key, len(src)))[:num]
        x = to_unit_range(src.images[idx], src.max_value)
        return resize_images(x, *like.shape[1:])
    raise ValueError(f"unknown OOD set {name!r}; choose one of {list(OOD_NAMES)}")

"""Glow (Kingma & Dhariwal 2018) on images `[B, H, W, C]` (docs/methods/glow.md).

Every layer is a Flax module with the bijections' two methods (`jaxgen.flows.bijections`;
`train` is accepted and unused, so a `Chain` composes them),

    forward(x) -> (y, log|det ∂y/∂x|)      x, y: [B, H, W, C]; log-det: [B]
    inverse(y) -> (x, log|det ∂x/∂y|)

and `Glow` maps an image to ε of the same shape with ε ~ N(0, I) under the model: the factored-
out halves of the multi-scale architecture are standardised by their learned priors (ε = (z − μ)
/ σ, whose −Σ log σ is part of the log-det), so log p(x) = log N(ε; 0, I) + log|det ∂ε/∂x|
(eq. 3) and every latent is in one N(0, I) space, which exponential tilting needs (thesis §4.3.1:
Langevin dynamics runs on all of it). Sampling at temperature T draws ε ~ N(0, T² I).

    glow = Glow(levels=2, steps=16, hidden=64)
    variables = glow.init(key, x)                       # actnorm: data-dependent (x: a batch)
    eps, log_det = glow.apply(variables, x)             # forward
    x, _ = glow.apply(variables, eps, method="inverse")
"""

import flax.linen as nn
import jax.numpy as jnp
import numpy as np
import scipy.linalg

from jaxgen.flows.bijections import ActNorm, Chain

ZERO_LOG_SCALE_FACTOR = 3.0  # Glow's zero-initialised output convs: y · exp(3 · logs)


def squeeze(x):
    """`[B, H, W, C]` → `[B, H/2, W/2, 4C]`: each 2×2 patch becomes 4 channels (Glow's order)."""
    b, h, w, c = x.shape
    x = x.reshape(b, h // 2, 2, w // 2, 2, c)
    return x.transpose(0, 1, 3, 5, 2, 4).reshape(b, h // 2, w // 2, 4 * c)


def unsqueeze(x):
    """The inverse of `squeeze`: `[B, H, W, 4C]` → `[B, 2H, 2W, C]`."""
    b, h, w, c4 = x.shape
    c = c4 // 4
    x = x.reshape(b, h, w, c, 2, 2)
    return x.transpose(0, 1, 4, 2, 5, 3).reshape(b, 2 * h, 2 * w, c)


def _pixels(x) -> int:
    return x.shape[1] * x.shape[2]


class ImageActNorm(nn.Module):
    """y = (x + b) · exp(s) per channel: the bijections' `ActNorm` over every pixel's `channels`
    values, so b and s are initialised from the batch `init` sees (zero mean, unit variance per
    channel: data-dependent init); log|det| = H·W·Σ s (eq. 4)."""

    channels: int
    eps: float = 1e-6

    def setup(self):
        self.norm = ActNorm(self.channels, self.eps)

    def _per_pixel(self, method, x):
        y, log_det = method(x.reshape(-1, x.shape[-1]))
        return y.reshape(x.shape), jnp.full(x.shape[:1], log_det[0] * _pixels(x), x.dtype)

    def forward(self, x, *, train: bool = False):
        del train
        return self._per_pixel(self.norm.forward, x)

    def inverse(self, y, *, train: bool = False):
        del train
        return self._per_pixel(self.norm.inverse, y)

    def __call__(self, x):
        return self.forward(x)


def random_rotation(channels: int, seed: int) -> np.ndarray:
    """A random orthogonal `[C, C]` matrix (the QR of a Gaussian one), fixed by `seed`."""
    q, _ = np.linalg.qr(np.random.default_rng(seed).standard_normal((channels, channels)))
    return q.astype(np.float32)


class InvConv1x1(nn.Module):
    """y = x W over channels (eq. 5), W initialised to a random rotation; log|det| = H·W·log
    |det W|. With `lu`, W = P L (U + diag(sign(s) exp(log|s|))) from the rotation's LU
    decomposition: P and sign(s) are fixed (recomputed from `seed`), L (unit lower), U (strict
    upper) and log|s| are learned, and log|det| = H·W·Σ log|s| (eq. 6)."""

    channels: int
    seed: int = 0
    lu: bool = True

    def setup(self):
        w0 = random_rotation(self.channels, self.seed)
        if self.lu:
            p, lower, upper = scipy.linalg.lu(w0)
            s = np.diag(upper)
            self.perm, self.sign_s = jnp.asarray(p), jnp.asarray(np.sign(s))
            self.lower = self.param("lower", lambda _: jnp.asarray(np.tril(lower, -1)))
            self.upper = self.param("upper", lambda _: jnp.asarray(np.triu(upper, 1)))
            self.log_s = self.param("log_s", lambda _: jnp.asarray(np.log(np.abs(s))))
        else:
            self.w = self.param("w", lambda _: jnp.asarray(w0))

    def _weight_and_log_det(self):
        """(W `[C, C]`, log|det W|)."""
        c = self.channels
        if not self.lu:
            return self.w, jnp.linalg.slogdet(self.w)[1]
        lower = jnp.tril(self.lower, -1) + jnp.eye(c)
        upper = jnp.triu(self.upper, 1) + jnp.diag(self.sign_s * jnp.exp(self.log_s))
        return self.perm @ lower @ upper, jnp.sum(self.log_s)

    def _check(self, x):
        if x.shape[-1] != self.channels:
            raise ValueError(f"InvConv1x1({self.channels}) got {x.shape[-1]} channels")

    def forward(self, x, *, train: bool = False):
        del train
        self._check(x)
        w, log_det = self._weight_and_log_det()
        y = jnp.einsum("bhwc,cd->bhwd", x, w)
        return y, log_det * _pixels(x) * jnp.ones(x.shape[:1], x.dtype)

    def inverse(self, y, *, train: bool = False):
        del train
        self._check(y)
        w, log_det = self._weight_and_log_det()
        x = jnp.einsum("bhwc,cd->bhwd", y, jnp.linalg.inv(w))
        return x, -log_det * _pixels(y) * jnp.ones(y.shape[:1], y.dtype)

    def __call__(self, x):
        return self.forward(x)


class ZeroConv(nn.Module):
    """A 3×3 conv initialised to output 0, scaled by exp(3 · logs) per channel (Glow's
    Conv2dZeros): a new coupling or prior starts as the identity / the standard normal."""

    features: int

    @nn.compact
    def __call__(self, x):
        y = nn.Conv(self.features, (3, 3), padding="SAME", kernel_init=nn.initializers.zeros)(x)
        logs = self.param("logs", nn.initializers.zeros, (self.features,))
        return y * jnp.exp(logs * ZERO_LOG_SCALE_FACTOR)


class HighwayNet(nn.Module):
    """`[B, H, W, C_in]` → `[B, H, W, out]`: a 3×3 conv to `hidden` channels and ReLU, then
    `depth` highway layers h ← g ⊙ ReLU(conv(h)) + (1 − g) ⊙ h with the gate g = σ(conv(h)),
    then a `ZeroConv` (the coupling net of Nalisnick et al. 2018's Glow; thesis §4.4.2)."""

    hidden: int
    out: int
    depth: int = 3

    @nn.compact
    def __call__(self, x):
        h = nn.relu(nn.Conv(self.hidden, (3, 3), padding="SAME")(x))
        for _ in range(self.depth):
            transform = nn.relu(nn.Conv(self.hidden, (3, 3), padding="SAME")(h))
            gate = nn.sigmoid(nn.Conv(self.hidden, (3, 3), padding="SAME")(h))
            h = gate * transform + (1.0 - gate) * h
        return ZeroConv(self.out)(h)


class ConvAffineCoupling(nn.Module):
    """x = [x_a, x_b] over channels (|x_a| = ⌊C/2⌋); (t, r) = NN(x_a) interleaved, scale =
    σ(r + 2); y = [x_a, (x_b + t) · scale]; log|det| = Σ log scale (eq. 7; Glow's sigmoid scale,
    which starts near 0.88 and can never blow up)."""

    hidden: int
    depth: int = 3

    @nn.compact
    def _shift_and_log_scale(self, x_a, c_b: int):
        h = HighwayNet(self.hidden, 2 * c_b, self.depth, name="net")(x_a)
        shift, raw = h[..., 0::2], h[..., 1::2]
        return shift, nn.log_sigmoid(raw + 2.0)

    def _split(self, x):
        c = x.shape[-1]
        if c < 2:
            raise ValueError(f"an affine coupling needs >= 2 channels to split, got {c}")
        return x[..., : c // 2], x[..., c // 2 :]

    def forward(self, x, *, train: bool = False):
        del train
        x_a, x_b = self._split(x)
        shift, log_scale = self._shift_and_log_scale(x_a, x_b.shape[-1])
        y_b = (x_b + shift) * jnp.exp(log_scale)
        return jnp.concatenate([x_a, y_b], -1), log_scale.sum((1, 2, 3))

    def inverse(self, y, *, train: bool = False):
        del train
        y_a, y_b = self._split(y)
        shift, log_scale = self._shift_and_log_scale(y_a, y_b.shape[-1])
        x_b = y_b * jnp.exp(-log_scale) - shift
        return jnp.concatenate([y_a, x_b], -1), -log_scale.sum((1, 2, 3))

    def __call__(self, x):
        return self.forward(x)


def flow_step(channels: int, hidden: int, depth: int = 3, seed: int = 0, lu: bool = True):
    """One step of flow (Glow Fig. 2a) as a `Chain`: actnorm → invertible 1×1 conv → affine
    coupling."""
    return Chain(
        (
            ImageActNorm(channels),
            InvConv1x1(channels, seed, lu),
            ConvAffineCoupling(hidden, depth),
        )
    )


def level_channels(channels: int, level: int) -> int:
    """Channels inside level `level` (0-based): 4C after the first squeeze, doubling per level
    (each level squeezes ×4 and factors out half)."""
    return channels * 2 ** (level + 2)


class Glow(nn.Module):
    """The multi-scale Glow (Glow Fig. 2b) on `[B, H, W, C]` = `image_shape`: `levels` × [squeeze,
    `steps` flow steps, split off half the channels (not after the last level)]. Each factored-
    out half z has the prior N(μ, σ²) with (μ, log σ) = ZeroConv(kept half) (learned,
    conditional); the top prior is N(0, I), or a learned N(μ, σ²) per position with
    `learn_top`. `forward` returns ε (x's shape; every part standardised by its prior) and
    log|det ∂ε/∂x|, so that log p(x) = log N(ε; 0, I) + log-det."""

    image_shape: tuple[int, int, int]
    levels: int = 2
    steps: int = 16
    hidden: int = 64
    depth: int = 3
    lu: bool = True
    learn_top: bool = False

    def setup(self):
        h, w, c = self.image_shape
        if h % 2**self.levels or w % 2**self.levels:
            raise ValueError(
                f"Glow(levels={self.levels}) squeezes {self.levels} times: the image sides "
                f"must be multiples of {2**self.levels}, got {h}×{w}"
            )
        self.flow = tuple(
            tuple(
                flow_step(level_channels(c, lv), self.hidden, self.depth, 1000 * lv + k, self.lu)
                for k in range(self.steps)
            )
            for lv in range(self.levels)
        )
        self.split_priors = tuple(ZeroConv(level_channels(c, lv)) for lv in range(self.levels - 1))
        top = (h >> self.levels, w >> self.levels, level_channels(c, self.levels - 1))
        if self.learn_top:
            self.top_mean = self.param("top_mean", nn.initializers.zeros, top)
            self.top_log_std = self.param("top_log_std", nn.initializers.zeros, top)

    def _check(self, x):
        if tuple(x.shape[1:]) != tuple(self.image_shape):
            raise ValueError(f"Glow(image_shape={tuple(self.image_shape)}) got {x.shape}")

    def _top(self, dtype):
        if self.learn_top:
            return self.top_mean, self.top_log_std
        return jnp.zeros((), dtype), jnp.zeros((), dtype)

    def _split_prior(self, level: int, kept):
        h = self.split_priors[level](kept)
        return h[..., 0::2], h[..., 1::2]  # (μ, log σ)

    def forward(self, x):
        self._check(x)
        total, pieces, h = jnp.zeros(x.shape[:1], x.dtype), [], x
        for lv in range(self.levels):
            h = squeeze(h)
            for step in self.flow[lv]:
                h, log_det = step.forward(h)
                total = total + log_det
            if lv < self.levels - 1:
                h, z = jnp.split(h, 2, axis=-1)
                mean, log_std = self._split_prior(lv, h)
                pieces.append((z - mean) * jnp.exp(-log_std))
                total = total - log_std.sum((1, 2, 3))
        mean, log_std = self._top(x.dtype)
        eps = (h - mean) * jnp.exp(-log_std)
        total = total - jnp.broadcast_to(log_std, h.shape).sum((1, 2, 3))
        for lv in reversed(range(self.levels)):
            if lv < self.levels - 1:
                eps = jnp.concatenate([eps, pieces[lv]], -1)
            eps = unsqueeze(eps)
        return eps, total

    def inverse(self, eps):
        self._check(eps)
        total, pieces, e = jnp.zeros(eps.shape[:1], eps.dtype), [], eps
        for lv in range(self.levels):
            e = squeeze(e)
            if lv < self.levels - 1:
                e, piece = jnp.split(e, 2, axis=-1)
                pieces.append(piece)
        mean, log_std = self._top(eps.dtype)
        h = mean + jnp.exp(log_std) * e
        total = total + jnp.broadcast_to(log_std, e.shape).sum((1, 2, 3))
        for lv in reversed(range(self.levels)):
            if lv < self.levels - 1:
                mean, log_std = self._split_prior(lv, h)
                h = jnp.concatenate([h, mean + jnp.exp(log_std) * pieces[lv]], -1)
                total = total + log_std.sum((1, 2, 3))
            for step in reversed(self.flow[lv]):
                h, log_det = step.inverse(h)
                total = total + log_det
            h = unsqueeze(h)
        return h, total

    def __call__(self, x):
        return self.forward(x)

"""Bijections on flat vectors `[B, d]` (docs/methods/glf.md §2).

Every bijection is a Flax module with two methods,

    forward(x, *, train) -> (y, log|det ∂y/∂x|)      x, y: [B, d]; log-det: [B]
    inverse(y, *, train) -> (x, log|det ∂x/∂y|)

and `train` chooses BatchNorm's mode inside coupling subnets (batch statistics, updated in the
`batch_stats` collection, or the running averages). `jaxgen.flows.forward_and_log_det` and
`inverse_and_log_det` are the pure functions over Flax variables that callers use.
"""

from collections.abc import Sequence

import flax.linen as nn
import jax.numpy as jnp
import numpy as np

SOFT_CLAMP = 2.0  # |log scale| < 2 (the reference code's clamp)


def soft_clamp(s, clamp: float = SOFT_CLAMP):
    """clamp · (2/π) · arctan(s): a smooth map of R onto (-clamp, clamp), ≈ s near 0 (eq. 2.3)."""
    return clamp * (2.0 / jnp.pi) * jnp.arctan(s)


class CouplingSubnet(nn.Module):
    """`[B, d_in]` → `[B, out]`: (Dense(hidden) → ReLU → BatchNorm) × depth, then Dense(out)."""

    hidden: int
    out: int
    depth: int = 2
    bn_momentum: float = 0.9

    @nn.compact
    def __call__(self, h, *, train: bool):
        for _ in range(self.depth):
            h = nn.relu(nn.Dense(self.hidden)(h))
            h = nn.BatchNorm(use_running_average=not train, momentum=self.bn_momentum)(h)
        return nn.Dense(self.out)(h)


def split_sizes(dim: int) -> tuple[int, int]:
    """(⌊d/2⌋, d - ⌊d/2⌋); a `ValueError` for d < 2 (no split possible)."""
    if int(dim) < 2:
        raise ValueError(f"an affine coupling needs dimension d >= 2 to split, got d={dim}")
    return dim // 2, dim - dim // 2


class AffineCoupling(nn.Module):
    """The two-sided affine coupling of the GLF flow (docs/methods/glf.md eqs. 2.1-2.2): with
    x = [x1, x2] (|x1| = ⌊d/2⌋) and four subnets s1, t1, s2, t2,

        y1 = x1 · exp(c(s2(x2))) + t2(x2),   y2 = x2 · exp(c(s1(y1))) + t1(y1),

    log|det| = Σ c(s1(y1)) + Σ c(s2(x2)), c the soft clamp."""

    dim: int
    hidden: int = 64
    clamp: float = SOFT_CLAMP
    bn_momentum: float = 0.9

    def setup(self):
        d1, d2 = split_sizes(self.dim)
        sub = lambda out: CouplingSubnet(self.hidden, out, bn_momentum=self.bn_momentum)
        self.s1, self.t1 = sub(d2), sub(d2)  # read y1, act on the second half
        self.s2, self.t2 = sub(d1), sub(d1)  # read x2, act on the first half

    def _halves(self, v):
        d1, _ = split_sizes(self.dim)
        if v.ndim != 2 or v.shape[1] != self.dim:
            raise ValueError(f"AffineCoupling(dim={self.dim}) takes [B, {self.dim}], got {v.shape}")
        return v[:, :d1], v[:, d1:]

    def forward(self, x, *, train: bool = False):
        x1, x2 = self._halves(x)
        a2 = soft_clamp(self.s2(x2, train=train), self.clamp)
        y1 = x1 * jnp.exp(a2) + self.t2(x2, train=train)
        a1 = soft_clamp(self.s1(y1, train=train), self.clamp)
        y2 = x2 * jnp.exp(a1) + self.t1(y1, train=train)
        return jnp.concatenate([y1, y2], 1), a1.sum(1) + a2.sum(1)

    def inverse(self, y, *, train: bool = False):
        y1, y2 = self._halves(y)
        a1 = soft_clamp(self.s1(y1, train=train), self.clamp)
        x2 = (y2 - self.t1(y1, train=train)) * jnp.exp(-a1)
        a2 = soft_clamp(self.s2(x2, train=train), self.clamp)
        x1 = (y1 - self.t2(x2, train=train)) * jnp.exp(-a2)
        return jnp.concatenate([x1, x2], 1), -(a1.sum(1) + a2.sum(1))

    def __call__(self, x, *, train: bool = False):
        return self.forward(x, train=train)


def fixed_permutation(dim: int, seed: int) -> np.ndarray:
    """A random permutation of range(dim), fixed by `seed` (the block index in the GLF flow)."""
    return np.random.default_rng(seed).permutation(dim)


class Permutation(nn.Module):
    """y = x[:, π] for the fixed permutation π of `seed`; log|det| = 0. No parameters."""

    dim: int
    seed: int = 0

    def forward(self, x, *, train: bool = False):
        del train
        return x[:, fixed_permutation(self.dim, self.seed)], jnp.zeros(x.shape[:1], x.dtype)

    def inverse(self, y, *, train: bool = False):
        del train
        undo = np.argsort(fixed_permutation(self.dim, self.seed))
        return y[:, undo], jnp.zeros(y.shape[:1], y.dtype)

    def __call__(self, x, *, train: bool = False):
        return self.forward(x, train=train)


class ActNorm(nn.Module):
    """y = (x + b) · exp(s) per dimension (Glow's actnorm); log|det| = Σ s. Initialised from the
    batch `init` sees, so that y has zero mean and unit variance on it (data-dependent init)."""

    dim: int
    eps: float = 1e-6

    @nn.compact
    def forward(self, x, *, train: bool = False):
        del train
        b = self.param("bias", lambda _: -jnp.mean(x, 0))
        s = self.param("log_scale", lambda _: -jnp.log(jnp.std(x, 0) + self.eps))
        return (x + b) * jnp.exp(s), jnp.broadcast_to(s.sum(), x.shape[:1])

    def inverse(self, y, *, train: bool = False):
        del train
        b, s = self.get_variable("params", "bias"), self.get_variable("params", "log_scale")
        return y * jnp.exp(-s) - b, jnp.broadcast_to(-s.sum(), y.shape[:1])

    def __call__(self, x, *, train: bool = False):
        return self.forward(x, train=train)


class Chain(nn.Module):
    """The composition layers[-1] ∘ … ∘ layers[0]; log-determinants add (eq. 2.4)."""

    layers: Sequence[nn.Module]

    def forward(self, x, *, train: bool = False):
        total = jnp.zeros(x.shape[:1], x.dtype)
        for layer in self.layers:
            x, log_det = layer.forward(x, train=train)
            total = total + log_det
        return x, total

    def inverse(self, y, *, train: bool = False):
        total = jnp.zeros(y.shape[:1], y.dtype)
        for layer in reversed(self.layers):
            y, log_det = layer.inverse(y, train=train)
            total = total + log_det
        return y, total

    def __call__(self, x, *, train: bool = False):
        return self.forward(x, train=train)

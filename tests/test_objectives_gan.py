"""Closed-form checks of the adversarial objectives (jaxgen/objectives/gan.py;
docs/methods/ddgan.md §4; thesis §2.5 and eq. 6.16).

* R1 (Mescheder et al. 2018; eq. 6.16): ‖w‖² for a linear D, ‖Ax‖² for ℓ = ½xᵀAx, the per-example
  gradient of a nonlinear D, the gradient w.r.t. x_{t−1} only for a D on concat(x_{t−1}, x_t),
  and double backpropagation into the parameters.
* Lazy R1: γ/2·R1 on the interval's steps, 0 elsewhere, ×interval when scaled, with a traced step.
* Optimal discriminators for p_r = N(0, 1), p_g = N(1, 1.5²):
  - cross-entropy (nonsaturating / minimax D): the best quadratic logit, found by Newton's
    method on the loss integrated on a grid, is log p_r − log p_g (quadratic here, the two
    variances differ); there V(G, D*) = 2·JS − log 4 (Goodfellow et al. 2014, §4.1);
  - hinge: pointwise the optimum is ±1 by which density is larger, and the optimal loss is
    2(1 − TV(p_r, p_g)).
* WGAN-GP (Gulrajani et al. 2017) in 1-D for p_r = N(0, 1), p_g = N(1, 1): with a free
  piecewise-linear critic f, the objective E_g f − E_r f + λE(|f'(x̂)| − 1)² is, per cell of the
  critic, s·∫(F_r − F_g) + λQ(s + 1)², minimised at slope s* = −1 − ∫(F_r − F_g) / (2λQ), where
  Q is the interpolates' mass in the cell. The fitted slopes match this.
* The gradient penalty: 0 for a unit-gradient critic, (‖w‖ − 1)² for a linear one, ε ~ U[0, 1]
  per example, its parameter gradient (finite at w = 0).
* Loss values and the minimax generator's saturation; jit = no jit; bad input.

Expectations over the two Gaussians are taken on a product grid: E_{x~p_r, x'~p_g} L(ℓ(x), ℓ(x'))
= Σᵢⱼ w_r(xᵢ) w_g(xⱼ) L(ℓ(xᵢ), ℓ(xⱼ)), so each loss is used as the black box it is.
"""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.scipy.stats import norm

from jaxgen.objectives.gan import (
    GAN_LOSS_KINDS,
    d_loss_hinge,
    d_loss_nonsaturating,
    d_loss_wgan,
    g_loss_hinge,
    g_loss_minimax,
    g_loss_nonsaturating,
    g_loss_wgan,
    gan_losses,
    gradient_penalty,
    optimal_d_logit,
    r1_penalty,
    r1_term,
)

SIGMA_G = 1.5  # p_g = N(1, SIGMA_G²) for the cross-entropy and hinge checks


def _rand(shape, seed=0):
    return jnp.asarray(np.random.default_rng(seed).standard_normal(shape), jnp.float32)


def _densities(x, sigma_g=SIGMA_G):
    return norm.pdf(x, 0.0, 1.0), norm.pdf(x, 1.0, sigma_g)


def _expected_d_loss(d_loss, logits, w_r, w_g):
    """Σᵢⱼ w_r,ᵢ w_g,ⱼ d_loss(ℓᵢ, ℓⱼ) for logits `[N]` on a grid and weights `[N]` summing to 1."""
    table = d_loss(logits[:, None], logits[None, :])
    return jnp.sum(w_r[:, None] * w_g[None, :] * table)


# ---------------------------------------------------------------------------------------------
# R1


def test_r1_of_a_linear_discriminator_is_the_squared_weight_norm():
    """ℓ(x) = w·x + b on x `[B, 4, 4, 3]`: ∇ₓℓ = w for every example, so R1 = ‖w‖²."""
    x, w = _rand((5, 4, 4, 3), 0), _rand((4, 4, 3), 1)
    pen = r1_penalty(lambda x: jnp.sum(x * w, axis=(1, 2, 3)) + 0.3, x)
    assert pen.shape == (5,)
    np.testing.assert_allclose(pen, np.full(5, float(jnp.sum(w**2))), rtol=1e-6)


def test_r1_of_a_quadratic_discriminator_is_the_squared_norm_of_ax():
    """ℓ(x) = ½xᵀAx with A symmetric: ∇ₓℓ = Ax, so R1 = ‖Ax‖², different for each example."""
    m = _rand((6, 6), 2)
    a = m + m.T
    x = _rand((7, 6), 3)
    pen = r1_penalty(lambda x: 0.5 * jnp.einsum("bi,ij,bj->b", x, a, x), x)
    want = np.sum((np.asarray(x, np.float64) @ np.asarray(a, np.float64)) ** 2, axis=1)
    np.testing.assert_allclose(pen, want, rtol=1e-5)


def test_r1_gives_each_example_its_own_gradient():
    """For a nonlinear D (tanh MLP), R1 from the gradient of the logit sum equals the squared
    norm of each example's own gradient (vmap of a one-example grad): examples are independent."""
    w1, w2 = _rand((3, 16), 4), _rand((16,), 5)
    single = lambda x: jnp.tanh(x @ w1) @ w2  # [3] -> scalar
    x = _rand((9, 3), 6)
    want = jnp.sum(jax.vmap(jax.grad(single))(x) ** 2, axis=1)
    np.testing.assert_allclose(r1_penalty(jax.vmap(single), x), want, rtol=1e-6)


def test_r1_for_ddgan_takes_the_gradient_wrt_x_prev_only():
    """A DDGAN-style D on the channel concat (x_{t−1}, x_t) `[B, 4, 4, 6]`,
    ℓ = Σ a⊙x_{t−1} + Σ c⊙x_t + Σ m⊙x_{t−1}⊙x_t, has ∇_{x_{t−1}}ℓ = a + m⊙x_t and
    ∇_{x_t}ℓ = c + m⊙x_{t−1} ≠ 0. With x_t closed over, R1 = ‖a + m⊙x_t‖² exactly, and not the
    full-input norm that also counts ∇_{x_t}."""
    a, c, m = _rand((4, 4, 3), 7), _rand((4, 4, 3), 8), _rand((4, 4, 3), 9)

    def disc(inputs):  # inputs [B, 4, 4, 6] = concat(x_{t-1}, x_t) on channels
        x_prev, x_t = inputs[..., :3], inputs[..., 3:]
        return jnp.sum(a * x_prev + c * x_t + m * x_prev * x_t, axis=(1, 2, 3))

    x_prev, x_t = _rand((4, 4, 4, 3), 10), _rand((4, 4, 4, 3), 11)
    pen = r1_penalty(lambda x: disc(jnp.concatenate([x, x_t], axis=-1)), x_prev)
    want = np.sum(np.asarray(a + m * x_t, np.float64) ** 2, axis=(1, 2, 3))
    np.testing.assert_allclose(pen, want, rtol=1e-5)
    full = r1_penalty(disc, jnp.concatenate([x_prev, x_t], axis=-1))
    grad_t = np.sum(np.asarray(c + m * x_prev, np.float64) ** 2, axis=(1, 2, 3))
    np.testing.assert_allclose(full, want + grad_t, rtol=1e-5)
    assert np.all(grad_t > 1.0)  # the conditioning gradient is far from 0, and excluded


def test_r1_differentiates_into_the_discriminator_parameters():
    """Double backpropagation: for ℓ = w·x, R1 = ‖w‖², so ∂ mean R1 / ∂w = 2w."""
    x, w = _rand((4, 5), 12), _rand((5,), 13)
    grad = jax.grad(lambda w: jnp.mean(r1_penalty(lambda x: x @ w, x)))(w)
    np.testing.assert_allclose(grad, 2 * w, rtol=1e-6)


def test_lazy_r1_under_jit_with_a_traced_step():
    """interval 15, γ = 0.5 over steps 0..31 (vmapped under jit, so the step is traced): γ/2·R1
    on steps 0, 15, 30 and 0 elsewhere; ×15 with `scale_by_interval`. For ℓ = w·x the term's
    gradient in w is γ·w on those steps and 0 off them."""
    x, w = _rand((3, 4), 14), _rand((4,), 15)
    pen = r1_penalty(lambda x: x @ w, x)
    steps = jnp.arange(32)
    on = np.asarray(steps) % 15 == 0
    for scale, factor in ((False, 1.0), (True, 15.0)):
        f = lambda s, scale=scale: r1_term(
            pen, gamma=0.5, step=s, interval=15, scale_by_interval=scale
        )
        out = np.asarray(jax.jit(jax.vmap(f))(steps))
        assert out.shape == (32, 3)
        np.testing.assert_allclose(out[on], np.broadcast_to(0.25 * factor * pen, (3, 3)), rtol=1e-6)
        assert np.all(out[~on] == 0.0)

    def term(w, s):
        return jnp.mean(r1_term(r1_penalty(lambda x: x @ w, x), gamma=0.5, step=s, interval=15))

    grad = jax.jit(jax.grad(term))
    np.testing.assert_allclose(grad(w, jnp.int32(30)), 0.5 * w, rtol=1e-6)
    assert np.all(np.asarray(grad(w, jnp.int32(31))) == 0.0)
    every_step = r1_term(jnp.float32(2.0), gamma=1.0, step=7, interval=1)
    assert float(every_step) == 1.0


# ---------------------------------------------------------------------------------------------
# Optimal discriminators


@pytest.mark.parametrize("kind", ["nonsaturating", "minimax"])
def test_the_best_quadratic_logit_is_the_log_density_ratio(kind):
    """Newton's method on the grid-integrated D loss over ℓ(x) = θ₀ + θ₁x + θ₂x² converges to
    ℓ* = log p_r − log p_g = log 1.5 + 1/4.5 − (2/4.5)x − (½ − 1/4.5)x² (measured: coefficients
    within 1.5e-6, ℓ within 2.4e-6 on [−3, 4]; checked to 2e-5, float32 round-off). At ℓ*,
    E_r log D* + E_g log(1 − D*) (the latter via the minimax G loss) = −min L_D
    = 2·JS(p_r‖p_g) − log 4 (measured −1.187715 against −1.187714)."""
    d_loss, _ = gan_losses(kind)
    x = jnp.linspace(-7.0, 8.0, 601)
    p_r, p_g = _densities(x)
    w_r, w_g = p_r / jnp.sum(p_r), p_g / jnp.sum(p_g)
    feats = jnp.stack([jnp.ones_like(x), x, x**2], axis=1)
    loss = lambda theta: _expected_d_loss(d_loss, feats @ theta, w_r, w_g)

    @jax.jit
    def newton(theta):
        return theta - jnp.linalg.solve(jax.hessian(loss)(theta), jax.grad(loss)(theta))

    theta = jnp.zeros(3)
    for _ in range(25):
        theta = newton(theta)
    s2 = SIGMA_G**2
    want = np.array([math.log(SIGMA_G) + 1 / (2 * s2), -1 / s2, -0.5 + 1 / (2 * s2)])
    np.testing.assert_allclose(theta, want, atol=2e-5)
    inner = (x >= -3) & (x <= 4)
    star = optimal_d_logit(p_r, p_g)
    np.testing.assert_allclose((feats @ theta)[inner], star[inner], atol=2e-5)

    value = jnp.sum(w_r * -jax.nn.softplus(-star)) + jnp.sum(w_g * g_loss_minimax(star))
    mix = 0.5 * (p_r + p_g)
    dx = x[1] - x[0]
    js = 0.5 * jnp.sum(dx * (p_r * jnp.log(p_r / mix) + p_g * jnp.log(p_g / mix)))
    assert float(value) == pytest.approx(float(2 * js - math.log(4.0)), abs=1e-5)
    assert float(-loss(theta)) == pytest.approx(float(value), abs=1e-5)


def test_the_hinge_optimum_is_the_sign_of_the_density_difference():
    """At each x, minimise p_r·L(d, 0) + p_g·L(0, d) over d ∈ [−3, 3] (steps 0.01), which is
    p_r·relu(1 − d) + p_g·relu(1 + d) + const: the argmin is +1 where p_r > p_g and −1 where
    p_r < p_g (|log p_r/p_g| > 0.01). With D* = sign(p_r − p_g) the expected loss is
    2∫min(p_r, p_g) = 2(1 − TV)."""
    x = jnp.linspace(-4.0, 5.0, 181)
    p_r, p_g = _densities(x)
    d = jnp.linspace(-3.0, 3.0, 601)
    obj = p_r[:, None] * d_loss_hinge(d[None, :], 0.0) + p_g[:, None] * d_loss_hinge(
        0.0, d[None, :]
    )
    best = np.asarray(d[jnp.argmin(obj, axis=1)])
    ratio = np.asarray(optimal_d_logit(p_r, p_g))
    differ = np.abs(ratio) > 1e-2
    np.testing.assert_allclose(best[differ], np.sign(ratio[differ]), atol=1e-6)
    assert np.any(ratio > 0.01) and np.any(ratio < -0.01)  # both signs occur on the grid

    q_r, q_g = _densities(jnp.linspace(-8.0, 9.0, 1001))
    w_r, w_g = q_r / jnp.sum(q_r), q_g / jnp.sum(q_g)
    loss = _expected_d_loss(d_loss_hinge, jnp.sign(w_r - w_g), w_r, w_g)
    assert float(loss) == pytest.approx(float(2 * jnp.sum(jnp.minimum(w_r, w_g))), abs=1e-5)


@pytest.mark.parametrize("lam", [1.0, 10.0])
def test_wgan_gp_critic_matches_the_1d_optimum(lam):
    """p_r = N(0, 1), p_g = N(1, 1), 2·10⁵ samples each; the critic is piecewise linear on
    [−3, 4] (cells of 0.125) with free slopes s. The objective mean(ℓ_f − ℓ_r) + λ·mean GP is
    quadratic in s (all s < 0), so one Newton step from s = −1 is its minimiser. Expected per
    cell [a, b]: s* = −1 − ∫ₐᵇ(Φ(x) − Φ(x − 1))dx / (2λQ), Q = ∫₀¹ P(x̂ ∈ [a, b] | ε)dε with
    x̂ | ε ~ N(1 − ε, ε² + (1 − ε)²). On the cells in [−0.5, 1.5], s* runs from −1.51 to −1.40 at
    λ = 1 and from −1.051 to −1.040 at λ = 10 (the deviation from −1 scales as 1/λ), and the fit
    is within 0.025/λ of it (measured 0.011 and 0.0011, Monte Carlo error); at λ = 10, |f'| is
    within 0.06 of 1 there (measured 0.052), the usual "unit gradient between the modes"."""
    n, k, width = 200_000, 56, 0.125
    keys = jax.random.split(jax.random.key(0), 3)
    x_real = jax.random.normal(keys[0], (n, 1))
    x_fake = 1.0 + jax.random.normal(keys[1], (n, 1))
    knots = -3.0 + width * jnp.arange(k + 1)

    def critic(s):
        values = jnp.concatenate([jnp.zeros(1), jnp.cumsum(s * width)])
        return lambda x: jnp.interp(x[:, 0], knots, values)

    def objective(s):
        c = critic(s)
        gp = gradient_penalty(c, x_real, x_fake, keys[2])
        return jnp.mean(d_loss_wgan(c(x_real), c(x_fake))) + lam * jnp.mean(gp)

    s0 = -jnp.ones(k)
    grad, hess = jax.jit(jax.grad(objective))(s0), jax.jit(jax.hessian(objective))(s0)
    s_fit = np.asarray(s0 - jnp.linalg.solve(hess, grad))

    lo, hi = np.asarray(knots[:-1], np.float64), np.asarray(knots[1:], np.float64)
    from scipy.special import ndtr
    from scipy.stats import norm as snorm

    anti = lambda x: x * ndtr(x) + snorm.pdf(x)  # ∫Φ
    area = anti(hi) - anti(hi - 1) - anti(lo) + anti(lo - 1)
    eps = (np.arange(4000) + 0.5) / 4000
    mean, sd = (1 - eps)[:, None], np.sqrt(eps**2 + (1 - eps) ** 2)[:, None]
    mass = np.mean(ndtr((hi - mean) / sd) - ndtr((lo - mean) / sd), axis=0)
    s_star = -1.0 - area / (2 * lam * mass)
    mid = (lo + hi) / 2
    inner = (mid > -0.5) & (mid < 1.5)
    np.testing.assert_allclose(s_fit[inner], s_star[inner], atol=0.025 / lam)
    if lam == 10.0:
        assert np.all(np.abs(np.abs(s_fit[inner]) - 1.0) < 0.06)


# ---------------------------------------------------------------------------------------------
# Gradient penalty


def test_gradient_penalty_of_linear_critics():
    """ℓ = x·u with ‖u‖ = 1 has penalty 0; ℓ = x·w + b has (‖w‖ − 1)², for every interpolate."""
    x_real, x_fake, w = _rand((6, 4, 3), 16), _rand((6, 4, 3), 17), _rand((4, 3), 18)
    u = w / jnp.linalg.norm(w)
    key = jax.random.key(1)
    unit = gradient_penalty(lambda x: jnp.sum(x * u, axis=(1, 2)), x_real, x_fake, key)
    np.testing.assert_allclose(unit, np.zeros(6), atol=1e-10)
    lin = gradient_penalty(lambda x: jnp.sum(x * w, axis=(1, 2)) - 2.0, x_real, x_fake, key)
    want = (float(jnp.linalg.norm(w)) - 1.0) ** 2
    np.testing.assert_allclose(lin, np.full(6, want), rtol=1e-5)


def test_gradient_penalty_interpolates_uniformly_per_example():
    """ℓ = ½‖x‖² with x_real = 0 and a unit x_fake = v: x̂ = (1 − ε)v, penalty = ε². Over 40,000
    examples √penalty lies in [0, 1] with mean 0.5 and variance 1/12 (measured 0.4992 and 0.0832;
    Monte Carlo sd 0.0014 and 0.0004)."""
    v = _rand((40_000, 2, 2), 19)
    v = v / jnp.linalg.norm(v.reshape(-1, 4), axis=1)[:, None, None]
    pen = gradient_penalty(
        lambda x: 0.5 * jnp.sum(x**2, (1, 2)), jnp.zeros_like(v), v, jax.random.key(2)
    )
    e = np.sqrt(np.asarray(pen, np.float64))
    assert e.min() >= 0.0 and e.max() <= 1.0 + 1e-6
    assert e.mean() == pytest.approx(0.5, abs=0.006)
    assert e.var() == pytest.approx(1 / 12, abs=0.0015)


def test_gradient_penalty_parameter_gradient():
    """For ℓ = x·w: ∂(‖w‖ − 1)²/∂w = 2(‖w‖ − 1)w/‖w‖, and 0 (not NaN) at w = 0."""
    x_real, x_fake, w = _rand((4, 3), 20), _rand((4, 3), 21), _rand((3,), 22)
    f = lambda w: jnp.mean(gradient_penalty(lambda x: x @ w, x_real, x_fake, jax.random.key(3)))
    nw = jnp.linalg.norm(w)
    np.testing.assert_allclose(jax.grad(f)(w), 2 * (nw - 1) * w / nw, rtol=1e-5)
    assert float(f(jnp.zeros(3))) == 1.0
    np.testing.assert_array_equal(jax.grad(f)(jnp.zeros(3)), np.zeros(3))


# ---------------------------------------------------------------------------------------------
# Loss values, jit, errors


def test_loss_values_and_minimax_saturation():
    """Each loss at ℓ_r = 0.5, ℓ_f = −2: cross-entropy log(1 + e^{−0.5}) + log(1 + e^{−2}),
    hinge 0.5 + 0, WGAN −2.5; hinge and WGAN G: 2. The minimax G loss is log(1 − σ(ℓ)); its
    ℓ-gradient at
    ℓ = −10 is −σ(−10) ≈ −4.5e-5 (saturated) while the non-saturating one is ≈ −1; at ℓ = 0 both
    are −½."""
    r, f = jnp.float32(0.5), jnp.float32(-2.0)
    assert float(d_loss_nonsaturating(r, f)) == pytest.approx(
        math.log1p(math.exp(-0.5)) + math.log1p(math.exp(-2.0)), rel=1e-6
    )
    assert float(d_loss_hinge(r, f)) == pytest.approx(0.5)
    assert float(d_loss_wgan(r, f)) == pytest.approx(-2.5)
    assert float(g_loss_hinge(f)) == float(g_loss_wgan(f)) == 2.0
    ell = jnp.linspace(-6.0, 6.0, 13)
    np.testing.assert_allclose(g_loss_minimax(ell), jnp.log1p(-jax.nn.sigmoid(ell)), rtol=1e-5)
    slope_mm, slope_ns = jax.grad(g_loss_minimax), jax.grad(g_loss_nonsaturating)
    assert float(slope_mm(-10.0)) == pytest.approx(-1 / (1 + math.exp(10.0)), rel=1e-4)
    assert float(slope_ns(-10.0)) == pytest.approx(-1.0, abs=1e-4)
    assert float(slope_mm(0.0)) == float(slope_ns(0.0)) == -0.5


@pytest.mark.parametrize("kind", GAN_LOSS_KINDS)
def test_losses_jit_equals_no_jit(kind):
    """Each pair on logits N(0, 5²) with ±40 added: the same per-example values `[B]`, finite."""
    d_loss, g_loss = gan_losses(kind)
    r = jnp.concatenate([5 * _rand((30,), 23), jnp.array([40.0, -40.0])])
    f = jnp.concatenate([5 * _rand((30,), 24), jnp.array([-40.0, 40.0])])
    d_val, g_val = d_loss(r, f), g_loss(f)
    assert d_val.shape == g_val.shape == (32,)
    assert np.all(np.isfinite(d_val)) and np.all(np.isfinite(g_val))
    np.testing.assert_allclose(jax.jit(d_loss)(r, f), d_val, rtol=1e-6)
    np.testing.assert_allclose(jax.jit(g_loss)(f), g_val, rtol=1e-6)


def test_bad_input_errors():
    with pytest.raises(ValueError, match="nonsaturating, minimax, hinge, wgan"):
        gan_losses("lsgan")
    with pytest.raises(ValueError, match="interval must be"):
        r1_term(jnp.ones(2), gamma=1.0, step=0, interval=0)
    with pytest.raises(ValueError, match="gamma must be"):
        r1_term(jnp.ones(2), gamma=-0.1, step=0, interval=10)
    x = jnp.ones((3, 2))
    with pytest.raises(ValueError, match="share a shape"):
        gradient_penalty(lambda x: x[:, 0], x, jnp.ones((4, 2)), jax.random.key(0))
    with pytest.raises(ValueError, match=r"must return logits \[B\]"):
        r1_penalty(lambda x: x[:, :1], x)

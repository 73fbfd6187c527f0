"""Closed-form checks of the short-run EBM objectives (docs/methods/shortrun_ebm.md §1,
eqs. 1.1, 1.13, 1.14) with the quadratic energy E_θ(x) = ½θ‖x‖², whose θ-gradients are known.

* Contrastive loss (eq. 1.1): d/dθ = ½(mean‖x⁺‖² − mean‖x⁻‖²); the negatives' own dependence
  on θ (an unrolled `langevin(differentiable=True)`) is cut when the generator term is off.
* Generator term (eqs. 1.13-1.14): x⁻ = (1 − sθ)^K x₀ from the noise-free sampler; the energy's
  parameters are frozen, so only the sampling path carries gradient. The closed form is checked
  against a float64 finite difference of a hand-written loss.
* Energy-magnitude regulariser α(mean E⁺² + mean E⁻²): value and gradient.
* The metrics returned.

Tolerances: float32 round-off (≈1.2e-7 relative per operation; the K-step products below
accumulate ≈ K of them, hence rtol 1e-5).
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxgen.objectives.ebm import (
    contrastive_loss,
    energy_magnitude,
    generator_loss,
    shortrun_ebm_loss,
)
from jaxgen.samplers.langevin import langevin

THETA, STEP, K = 0.8, 0.1, 6


def _rand(shape, seed=0):
    return jnp.asarray(np.random.default_rng(seed).standard_normal(shape), jnp.float32)


def energy(theta, x):
    """E_θ(x) = ½θ‖x‖² per example: `[B, D] -> [B]`; ∇ₓE = θx, ∂E/∂θ = ½‖x‖²."""
    return 0.5 * theta * jnp.sum(x**2, axis=1)


X_POS = _rand((6, 3), 1)  # B⁺ = 6
X0 = _rand((4, 3), 2)  # B⁻ = 4 (different from B⁺)


def _sq(x):
    """Per-example ‖x‖² in float64."""
    return np.sum(np.asarray(x, np.float64) ** 2, axis=1)


def _negatives(theta, differentiable=True):
    """K noise-free Langevin steps from X0 under E_θ: x⁻ = (1 − sθ)^K x₀, a function of θ."""
    x_neg, _ = langevin(
        lambda x: energy(theta, x),
        X0,
        jax.random.key(0),
        num_steps=K,
        step=STEP,
        differentiable=differentiable,
    )
    return x_neg


def test_negatives_closed_form():
    np.testing.assert_allclose(_negatives(THETA), (1 - STEP * THETA) ** K * X0, rtol=1e-5)


def test_contrastive_loss_value():
    e_pos, e_neg = jnp.array([1.0, 2.0, 6.0]), jnp.array([-1.0, 0.5])
    np.testing.assert_allclose(contrastive_loss(e_pos, e_neg), 3.0 - (-0.25), rtol=1e-7)


@pytest.mark.parametrize("theta_dependent_negatives", [False, True])
def test_contrastive_gradient_cuts_negatives(theta_dependent_negatives):
    """loss = ½θ(mean‖x⁺‖² − mean‖x⁻‖²) with x⁻ held fixed: d/dθ = ½(mean‖x⁺‖² − mean‖x⁻‖²)."""
    x_neg_value = _negatives(THETA)

    def loss(theta):
        x_neg = _negatives(theta) if theta_dependent_negatives else x_neg_value
        return shortrun_ebm_loss(energy, theta, X_POS, x_neg, use_generator_loss=False)[0]

    q_pos, q_neg = _sq(X_POS).mean(), _sq(x_neg_value).mean()
    np.testing.assert_allclose(loss(THETA), 0.5 * THETA * (q_pos - q_neg), rtol=1e-5)
    np.testing.assert_allclose(jax.grad(loss)(THETA), 0.5 * (q_pos - q_neg), rtol=1e-5)
    # the negatives really depend on θ in the second case (d x⁻/dθ ≠ 0): it is the loss that cuts
    if theta_dependent_negatives:
        assert abs(float(jax.grad(lambda t: jnp.sum(_negatives(t) ** 2))(THETA))) > 1e-2


def _hand_loss(theta, theta_frozen, q_pos, q_neg_frozen, q0):
    """Eq. 1.14 with the generator term, written out for E_θ = ½θ‖x‖² in float64:
    ½θ q⁺ − ½θ q⁻ [x⁻ frozen at its value] + ½θ_frozen (1 − sθ)^{2K} q₀."""
    gen = 0.5 * theta_frozen * (1 - STEP * theta) ** (2 * K) * q0
    return 0.5 * theta * q_pos - 0.5 * theta * q_neg_frozen + gen


def test_generator_term_gradient():
    """E_{sg(θ)}(x⁻(θ)) = ½θ₀(1 − sθ)^{2K} mean‖x₀‖², so at θ = θ₀ the full gradient is
    ½(mean‖x⁺‖² − mean‖x⁻‖²) + ½θ·2K(1 − sθ)^{2K−1}(−s) mean‖x₀‖²."""

    def loss(theta):
        return shortrun_ebm_loss(energy, theta, X_POS, _negatives(theta), use_generator_loss=True)[
            0
        ]

    q_pos, q0 = _sq(X_POS).mean(), _sq(X0).mean()
    c = 1 - STEP * THETA
    q_neg = c ** (2 * K) * q0
    want = 0.5 * (q_pos - q_neg) + 0.5 * THETA * 2 * K * c ** (2 * K - 1) * (-STEP) * q0

    # the closed form vs a central finite difference of the hand-written loss (float64;
    # truncation error h²/6·|L'''| < 1e-10, round-off ≈ 1e-16/h ≈ 1e-11)
    h = 1e-5
    fd = (
        _hand_loss(THETA + h, THETA, q_pos, q_neg, q0)
        - _hand_loss(THETA - h, THETA, q_pos, q_neg, q0)
    ) / (2 * h)
    np.testing.assert_allclose(want, fd, rtol=1e-8)

    np.testing.assert_allclose(loss(THETA), _hand_loss(THETA, THETA, q_pos, q_neg, q0), rtol=1e-5)
    np.testing.assert_allclose(jax.grad(loss)(THETA), want, rtol=1e-5)


def test_generator_loss_freezes_energy_parameters():
    """With negatives that do not depend on θ, E_{sg(θ)}(x⁻) has zero θ-gradient."""
    x_neg = _negatives(THETA, differentiable=False)
    val, grad = jax.value_and_grad(lambda t: generator_loss(energy, t, x_neg))(THETA)
    np.testing.assert_allclose(val, 0.5 * THETA * _sq(x_neg).mean(), rtol=1e-6)
    assert grad == 0.0
    # ... and through the sampling path only: d/dθ ½θ₀(1 − sθ)^{2K} q₀
    gen_grad = jax.grad(lambda t: generator_loss(energy, t, _negatives(t)))(THETA)
    c = 1 - STEP * THETA
    want = 0.5 * THETA * 2 * K * c ** (2 * K - 1) * (-STEP) * _sq(X0).mean()
    np.testing.assert_allclose(gen_grad, want, rtol=1e-5)


def test_energy_magnitude_value_and_gradient():
    """α(mean E⁺² + mean E⁻²) with E = ½θq: value ¼αθ²(mean q⁺² + mean q⁻²), d/dθ
    ½αθ(mean q⁺² + mean q⁻²). In the full loss (generator off) x⁻'s θ-dependence is cut."""
    alpha = 0.3
    x_neg_value = _negatives(THETA)
    q_pos, q_neg = _sq(X_POS), _sq(x_neg_value)
    m2 = (q_pos**2).mean() + (q_neg**2).mean()

    def mag(theta):
        return energy_magnitude(energy(theta, X_POS), energy(theta, x_neg_value), alpha)

    np.testing.assert_allclose(mag(THETA), 0.25 * alpha * THETA**2 * m2, rtol=1e-5)
    np.testing.assert_allclose(jax.grad(mag)(THETA), 0.5 * alpha * THETA * m2, rtol=1e-5)

    def loss(theta):
        return shortrun_ebm_loss(
            energy, theta, X_POS, _negatives(theta), use_generator_loss=False, alpha=alpha
        )[0]

    contrastive = 0.5 * THETA * (q_pos.mean() - q_neg.mean())
    np.testing.assert_allclose(loss(THETA), contrastive + 0.25 * alpha * THETA**2 * m2, rtol=1e-5)
    want = 0.5 * (q_pos.mean() - q_neg.mean()) + 0.5 * alpha * THETA * m2
    np.testing.assert_allclose(jax.grad(loss)(THETA), want, rtol=1e-5)


@pytest.mark.parametrize("use_generator_loss", [False, True])
def test_metrics(use_generator_loss):
    x_neg = _negatives(THETA)
    loss, metrics = jax.jit(
        lambda t: shortrun_ebm_loss(
            energy, t, X_POS, x_neg, use_generator_loss=use_generator_loss, alpha=0.1
        )
    )(THETA)
    want_keys = {"e_pos", "e_neg", "contrastive", "loss"}
    assert set(metrics) == (want_keys | {"generator"} if use_generator_loss else want_keys)
    e_pos, e_neg = 0.5 * THETA * _sq(X_POS).mean(), 0.5 * THETA * _sq(x_neg).mean()
    np.testing.assert_allclose(metrics["e_pos"], e_pos, rtol=1e-5)
    np.testing.assert_allclose(metrics["e_neg"], e_neg, rtol=1e-5)
    np.testing.assert_allclose(metrics["contrastive"], e_pos - e_neg, rtol=1e-5)
    np.testing.assert_array_equal(metrics["loss"], loss)
    mag = (
        0.1 * ((0.5 * THETA * _sq(X_POS)) ** 2).mean()
        + 0.1 * ((0.5 * THETA * _sq(x_neg)) ** 2).mean()
    )
    want = e_pos - e_neg + mag + (e_neg if use_generator_loss else 0.0)
    np.testing.assert_allclose(loss, want, rtol=1e-5)
    if use_generator_loss:
        np.testing.assert_allclose(metrics["generator"], e_neg, rtol=1e-5)

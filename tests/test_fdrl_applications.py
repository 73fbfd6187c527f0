"""FDRL's applications as library calls (jaxgen/methods/fdrl_applications.py): guided sampling
through a classifier passed in as a function is the class-conditional flow of eqs. 12-13
(docs/methods/fdrl.md §4.1), logits and log-probabilities guide alike, translation flows the
given images; each bad input is one clear error."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxgen.methods import fdrl
from jaxgen.methods.fdrl_applications import guided_sample, translate

W = jnp.array([[2.0, -2.0, 0.0], [0.0, 1.0, -1.0]])  # a fixed linear 3-class classifier on 2-D


def _state():
    cfg = fdrl.Config(method=fdrl.Method(flow_steps=3, step_size=0.5))
    x = np.random.default_rng(0).normal(size=(8, 2)).astype(np.float32)
    return cfg, fdrl.init(cfg, {"x": x}, key=jax.random.PRNGKey(0))


def test_guided_sample_is_the_class_conditional_flow_and_logits_guide_like_log_probs():
    cfg, state = _state()
    key = jax.random.PRNGKey(3)
    logits = lambda x: x @ W
    got, stats = guided_sample(state, 16, 1, logits, config=cfg, key=key, shape=(2,), phi=0.5)
    log_probs = lambda x: jax.nn.log_softmax(x @ W, axis=-1)
    same, _ = guided_sample(state, 16, 1, log_probs, config=cfg, key=key, shape=(2,), phi=0.5)
    k_prior, k_flow = jax.random.split(key)
    x0 = fdrl.sample_prior(state, 16, (2,), k_prior, config=cfg)
    guide = (lambda x: log_probs(x)[:, 1], 3, 0.5)
    want, _ = fdrl.flow_from(state, x0, config=cfg, key=k_flow, guide=guide)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(same, want, rtol=1e-5, atol=1e-6)
    unguided, _ = fdrl.flow_from(state, x0, config=cfg, key=k_flow)
    assert not np.allclose(got, unguided) and stats["nfe"].shape == (16,)


@pytest.mark.parametrize(
    "classifier, label, match",
    [
        (
            lambda x: x[:, 0],
            0,
            r"returned \(4,\) for 4 images of shape \(2,\); it must return \[B, N\]",
        ),
        (lambda x: (x @ W)[None], 0, r"returned \(1, 4, 3\)"),
        (lambda x: (x @ W)[:2], 0, r"returned \(2, 3\) for 4 images"),
        (lambda x: x @ W, 3, r"label=3, the classifier has classes 0..2"),
        (lambda x: x @ W, -1, r"label=-1"),
    ],
)
def test_guided_sample_bad_classifier_is_one_line(classifier, label, match):
    cfg, state = _state()
    with pytest.raises(ValueError, match=match) as e:
        guided_sample(
            state, 4, label, classifier, config=cfg, key=jax.random.PRNGKey(0), shape=(2,)
        )
    assert "\n" not in str(e.value)


def test_guided_sample_and_translate_check_phi_and_shapes():
    cfg, state = _state()
    key = jax.random.PRNGKey(0)
    with pytest.raises(ValueError, match="phi must be > 0"):
        guided_sample(state, 4, 0, lambda x: x @ W, config=cfg, key=key, shape=(2,), phi=0.0)
    with pytest.raises(ValueError, match=r"shape=\(3,\), the state was initialised for"):
        translate(state, np.zeros((4, 3), np.float32), config=cfg, key=key)
    source = np.random.default_rng(1).normal(size=(5, 2)).astype(np.float32)
    x, _ = translate(state, source, config=cfg, key=key, num_steps=2)
    want, _ = fdrl.flow_from(state, jnp.asarray(source), config=cfg, key=key, num_steps=2)
    np.testing.assert_array_equal(x, want)

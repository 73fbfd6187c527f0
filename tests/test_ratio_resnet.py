"""FDRL's ratio ResNets (jaxgen/nn/ratio_resnet.py): parameter counts against the paper's
Table 3 networks, spectral norm's state and its effect, the attention block's identity start, and
per-example outputs (the flow's drift is ∇ₓ of the summed output)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxgen.nn.ratio_resnet import RATIO_NET_CONFIGS, RatioResNet, SelfAttention, downsampling

# spec table (FDRL §4.2, "my count"), and our layer-by-layer count of the CIFAR-10 net below
SPEC_COUNTS = {
    "cifar10": (32, 3, 11.37e6),
    "celeba64": (64, 3, 5.13e6),
    "lsun_church128": (128, 3, 5.44e6),
    "cat2dog64": (64, 3, 1.55e6),
}


def _count(tree) -> int:
    return int(sum(np.prod(a.shape) for a in jax.tree.leaves(tree)))


def _shapes(name, side, channels, sn=False):
    net = RatioResNet(**RATIO_NET_CONFIGS[name], spectral_norm=sn)
    x = jnp.zeros((1, side, side, channels))
    return jax.eval_shape(lambda: net.init(jax.random.PRNGKey(0), x))


@pytest.mark.parametrize("name", sorted(SPEC_COUNTS))
def test_parameter_counts_match_the_spec_table(name):
    side, channels, spec = SPEC_COUNTS[name]
    variables = _shapes(name, side, channels)
    assert abs(_count(variables["params"]) / spec - 1) < 0.02
    assert side // downsampling(RATIO_NET_CONFIGS[name]["blocks"]) == 4  # Table 3: 4² last


def test_fashion_mnist_cpu_count_layer_by_layer():
    """Ours (docs/methods/fdrl.md §3.1): stem 3·3·1·16; RBDown32 from 16 (3×3 16→32, 3×3
    32→32, 1×1 shortcut); 2 × RBDown64; head 64 + 1; 32² → 4²."""
    c3 = lambda i, o: 9 * i * o
    down = lambda i, o: c3(i, o) + c3(o, o) + i * o
    expected = c3(1, 16) + down(16, 32) + down(32, 64) + down(64, 64) + 64 + 1
    assert _count(_shapes("fashion_mnist", 32, 1)["params"]) == expected == 149_713
    assert 32 // downsampling(RATIO_NET_CONFIGS["fashion_mnist"]["blocks"]) == 4


def test_cifar10_count_layer_by_layer():
    """stem 3·3·3·128; 3 × RB128 (two 3×3 128→128); RBDown256 from 128 (3×3 128→256, 3×3
    256→256, 1×1 shortcut); 2 RBDown256 from 256; 6 × RB256; head 256 + 1."""
    c3 = lambda i, o: 9 * i * o
    expected = (
        c3(3, 128)
        + 3 * 2 * c3(128, 128)
        + (c3(128, 256) + c3(256, 256) + 128 * 256)
        + 2 * (2 * c3(256, 256) + 256 * 256)
        + 6 * 2 * c3(256, 256)
        + 257
    )
    assert _count(_shapes("cifar10", 32, 3)["params"]) == expected == 11_374_209


def test_spectral_norm_state_is_not_a_parameter_and_normalises_each_conv():
    """With SN the parameters are the same as without; the power-iteration vectors sit in
    `batch_stats`; after training-mode calls each conv's σ estimate matches the largest
    singular value of its kernel reshaped to [k·k·C_in, C_out]."""
    cfg = RATIO_NET_CONFIGS["fashion_mnist"]
    x = jax.random.normal(jax.random.PRNGKey(0), (2, 16, 16, 1))
    plain = RatioResNet(**cfg).init(jax.random.PRNGKey(1), x)
    net = RatioResNet(**cfg, spectral_norm=True)
    variables = net.init(jax.random.PRNGKey(1), x)
    assert "batch_stats" not in plain and _count(variables["batch_stats"]) > 0
    assert jax.tree.structure(plain["params"]) == jax.tree.structure(variables["params"])
    step = jax.jit(lambda v: net.apply(v, x, update_stats=True, mutable=["batch_stats"])[1])
    for _ in range(30):
        variables = {**variables, **step(variables)}
    stem = variables["params"]["stem"]["Conv_0"]["kernel"]
    sigma = variables["batch_stats"]["stem"]["SpectralNorm_0"]["Conv_0/kernel/sigma"]
    top = np.linalg.svd(np.asarray(stem).reshape(-1, stem.shape[-1]), compute_uv=False)[0]
    assert float(sigma) == pytest.approx(float(top), rel=1e-3)
    out, _ = net.apply(variables, x, update_stats=False, mutable=["batch_stats"])
    assert out.shape == (2,) and np.all(np.isfinite(out))


def test_attention_starts_as_the_identity():
    x = jax.random.normal(jax.random.PRNGKey(0), (2, 8, 8, 16))
    attn = SelfAttention()
    variables = attn.init(jax.random.PRNGKey(1), x, False)
    np.testing.assert_array_equal(attn.apply(variables, x, False), x)
    bumped = jax.tree_util.tree_map(lambda a: a, variables)
    bumped["params"]["gamma"] = jnp.ones(())
    assert not np.allclose(attn.apply(bumped, x, False), x)


def test_outputs_are_per_example():
    """∇ₓ of the summed output, row i, equals the gradient of example i alone (jit and not)."""
    net = RatioResNet(stem=4, blocks=((4, 1), (8, 2), "attn", (8, 2)))
    x = jax.random.normal(jax.random.PRNGKey(0), (3, 8, 8, 1))
    variables = net.init(jax.random.PRNGKey(1), x)
    variables["params"]["attn_2"]["gamma"] = jnp.ones(())  # let attention act
    summed = jax.grad(lambda z: net.apply(variables, z).sum())
    alone = jax.jit(jax.vmap(jax.grad(lambda z: net.apply(variables, z[None])[0])))(x)
    np.testing.assert_allclose(jax.jit(summed)(x), alone, rtol=1e-4, atol=1e-6)
    with jax.disable_jit():
        np.testing.assert_allclose(summed(x), alone, rtol=1e-4, atol=1e-6)

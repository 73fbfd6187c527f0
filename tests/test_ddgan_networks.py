"""DDGAN's networks (docs/methods/ddgan.md §5): FIR resampling, the NCSN++ generator with AdaGN,
the time-conditional discriminator with minibatch stddev, the 2-D MLPs, and the parameter
counts of the paper configurations from abstract init.

Small networks only run forward; full-size ones are traced with `jax.eval_shape`. Parameters
for the forward tests are random draws on the host into the shapes of the init (a jitted Flax
init of even a tiny U-Net compiles for tens of seconds on XLA:CPU); the init's own values are
checked on single blocks.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxgen.nn.ddgan_discriminator import (
    TimeConditionalDiscriminator,
    abstract_discriminator_params,
    minibatch_stddev,
)
from jaxgen.nn.ddgan_mlp import MLPDiscriminator, MLPGenerator
from jaxgen.nn.fir import downsample_2d, fir_kernel_2d, upsample_2d
from jaxgen.nn.ncsnpp import (
    GENERATOR_CONFIGS,
    AdaGroupNorm,
    AttnBlock,
    NCSNppGenerator,
    ResBlock,
    abstract_generator_params,
    count_params,
)

KEY = jax.random.PRNGKey(0)
TINY_G = dict(
    nf=8, ch_mult=(1, 2), num_res_blocks=1, attn_resolutions=(4,), latent_dim=4, z_emb_dim=8
)
TINY_D = dict(ngf=4, mults=(2, 4), down=(False, True), t_emb_dim=16)


def _random_params(model, *args, seed=0):
    """Variables of `model` for `args`: shapes from abstract init, values drawn on the host
    (kernels N(0, 1/fan_in), everything else N(0, 0.1²)), so every branch is active."""
    shapes = jax.eval_shape(lambda: model.init(KEY, *args))
    rng = np.random.default_rng(seed)

    def draw(path, s):
        fan_in = int(np.prod(s.shape[:-1])) if path[-1].key == "kernel" else 100
        return jnp.asarray(rng.standard_normal(s.shape) / np.sqrt(fan_in), s.dtype)

    return jax.tree_util.tree_map_with_path(draw, shapes)


def _images(shape, seed):
    return jax.random.uniform(jax.random.PRNGKey(seed), shape, minval=-1.0, maxval=1.0)


# ---------------------------------------------------------------- FIR resampling


def test_fir_keeps_a_constant_image_constant_away_from_the_zero_padded_border():
    x = jnp.full((2, 8, 8, 3), 0.7)
    up, down = upsample_2d(x), downsample_2d(x)
    assert up.shape == (2, 16, 16, 3) and down.shape == (2, 4, 4, 3)
    np.testing.assert_allclose(up[:, 1:-1, 1:-1], 0.7, rtol=1e-6)
    np.testing.assert_allclose(down[:, 1:-1, 1:-1], 0.7, rtol=1e-6)
    # the border rows and columns are 3/4: per axis 2·(1/4) of the 16 samples is lost
    assert float(up.sum()) == pytest.approx(4 * float(x.sum()) * (1 - 1 / 32) ** 2, rel=1e-5)


def test_fir_down_of_up_is_close_to_the_identity_on_a_smooth_image():
    i = np.arange(32) + 0.5
    x = np.sin(2 * np.pi * i / 32)[:, None] * np.cos(2 * np.pi * i / 32)[None, :]
    x = jnp.asarray(x[None, :, :, None], jnp.float32)
    y = downsample_2d(upsample_2d(x))
    assert float(jnp.abs(y - x)[:, 2:-2, 2:-2].max()) < 0.02  # no shift, low-pass gain ≈ 1


def test_fir_downsampling_of_an_impulse_is_the_normalised_kernel_at_its_offsets():
    k2 = fir_kernel_2d()
    np.testing.assert_allclose(k2, np.outer([1, 3, 3, 1], [1, 3, 3, 1]) / 64)
    for p, q in [(4, 6), (5, 6), (4, 7), (5, 7)]:  # every parity of the impulse position
        x = np.zeros((1, 12, 12, 1), np.float32)
        x[0, p, q, 0] = 1.0
        out = np.asarray(downsample_2d(jnp.asarray(x)))[0, :, :, 0]
        expected = np.zeros((6, 6))
        for i in range(6):  # out[i] = Σ_j k[j] x[2i + j − 1] along each axis
            for j in range(6):
                a, b = p - 2 * i + 1, q - 2 * j + 1
                if 0 <= a < 4 and 0 <= b < 4:
                    expected[i, j] = k2[a, b]
        np.testing.assert_allclose(out, expected, atol=1e-7)


# ---------------------------------------------------------------- generator


@pytest.fixture(scope="module")
def tiny_generator():
    model = NCSNppGenerator(**TINY_G)
    x, t, z = _images((2, 8, 8, 3), 1), jnp.array([0, 1]), jax.random.normal(KEY, (2, 4))
    params = _random_params(model, x, t, z)
    apply = jax.jit(lambda x, t, z: model.apply(params, x, t, z, mutable="intermediates"))
    return model, params, apply, (x, t, z)


def _styles(state):
    return jax.tree.leaves(state["intermediates"])


def test_generator_output_shape_range_and_dependence_on_t_and_z(tiny_generator):
    model, _, apply, (x, t, z) = tiny_generator
    y, state = apply(x, t, z)
    assert y.shape == x.shape and bool(jnp.isfinite(y).all())
    assert float(jnp.abs(y).max()) <= 1.0  # tanh
    y_far, _ = apply(10 * x, t, z)
    assert float(jnp.abs(y_far).max()) <= 1.0
    y_t, state_t = apply(x, jnp.array([3, 2]), z)
    y_z, state_z = apply(x, t, -z)
    assert float(jnp.abs(y_t - y).max()) > 1e-3  # t matters
    assert float(jnp.abs(y_z - y).max()) > 1e-3  # z matters
    # the mapping net and AdaGN do not see t: every AdaGN's (σ, μ) is the same for another t
    # two AdaGNs in each of the 10 residual blocks: down 1 + 1↓ + 1, middle 2, up 2 + 1↑ + 2
    assert len(_styles(state)) == 2 * 10
    for a, b, c in zip(_styles(state), _styles(state_t), _styles(state_z), strict=True):
        np.testing.assert_array_equal(a, b)
        assert float(jnp.abs(a - c).max()) > 1e-4  # ... but they do depend on z


def test_the_no_latent_ablation_has_no_mapping_net_and_ignores_z():
    model = NCSNppGenerator(**dict(TINY_G, latent_dim=0))
    x, t = _images((2, 8, 8, 3), 2), jnp.array([0, 3])
    params = _random_params(model, x, t, None)
    names = {p.key for path, _ in jax.tree_util.tree_flatten_with_path(params)[0] for p in path}
    assert "mapping" not in names and "style" not in names
    apply = jax.jit(lambda x, t, z: model.apply(params, x, t, z))
    y = apply(x, t, None)
    np.testing.assert_array_equal(y, apply(x, t, jax.random.normal(KEY, (2, 4))))
    assert float(jnp.abs(apply(x, jnp.array([2, 1]), None) - y).max()) > 1e-3


def test_generator_jit_equals_no_jit(tiny_generator):
    model, params, apply, (x, t, z) = tiny_generator
    np.testing.assert_allclose(
        apply(x, t, z)[0], model.apply(params, x, t, z), rtol=1e-5, atol=1e-6
    )


def test_init_values_adagn_starts_at_identity_and_residual_branches_near_zero():
    h, w = _images((2, 4, 4, 8), 3), jax.random.normal(KEY, (2, 5))
    norm = AdaGroupNorm()
    v = norm.init(KEY, h, w)
    np.testing.assert_array_equal(v["params"]["style"]["bias"], np.r_[np.ones(8), np.zeros(8)])
    no_style = jax.tree.map(jnp.zeros_like, v)  # kernel 0: σ = 1, μ = 0 exactly
    no_style["params"]["style"]["bias"] = v["params"]["style"]["bias"]
    out = norm.apply(no_style, h, w)
    groups = np.asarray(h).reshape(2, 4, 4, 2, 4)  # min(8 // 4, 32) = 2 groups of 4 channels
    ref = (groups - groups.mean((1, 2, 4), keepdims=True)) / np.sqrt(
        groups.var((1, 2, 4), keepdims=True) + 1e-6
    )
    np.testing.assert_allclose(out, ref.reshape(h.shape), atol=1e-5)
    block, temb = ResBlock(8, resample="down"), jnp.ones((2, 12))
    vb = block.init(KEY, h, temb, w)
    assert float(jnp.abs(vb["params"]["conv_1"]["kernel"]).max()) < 1e-4
    skip = vb["params"]["skip"]["kernel"][0, 0]
    np.testing.assert_allclose(
        block.apply(vb, h, temb, w), downsample_2d(h) @ skip / np.sqrt(2), atol=1e-4
    )
    attn = AttnBlock()
    np.testing.assert_allclose(attn.apply(attn.init(KEY, h), h), h / np.sqrt(2), atol=1e-4)


def test_the_input_pyramid_variants_differ_only_by_their_resampling_convs():
    counts = {}
    for mode in ("residual", "input_skip", "none"):
        fields = dict(GENERATOR_CONFIGS["cifar10"], progressive_input=mode)
        counts[mode] = count_params(abstract_generator_params(fields, 32)[1])
    # three down-samplings: fused 3×3 convs 3→128, 128→256, 256→256 vs 1×1 convs 3→C
    residual = (9 * 3 * 128 + 128) + (9 * 128 * 256 + 256) + (9 * 256 * 256 + 256)
    input_skip = (3 * 128 + 128) + 2 * (3 * 256 + 256)
    assert counts["residual"] - counts["none"] == residual
    assert counts["input_skip"] - counts["none"] == input_skip


@pytest.mark.parametrize("shape", [(28, 28, 1), (30, 30, 1), (32, 16, 1)])
def test_an_image_size_the_unet_cannot_take_is_one_value_error(shape):
    model = NCSNppGenerator(**GENERATOR_CONFIGS["fashion_mnist"])
    x, t, z = jnp.zeros((1, *shape)), jnp.zeros((1,), jnp.int32), jnp.zeros((1, 32))
    with pytest.raises(ValueError) as e:
        jax.eval_shape(lambda: model.init(KEY, x, t, z))
    msg = str(e.value)
    assert "\n" not in msg and str(shape) in msg
    assert "ch_mult=(1, 2, 2)" in msg and "(16,)" in msg


# ---------------------------------------------------------------- discriminator


@pytest.fixture(scope="module")
def tiny_discriminator():
    model = TimeConditionalDiscriminator(**TINY_D)
    x_prev, x_t, t = _images((8, 8, 8, 3), 4), _images((8, 8, 8, 3), 5), jnp.arange(8) % 4
    params = _random_params(model, x_prev, x_t, t)
    return model, params, jax.jit(lambda *a: model.apply(params, *a)), (x_prev, x_t, t)


def test_discriminator_logit_depends_on_x_prev_x_t_and_t(tiny_discriminator):
    _, _, apply, (x_prev, x_t, t) = tiny_discriminator
    logits = apply(x_prev, x_t, t)
    assert logits.shape == (8,) and bool(jnp.isfinite(logits).all())
    for changed in [(-x_prev, x_t, t), (x_prev, -x_t, t), (x_prev, x_t, (t + 1) % 4)]:
        diff = jnp.abs(apply(*changed) - logits)
        assert float(diff.min()) > 1e-6, diff


def test_minibatch_std_couples_exactly_the_examples_of_a_group(tiny_discriminator):
    _, _, apply, (x_prev, x_t, t) = tiny_discriminator
    logits = apply(x_prev, x_t, t)
    changed = apply(x_prev.at[2].multiply(3.0), x_t, t)  # B = 8, G = 4: {0,2,4,6}, {1,3,5,7}
    diff = np.abs(np.asarray(changed - logits))
    assert (diff[[0, 4, 6]] > 1e-6).all(), diff
    np.testing.assert_array_equal(diff[1::2], 0.0)


def test_minibatch_stddev_groups_strided_and_handles_a_batch_not_divisible_by_four():
    h = np.asarray(_images((6, 2, 2, 4), 6))
    out = np.asarray(minibatch_stddev(jnp.asarray(h)))  # B = 6 → groups of 3: {0,2,4}, {1,3,5}
    assert out.shape == (6, 2, 2, 5)
    np.testing.assert_array_equal(out[..., :4], h)
    for group in ([0, 2, 4], [1, 3, 5]):
        ref = np.sqrt(h[group].var(axis=0) + 1e-8).mean()
        np.testing.assert_allclose(out[group, ..., 4], ref, rtol=1e-5)
    assert np.asarray(minibatch_stddev(jnp.asarray(h[:5])))[..., 4].max() == pytest.approx(1e-4)


def test_discriminator_jit_equals_no_jit(tiny_discriminator):
    model, params, apply, args = tiny_discriminator
    np.testing.assert_allclose(apply(*args), model.apply(params, *args), rtol=1e-5, atol=1e-5)


# ---------------------------------------------------------------- 2-D MLPs


def test_mlp_generator_and_discriminator_shapes_and_conditioning():
    x_t, x_prev, z = (jax.random.normal(jax.random.PRNGKey(i), (5, 2)) for i in range(3))
    t = jnp.array([0, 1, 2, 3, 0])
    for t_emb_dim, n_t in [(16, 16), (0, 1)]:
        gen, disc = MLPGenerator(t_emb_dim=t_emb_dim), MLPDiscriminator(t_emb_dim=t_emb_dim)
        pg, pd = _random_params(gen, x_t, t, z), _random_params(disc, x_prev, x_t, t)
        hidden = 2 * (512 * 512 + 512)
        assert count_params(pg) == (2 + n_t + 2) * 512 + 512 + hidden + 512 * 2 + 2
        assert count_params(pd) == (2 + 2 + n_t) * 512 + 512 + hidden + 512 + 1
        x0 = gen.apply(pg, x_t, t, z)
        logits = disc.apply(pd, x_prev, x_t, t)
        assert x0.shape == (5, 2) and logits.shape == (5,)
        assert float(jnp.abs(gen.apply(pg, x_t, (t + 1) % 4, z) - x0).min()) > 0
        assert float(jnp.abs(gen.apply(pg, x_t, t, -z) - x0).min()) > 0
        assert float(jnp.abs(disc.apply(pd, x_prev, x_t, (t + 1) % 4) - logits).min()) > 0
        assert float(jnp.abs(disc.apply(pd, -x_prev, x_t, t) - logits).min()) > 0


# ---------------------------------------------------------------- parameter counts

# from abstract init (not stated by the spec or the thesis); each is re-derived layer by layer
# below, so a change of the architecture shows up as a mismatch of two counts
GENERATOR_COUNTS = {
    "cifar10": 48_432_515,
    "cifar10_thesis": 56_927_363,
    "celebahq256": 39_726_979,
    "lsun_church256": 39_726_979,
    "fashion_mnist": 632_657,
}
DISCRIMINATOR_COUNTS = {
    "cifar10": 12_741_633,
    "cifar10_thesis": 17_854_977,
    "celebahq256": 27_737_217,
    "lsun_church256": 27_737_217,
    "fashion_mnist": 989_185,
}
SIZES = dict(cifar10=32, cifar10_thesis=32, celebahq256=256, lsun_church256=256, fashion_mnist=32)


def _hand_count_generator(nf, ch_mult, latent_dim, z_emb_dim, n_mlp, out_channels=3, size=32):
    """NCSN++ with AdaGN, counted from the layer list (2 blocks per level, attention at 16)."""
    e, dw = 4 * nf, z_emb_dim
    lin = lambda i, o: i * o + o
    norm = lambda c: lin(dw, 2 * c)  # AdaGN: Dense(d_w → 2C); the GN itself has no affine
    res = lambda i, o, skip: (
        norm(i) + 9 * i * o + o + lin(e, o) + norm(o) + 9 * o * o + o + (lin(i, o) if skip else 0)
    )
    attn = lambda c: 2 * c + 4 * lin(c, c)
    n = lin(nf, e) + lin(e, e) + lin(latent_dim, dw) + n_mlp * lin(dw, dw)
    n += 9 * out_channels * nf + nf  # conv_in
    skips, c, res_now, pyramid = [nf], nf, size, out_channels
    for level, mult in enumerate(ch_mult):
        for _ in range(2):
            n += res(c, nf * mult, c != nf * mult) + (attn(nf * mult) if res_now == 16 else 0)
            c = nf * mult
            skips.append(c)
        if level < len(ch_mult) - 1:
            n += res(c, c, True) + 9 * pyramid * c + c  # down block + pyramid conv
            pyramid = c  # the stream continues from the down block's output
            skips.append(c)
            res_now //= 2
    n += 2 * res(c, c, False) + attn(c)  # middle
    for level in reversed(range(len(ch_mult))):
        for _ in range(3):
            i, c = c + skips.pop(), nf * ch_mult[level]
            n += res(i, c, True)
        n += attn(c) if res_now == 16 else 0
        if level > 0:
            n += res(c, c, True)
            res_now *= 2
    return n + 2 * c + 9 * c * out_channels + out_channels  # GroupNorm, conv_out


def _hand_count_small_discriminator(ngf=64, channels=3, e=256):
    """The CIFAR-10 D of the code, layer by layer (spec §2.7)."""
    lin = lambda i, o: i * o + o
    block = lambda i, o: (9 * i * o + o) + lin(e, o) + (9 * o * o + o) + i * o  # skip: no bias
    n = lin(e, e) + lin(e, e)  # t-embedding MLP
    n += lin(2 * channels, 2 * ngf)  # 1×1 stem on concat(x_prev, x_t)
    n += block(2 * ngf, 2 * ngf) + block(2 * ngf, 4 * ngf)
    n += block(4 * ngf, 8 * ngf) + block(8 * ngf, 8 * ngf)
    n += 9 * (8 * ngf + 1) * 8 * ngf + 8 * ngf  # 3×3 conv after minibatch std
    return n + lin(8 * ngf, 1)


@pytest.mark.parametrize("name", sorted(GENERATOR_COUNTS))
def test_generator_parameter_counts_from_abstract_init(name):
    _, params = abstract_generator_params(name, SIZES[name])
    assert all(isinstance(p, jax.ShapeDtypeStruct) for p in jax.tree.leaves(params))
    n = count_params(params)
    print(f"G {name}: {n:,} parameters")
    assert n == GENERATOR_COUNTS[name]
    fields = GENERATOR_CONFIGS[name]
    assert n == _hand_count_generator(**fields, size=SIZES[name])


@pytest.mark.parametrize("name", sorted(DISCRIMINATOR_COUNTS))
def test_discriminator_parameter_counts_from_abstract_init(name):
    channels = 1 if name == "fashion_mnist" else 3
    _, params = abstract_discriminator_params(name, SIZES[name], channels)
    n = count_params(params)
    print(f"D {name}: {n:,} parameters")
    assert n == DISCRIMINATOR_COUNTS[name]
    if name == "cifar10":
        assert n == _hand_count_small_discriminator()

"""FID Inception-v3 (jaxgen.metrics.inception[_weights]): shapes, weight conversion, pinning, and
parity with pytorch-fid (or, without torchvision, with the minimal torch re-implementation below).

The parity tests need torch (`pip install torch==2.13.0`); they are skipped without it. The
reference helpers at the bottom are also used by `benchmarks/inception_parity.py`.
"""

import hashlib
import re
import sys
import types

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxgen.metrics import inception, inception_weights
from jaxgen.metrics.inception import FIDInception, preprocess
from jaxgen.metrics.inception_weights import (
    InceptionWeightsError,
    InceptionWeightsHashError,
    InceptionWeightsInvalid,
    InceptionWeightsUnavailable,
    load_variables,
    read_npz,
    save_npz,
    state_dict_shapes,
    state_dict_to_variables,
    unavailable_reason,
    variables_to_state_dict,
)

PARITY_SHAPE = (2, 80, 60, 3)  # 2 small images: exercises the resize to 299x299


def random_state_dict(seed: int = 0) -> dict[str, np.ndarray]:
    """A pytorch-fid-shaped state dict with O(1)-preserving random values (He-scaled convs,
    non-trivial BatchNorm statistics), so pool3 features stay O(1) through the 94 conv layers."""
    rng = np.random.default_rng(seed)
    out = {}
    for key, shape in sorted(state_dict_shapes().items()):
        if key.endswith("conv.weight"):
            v = rng.standard_normal(shape) * np.sqrt(2.0 / np.prod(shape[1:]))
        elif key.endswith(("bn.weight", "running_var")):
            v = rng.uniform(0.7, 1.3, shape)
        elif key == "fc.weight":
            v = rng.standard_normal(shape) / np.sqrt(shape[1])
        else:  # bn.bias, running_mean, fc.bias
            v = 0.1 * rng.standard_normal(shape)
        out[key] = v.astype(np.float32)
    return out


def random_images(shape=PARITY_SHAPE, seed: int = 1) -> np.ndarray:
    return np.random.default_rng(seed).uniform(-1, 1, shape).astype(np.float32)


# ----------------------------------------------------------------------------- always run


@pytest.fixture(scope="module")
def flax_outputs():
    """Flax outputs on PARITY_SHAPE images with `random_state_dict()` weights (compiled once)."""
    net = FIDInception(state_dict_to_variables(random_state_dict()))
    return net.features_and_logits(random_images())


def test_forward_shapes_random_weights(flax_outputs):
    feats, logits = flax_outputs
    assert feats.shape == (2, 2048) and logits.shape == (2, 1008)
    assert feats.dtype == np.float32 and np.isfinite(feats).all() and np.isfinite(logits).all()


def test_preprocess_grey_scaling_and_identity():
    grey = random_images((2, 12, 10, 1))
    x = preprocess(grey)
    assert x.shape == (2, 299, 299, 3)
    np.testing.assert_array_equal(x, preprocess(np.repeat(grey, 3, axis=-1)))
    assert -1.0 <= float(x.min()) and float(x.max()) <= 1.0
    full = random_images((1, 299, 299, 3))
    np.testing.assert_allclose(preprocess(full), full, atol=1e-6)  # no resize at 299
    with pytest.raises(ValueError, match="expected images"):
        preprocess(np.zeros((1, 8, 8, 2)))


def test_batching_pads_and_trims(monkeypatch):
    calls = []

    def fake(variables, batch):
        calls.append(batch.shape)
        m = jnp.mean(batch, axis=(1, 2, 3))
        return jnp.tile(m[:, None], (1, 2048)), jnp.tile(m[:, None], (1, 1008))

    monkeypatch.setattr(inception, "_forward_jit", fake)
    images = random_images((7, 4, 4, 3))
    feats, logits = FIDInception({}, batch_size=3).features_and_logits(images)
    assert calls == [(3, 4, 4, 3)] * 3 and feats.shape == (7, 2048) and logits.shape == (7, 1008)
    np.testing.assert_allclose(feats[:, 0], images.mean(axis=(1, 2, 3)), rtol=1e-6)


def test_state_dict_keys_match_pytorch_fid_layout():
    shapes = state_dict_shapes()
    assert len(shapes) == 94 * 5 + 2  # 94 BasicConv2d (conv + 4 BN tensors) + fc
    assert shapes["Conv2d_1a_3x3.conv.weight"] == (32, 3, 3, 3)
    assert shapes["Mixed_6b.branch7x7_2.conv.weight"] == (128, 128, 1, 7)
    assert shapes["Mixed_7c.branch_pool.bn.running_var"] == (192,)
    assert shapes["fc.weight"] == (1008, 2048) and shapes["fc.bias"] == (1008,)


def test_converter_round_trip(tmp_path):
    sd = random_state_dict()
    variables = state_dict_to_variables({**sd, "fc.num_batches_tracked": np.array(0)})
    kernel = variables["params"]["Mixed_6b"]["branch7x7_2"]["conv"]["kernel"]
    assert kernel.shape == (1, 7, 128, 128)
    np.testing.assert_array_equal(
        kernel[0, 3], sd["Mixed_6b.branch7x7_2.conv.weight"][:, :, 0, 3].T
    )
    assert variables["batch_stats"]["Conv2d_1a_3x3"]["bn"]["var"].shape == (32,)
    back = variables_to_state_dict(variables)
    assert back.keys() == sd.keys()
    for k in sd:
        np.testing.assert_array_equal(back[k], sd[k])
    fake_source = "ab" * 32
    path = tmp_path / "w.npz"
    save_npz(sd, path, source_sha256=fake_source)
    loaded = load_variables(path, expected_sha256=fake_source)
    jax.tree.map(np.testing.assert_array_equal, loaded, variables)
    assert read_npz(path, expected_sha256=None).keys() == sd.keys()


def test_converter_rejects_wrong_keys_and_shapes():
    sd = random_state_dict()
    with pytest.raises(ValueError, match="missing.*Conv2d_1a_3x3.bn.bias"):
        state_dict_to_variables({k: v for k, v in sd.items() if k != "Conv2d_1a_3x3.bn.bias"})
    with pytest.raises(ValueError, match="fc.bias: shape"):
        state_dict_to_variables({**sd, "fc.bias": np.zeros(1000, np.float32)})


def test_missing_file_message(tmp_path, monkeypatch):
    missing = tmp_path / "nope.npz"
    expected = f"unavailable: no Inception weights at {missing}"
    assert unavailable_reason(missing) == expected
    with pytest.raises(InceptionWeightsUnavailable) as e:
        inception_weights.load_fid_inception(missing)
    assert str(e.value) == expected
    monkeypatch.setenv("JAXGEN_INCEPTION_WEIGHTS", str(missing))
    assert unavailable_reason() == expected
    monkeypatch.delenv("JAXGEN_INCEPTION_WEIGHTS")
    assert unavailable_reason() == (
        "unavailable: no Inception weights at $JAXGEN_INCEPTION_WEIGHTS (unset)"
    )


def test_wrong_hash_errors(tmp_path):
    fake = tmp_path / "pt_inception-2015-12-05-6726825d.pth"
    fake.write_bytes(b"not the weights")
    actual = hashlib.sha256(b"not the weights").hexdigest()
    with pytest.raises(InceptionWeightsHashError) as e:
        load_variables(fake)  # checked before torch is needed
    msg = str(e.value)
    assert inception_weights.PT_FID_WEIGHTS_SHA256 in msg and actual in msg and "\n" not in msg
    npz = tmp_path / "w.npz"
    save_npz(random_state_dict(), npz, source_sha256=actual)
    with pytest.raises(InceptionWeightsHashError, match=f"source SHA-256 .*{actual}.* does not"):
        load_variables(npz)
    with np.load(npz) as data:  # tampered content -> content digest mismatch
        arrays = dict(data)
    arrays["fc.bias"] = arrays["fc.bias"] + 1
    np.savez(npz, **arrays)
    with pytest.raises(InceptionWeightsHashError, match="corrupt"):
        load_variables(npz, expected_sha256=actual)


def _small_npz_with_digests(path) -> None:
    """An .npz with both digest entries (of weights other than the pinned ones) and one array."""
    digests = {"__source_sha256__": "ab" * 32, "__content_sha256__": "cd" * 32}
    np.savez(path, x=np.zeros(3, np.float32), **{k: np.array(v) for k, v in digests.items()})


def _truncated(path) -> None:
    _small_npz_with_digests(path)
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


# one bad weights file of each kind: (file name, how to make it, what the message must say)
BAD_WEIGHTS = {
    "random_npz": (  # np.load would try to unpickle it
        "random.npz",
        lambda p: p.write_bytes(np.random.default_rng(0).bytes(4096)),
        "not an Inception weights file: .*not an .npz archive",
    ),
    "npz_wrong_arrays": (
        "other.npz",
        lambda p: np.savez(p, a=np.zeros(3), b=np.ones((2, 2))),
        "not an Inception weights file: .*no __source_sha256__",
    ),
    "npz_pickled_arrays": (
        "objects.npz",
        lambda p: np.savez(p, obj=np.array([{"x": 1}], dtype=object)),
        "not an Inception weights file: .*allow_pickle",
    ),
    "npz_of_other_weights": (
        "keys.npz",
        _small_npz_with_digests,
        "recorded source SHA-256 of .* does not match the pinned",
    ),
    "truncated_npz": (
        "truncated.npz",
        _truncated,
        "not an Inception weights file: .*unreadable .npz",
    ),
    "wrong_hash_pth": (
        "other.pth",
        lambda p: p.write_bytes(b"not the weights"),
        "SHA-256 of .*other.pth .* does not match the pinned",
    ),
    "directory": ("folder.npz", lambda p: p.mkdir(), "not an Inception weights file: .*directory"),
}


def make_bad_weights(tmp_path, kind: str):
    """`(path, regex of the message)` of a bad weights file of `kind` (see `BAD_WEIGHTS`)."""
    name, make, says = BAD_WEIGHTS[kind]
    path = tmp_path / name
    make(path)
    return path, says


@pytest.mark.parametrize("kind", sorted(BAD_WEIGHTS))
def test_bad_weights_file_is_one_value_error_line(tmp_path, kind):
    path, says = make_bad_weights(tmp_path, kind)
    with pytest.raises(InceptionWeightsError) as e:
        inception_weights.load_fid_inception(path)
    msg = str(e.value)
    assert isinstance(e.value, ValueError) and "\n" not in msg and str(path) in msg
    assert e.value.__cause__ is None, "one line: no chained numpy / zipfile traceback"
    assert re.search(says, msg), msg


def test_npz_with_pinned_digests_but_wrong_arrays(tmp_path):
    sd = random_state_dict()
    del sd["fc.bias"]
    path = tmp_path / "partial.npz"
    save_npz(sd, path, source_sha256=inception_weights.PT_FID_WEIGHTS_SHA256)
    with pytest.raises(InceptionWeightsInvalid, match="not an Inception weights file: .*fc.bias"):
        load_variables(path)


def test_unreadable_pth_is_one_line(tmp_path, monkeypatch):
    path = tmp_path / "w.pth"
    path.write_bytes(b"x")

    def denied(p):
        raise PermissionError(13, "Permission denied", str(p))

    monkeypatch.setattr(inception_weights, "sha256_file", denied)
    with pytest.raises(InceptionWeightsInvalid, match=f"cannot read .*{path}: Permission denied"):
        load_variables(path)


def test_pth_without_torch_is_one_line_and_still_an_import_error(tmp_path, monkeypatch):
    path = tmp_path / "w.pth"
    path.write_bytes(b"x")
    monkeypatch.setitem(sys.modules, "torch", None)  # import torch -> ImportError
    with pytest.raises(InceptionWeightsError, match=f"{path}: reading a .pth needs torch") as e:
        load_variables(path, expected_sha256=None)
    assert isinstance(e.value, ImportError)


def test_directory_is_reported_by_unavailable_reason(tmp_path):
    assert unavailable_reason(tmp_path) == (
        f"unavailable: not an Inception weights file: {tmp_path} (a directory, not a file)"
    )


# ----------------------------------------------------------------------------- torch parity


def test_pth_convert_cli(tmp_path):
    torch = pytest.importorskip("torch")
    sd = random_state_dict()
    pth = tmp_path / "w.pth"
    torch.save({k: torch.from_numpy(v) for k, v in sd.items()}, pth)
    digest = inception_weights.sha256_file(pth)
    assert inception_weights.main([str(pth), str(tmp_path / "x.npz")]) == 1  # not the pinned file
    out = tmp_path / "w.npz"
    assert inception_weights.main([str(pth), str(out), "--expected-sha256", digest]) == 0
    for v in (
        load_variables(out, expected_sha256=digest),
        load_variables(pth, expected_sha256=digest),
    ):
        back = variables_to_state_dict(v)
        assert all(np.array_equal(back[k], sd[k]) for k in sd)


@pytest.mark.parametrize("reference", ["pytorch_fid", "torch_reimplementation"])
def test_parity_with_torch(reference, flax_outputs):
    pytest.importorskip("torch")
    if reference == "pytorch_fid" and import_pytorch_fid() is None:
        pytest.skip("pytorch_fid/torchvision not importable")
    ref_fn = pytorch_fid_outputs if reference == "pytorch_fid" else torch_reference_outputs
    ref_feats, ref_logits = ref_fn(random_state_dict(), random_images())
    feats, logits = flax_outputs
    assert feats.shape == ref_feats.shape == (2, 2048)
    assert 0.1 < np.abs(ref_feats).mean() < 10  # O(1) features: the tolerance is meaningful
    assert np.abs(feats - ref_feats).max() <= 1e-4
    assert np.abs(logits - ref_logits).max() <= 1e-4


# ----------------------------------------------------------------------------- torch references


def import_pytorch_fid():
    """`pytorch_fid.inception`, or None if pytorch-fid/torchvision cannot be imported.

    The torchvision wheels reachable here are built against CUDA torch; next to torch+cpu their C
    ops do not load and `import torchvision` raises RuntimeError in `_meta_registrations`
    (registering fake kernels of those ops). pytorch-fid only uses torchvision's pure-Python
    Inception classes, so on that error we retry once with that one module stubbed out.
    """
    try:
        import pytorch_fid.inception as pfi

        return pfi
    except ImportError:
        return None
    except (RuntimeError, OSError):
        for name in [n for n in sys.modules if n.split(".")[0] in ("torchvision", "pytorch_fid")]:
            del sys.modules[name]
        sys.modules["torchvision._meta_registrations"] = types.ModuleType("stub")
        try:
            import pytorch_fid.inception as pfi

            return pfi
        except Exception:
            return None


def pytorch_fid_outputs(state_dict, images):
    """pytorch-fid's own `InceptionV3([3], resize_input=True, normalize_input=True)` with
    `state_dict` loaded; images [N, H, W, 3] in [-1, 1]. Returns (pool3 [N, 2048], logits)."""
    import torch

    pfi = import_pytorch_fid()
    sd = {k: torch.from_numpy(v) for k, v in state_dict.items()}
    original = pfi.load_state_dict_from_url
    pfi.load_state_dict_from_url = lambda *a, **k: sd
    try:
        model = pfi.InceptionV3([3], resize_input=True, normalize_input=True).eval()
    finally:
        pfi.load_state_dict_from_url = original
    x = torch.from_numpy((images.transpose(0, 3, 1, 2) + 1) / 2)  # NCHW in [0, 1]
    with torch.no_grad():
        pool3 = model(x)[0][:, :, 0, 0]
        logits = pool3 @ sd["fc.weight"].T + sd["fc.bias"]
    return pool3.numpy(), logits.numpy()


def torch_reference_outputs(state_dict, images):
    """Independent functional torch re-implementation of pytorch-fid's network (same input
    handling). images [N, H, W, 3] in [-1, 1] -> (pool3 [N, 2048], logits [N, 1008])."""
    import torch
    import torch.nn.functional as F

    w = {k: torch.from_numpy(v) for k, v in state_dict.items()}

    def conv(x, name, stride=1, padding=0):
        x = F.conv2d(x, w[f"{name}.conv.weight"], stride=stride, padding=padding)
        b = f"{name}.bn."
        x = F.batch_norm(
            x, w[b + "running_mean"], w[b + "running_var"], w[b + "weight"], w[b + "bias"],
            training=False, eps=1e-3,
        )  # fmt: skip
        return F.relu(x)

    def avg(x):
        return F.avg_pool2d(x, 3, stride=1, padding=1, count_include_pad=False)

    def block_a(x, n):
        b5 = conv(conv(x, f"{n}.branch5x5_1"), f"{n}.branch5x5_2", padding=2)
        b3 = conv(conv(x, f"{n}.branch3x3dbl_1"), f"{n}.branch3x3dbl_2", padding=1)
        b3 = conv(b3, f"{n}.branch3x3dbl_3", padding=1)
        return torch.cat([conv(x, f"{n}.branch1x1"), b5, b3, conv(avg(x), f"{n}.branch_pool")], 1)

    def block_b(x, n):
        bd = conv(conv(x, f"{n}.branch3x3dbl_1"), f"{n}.branch3x3dbl_2", padding=1)
        bd = conv(bd, f"{n}.branch3x3dbl_3", stride=2)
        return torch.cat([conv(x, f"{n}.branch3x3", stride=2), bd, F.max_pool2d(x, 3, 2)], 1)

    def block_c(x, n):
        h, v = (0, 3), (3, 0)
        b7 = conv(conv(x, f"{n}.branch7x7_1"), f"{n}.branch7x7_2", padding=h)
        b7 = conv(b7, f"{n}.branch7x7_3", padding=v)
        bd = conv(x, f"{n}.branch7x7dbl_1")
        for i, p in zip(range(2, 6), (v, h, v, h), strict=True):
            bd = conv(bd, f"{n}.branch7x7dbl_{i}", padding=p)
        return torch.cat([conv(x, f"{n}.branch1x1"), b7, bd, conv(avg(x), f"{n}.branch_pool")], 1)

    def block_d(x, n):
        b3 = conv(conv(x, f"{n}.branch3x3_1"), f"{n}.branch3x3_2", stride=2)
        b7 = conv(conv(x, f"{n}.branch7x7x3_1"), f"{n}.branch7x7x3_2", padding=(0, 3))
        b7 = conv(conv(b7, f"{n}.branch7x7x3_3", padding=(3, 0)), f"{n}.branch7x7x3_4", stride=2)
        return torch.cat([b3, b7, F.max_pool2d(x, 3, 2)], 1)

    def block_e(x, n, pool):
        def split(y, a, b):
            return torch.cat([conv(y, a, padding=(0, 1)), conv(y, b, padding=(1, 0))], 1)

        b3 = split(conv(x, f"{n}.branch3x3_1"), f"{n}.branch3x3_2a", f"{n}.branch3x3_2b")
        bd = conv(conv(x, f"{n}.branch3x3dbl_1"), f"{n}.branch3x3dbl_2", padding=1)
        bd = split(bd, f"{n}.branch3x3dbl_3a", f"{n}.branch3x3dbl_3b")
        p = avg(x) if pool == "avg" else F.max_pool2d(x, 3, stride=1, padding=1)
        return torch.cat([conv(x, f"{n}.branch1x1"), b3, bd, conv(p, f"{n}.branch_pool")], 1)

    x = torch.from_numpy((images.transpose(0, 3, 1, 2) + 1) / 2)
    with torch.no_grad():
        x = 2 * F.interpolate(x, size=(299, 299), mode="bilinear", align_corners=False) - 1
        x = conv(conv(x, "Conv2d_1a_3x3", stride=2), "Conv2d_2a_3x3")
        x = F.max_pool2d(conv(x, "Conv2d_2b_3x3", padding=1), 3, 2)
        x = F.max_pool2d(conv(conv(x, "Conv2d_3b_1x1"), "Conv2d_4a_3x3"), 3, 2)
        for n in ("Mixed_5b", "Mixed_5c", "Mixed_5d"):
            x = block_a(x, n)
        x = block_b(x, "Mixed_6a")
        for n in ("Mixed_6b", "Mixed_6c", "Mixed_6d", "Mixed_6e"):
            x = block_c(x, n)
        x = block_e(block_e(block_d(x, "Mixed_7a"), "Mixed_7b", "avg"), "Mixed_7c", "max")
        pool3 = x.mean(dim=(2, 3))
        logits = pool3 @ w["fc.weight"].T + w["fc.bias"]
    return pool3.numpy(), logits.numpy()


def test_bad_images_give_one_clear_error():
    from jaxgen.metrics.inception import FIDInception

    net = FIDInception({}, name="fid_inception")  # the checks run before the network
    with pytest.raises(ValueError, match=r"in \[-1, 1\], got values in \[255, 255\]"):
        net.features(np.full((2, 8, 8, 3), 255.0, np.float32))
    with pytest.raises(ValueError, match="float images"):
        net.features(np.zeros((2, 8, 8, 3), np.uint8))
    with pytest.raises(ValueError, match="non-finite"):
        net.features(np.full((1, 8, 8, 3), np.nan, np.float32))

"""FDRL on images: the ResNet ratio network inside the recipe (per-example outputs and drift,
spectral-norm state advanced once per step and never by the flow), the checks on its inputs,
and the data-dependent prior kept once per run (`DIR/data_fit.npz`), not in each checkpoint."""

from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxgen.methods import fdrl
from jaxgen.objectives.fdrl import flow_drift


def _cfg(**method) -> fdrl.Config:
    model = fdrl.Model(network="resnet", layout="fashion_mnist", spectral_norm=True)
    method = {"flow_steps": 2, "step_size": 3.0, "clip": True, **method}
    return fdrl.Config(model=model, method=fdrl.Method(**method))


def _images(n, side=8, seed=0):
    return np.random.default_rng(seed).uniform(-1, 1, (n, side, side, 1)).astype(np.float32)


def test_resnet_ratio_and_drift_are_per_example_and_jit_equals_no_jit():
    """Examples never interact: the batched output and the flow's drift (∇ₓ of the summed
    f'(r), eq. 9) equal each example's own, under jit and without."""
    cfg = _cfg()
    state = fdrl.init(cfg, {"x": _images(4)}, key=jax.random.PRNGKey(0))
    x = jnp.asarray(_images(3, seed=1))
    out = lambda v: fdrl.output(state.ratio.params, v, config=cfg, variables=state.ratio.variables)
    batched = out(x)
    alone = jnp.concatenate([out(x[i : i + 1]) for i in range(3)])
    np.testing.assert_allclose(batched, alone, rtol=1e-5, atol=1e-6)
    drift = lambda v: flow_drift(out, v, divergence="pearson")
    d_batch, d_jit = drift(x), jax.jit(drift)(x)
    d_alone = jnp.concatenate([drift(x[i : i + 1]) for i in range(3)])
    np.testing.assert_allclose(d_batch, d_alone, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(d_batch, d_jit, rtol=1e-4, atol=1e-6)


def test_spectral_norm_state_advances_once_per_step_and_the_sampler_leaves_it():
    """`train_step` runs one power iteration (on the q forward); the flow reads the state."""
    cfg = _cfg()
    x = _images(4)
    state = fdrl.init(cfg, {"x": x}, key=jax.random.PRNGKey(0))
    u = lambda s: s.ratio.variables["batch_stats"]["stem"]["SpectralNorm_0"]["Conv_0/kernel/u"]
    new, metrics = jax.jit(lambda s, b: fdrl.train_step(s, b, config=cfg))(state, {"x": x})
    assert np.isfinite(float(metrics["loss"])) and not np.allclose(u(new), u(state))
    # one power iteration from the old u with the old kernel W [k·k·C_in, C_out]:
    # v = normalise(W u), u' = normalise(Wᵀ v)
    kernel = np.asarray(state.ratio.params["stem"]["Conv_0"]["kernel"])
    kernel = kernel.reshape(-1, kernel.shape[-1])
    v = np.asarray(u(state)) @ kernel.T
    v /= np.linalg.norm(v)
    want = v @ kernel
    np.testing.assert_allclose(np.asarray(u(new)), want / np.linalg.norm(want), rtol=1e-4)
    before = jax.tree.map(np.asarray, new.ratio.variables)
    fdrl.sample(new, 3, config=cfg, key=jax.random.PRNGKey(1), shape=(8, 8, 1))
    jax.tree.map(np.testing.assert_array_equal, before, new.ratio.variables)


def test_resnet_input_errors_are_one_line_each():
    cfg = _cfg()
    with pytest.raises(ValueError, match="takes images"):
        fdrl.init(cfg, {"x": np.zeros((4, 2), np.float32)}, key=jax.random.PRNGKey(0))
    state = fdrl.init(cfg, {"x": _images(4)}, key=jax.random.PRNGKey(0))
    x, _ = fdrl.sample(state, 2, config=cfg, key=jax.random.PRNGKey(0))  # the state's shape
    assert x.shape == (2, 8, 8, 1)
    with pytest.raises(ValueError, match=r"examples of shape \(8, 8, 1\)"):
        fdrl.train_step(state, {"x": np.zeros((4, 8, 8, 3), np.float32)}, config=cfg)
    with pytest.raises(ValueError, match=r"layout='imagenet': choose one of \['cifar10'"):
        fdrl.Model(network="resnet", layout="imagenet")


def _ddp_toy_config():
    from experiments.configs.common import smoke
    from experiments.configs.fdrl.toy2d import get_config

    c = smoke(get_config())
    c.method.prior = "ddp"
    return c


def test_the_data_fit_is_kept_once_per_run_not_in_each_checkpoint(tmp_path, capsys):
    """Training writes the prior once to DIR/data_fit.npz; the checkpoints hold (1,)-stubs for
    its fields; a restore (sampling, a resumed run) gets the run's values back, bit for bit;
    a lost data_fit.npz is refitted (the fit is deterministic) with one line and rewritten."""
    from experiments import cli
    from experiments.experiment import DATA_FIT
    from experiments.train import train
    from jaxgen.train.checkpoint import CheckpointError, Checkpoints
    from jaxgen.train.fixed_fields import stubbed

    c, wd = _ddp_toy_config(), tmp_path / "run"
    state = train(c, str(wd), progress=False)
    fit = np.load(wd / DATA_FIT)
    np.testing.assert_array_equal(fit["prior_chol"], np.asarray(state.prior_chol))
    np.testing.assert_array_equal(fit["prior_mean"], np.asarray(state.prior_mean))
    assert fit["prior_chol"].shape == (2, 2)

    exp = cli.experiment(c)
    fields = ("prior_mean", "prior_chol")
    raw = Checkpoints(Path(wd) / "checkpoints")
    stub, _ = raw.restore(stubbed(exp.abstract_state(), fields))  # the saved arrays are stubs
    assert stub.prior_chol.shape == (1, 1) and stub.prior_mean.shape == (1,)
    with pytest.raises(CheckpointError, match="does not match"):
        raw.restore(exp.abstract_state())
    raw.close()

    restored, _ = exp.restore_latest(str(wd))
    jax.tree.map(np.testing.assert_array_equal, jax.device_get(state), restored)

    (wd / DATA_FIT).unlink()
    capsys.readouterr()
    refitted, _ = exp.restore_latest(str(wd))
    assert "data_fit.npz is missing: refitting prior_mean, prior_chol" in capsys.readouterr().out
    np.testing.assert_array_equal(np.asarray(refitted.prior_chol), np.asarray(state.prior_chol))
    assert (wd / DATA_FIT).exists()

    c.train.num_steps = 3  # a resumed run continues with the run's prior
    resumed = train(c, str(wd), progress=False)
    assert int(resumed.step) == 3
    np.testing.assert_array_equal(np.asarray(resumed.prior_chol), np.asarray(state.prior_chol))

"""FDRL: Bregman losses recover q/p in closed-form Gaussian cases, f' matches the table of
docs/methods/fdrl.md eq. (3), the Euler–Maruyama flow has the known marginals, and the recipe
trains across a density chasm."""

from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.scipy.optimize import minimize
from jax.scipy.stats import norm

from jaxgen.methods import fdrl, fdrl_prior
from jaxgen.methods.common import config_from_dict, replace_fields
from jaxgen.objectives.fdrl import bregman_loss, check_pairing, f_prime, flow_drift, ratio
from jaxgen.samplers.sde import euler_maruyama, noise_scale


def _cfg(fields: dict) -> fdrl.Config:
    """The default Config with dotted fields replaced (`{"method.loss": "lr"}`)."""
    return replace_fields(fdrl.Config(), fields)


def _quantile_sample(mean, n=20_000):
    """A deterministic 'sample' of N(mean, 1): the n mid-quantiles (exact moments to ~1/n)."""
    return mean + norm.ppf((jnp.arange(n) + 0.5) / n)


# q = N(0, 1) (generated), p = N(1/2, 1) (data): log r(x) = log q − log p = −x/2 + 1/8
# (a shift of 1/2 keeps LSIF's E_p[r²] weight within the quantile grid's range)
TRUE_A, TRUE_B = -0.5, 0.125


@pytest.mark.parametrize("loss", ["lsif", "lr", "ukl"])
def test_bregman_minimiser_is_the_true_ratio(loss):
    """Each loss, over the family log r = a x + b (which holds the truth), is minimised at the
    true log-ratio (eq. 11: the minimiser of the Bregman divergence is r = q/p)."""
    x_q, x_p = _quantile_sample(0.0), _quantile_sample(0.5)

    def objective(theta):
        out = lambda x: theta[0] * x + theta[1]  # o = log r
        if loss == "lsif":  # o = r for lsif
            out = lambda x: jnp.exp(theta[0] * x + theta[1])
        return bregman_loss(out(x_q), out(x_p), loss)[0]

    res = minimize(objective, jnp.zeros(2), method="BFGS")
    np.testing.assert_allclose(res.x, [TRUE_A, TRUE_B], atol=0.005)


def test_lr_loss_is_binary_cross_entropy_with_generated_labelled_one():
    o_q, o_p = jnp.array([0.3, -1.2]), jnp.array([2.0, -0.5, 0.1])
    bce = lambda o, y: -(y * jax.nn.log_sigmoid(o) + (1 - y) * jax.nn.log_sigmoid(-o))
    value, (p_term, q_term) = bregman_loss(o_q, o_p, "lr")
    np.testing.assert_allclose(p_term, bce(o_p, 0.0).mean(), rtol=1e-6)
    np.testing.assert_allclose(q_term, bce(o_q, 1.0).mean(), rtol=1e-6)
    np.testing.assert_allclose(value, p_term + q_term, rtol=1e-6)


# f'(r) from the table of docs/methods/fdrl.md eq. (3), as a function of r
F_PRIME_OF_R = {
    "pearson": lambda r: 2 * (r - 1),
    "kl": lambda r: jnp.log(r) + 1,
    "js": lambda r: jnp.log(2 * r / (r + 1)),
    "logd": lambda r: jnp.log(r + 1) + 1,
}
F_SECOND_OF_R = {
    "pearson": lambda r: 2.0 + 0 * r,
    "kl": lambda r: 1 / r,
    "js": lambda r: 1 / (r * (r + 1)),
    "logd": lambda r: 1 / (r + 1),
}


@pytest.mark.parametrize("div", ["pearson", "kl", "js", "logd"])
def test_f_prime_matches_the_table_up_to_a_constant_and_f_second(div):
    loss = "lsif" if div == "pearson" else "lr"
    o = jnp.linspace(0.2, 3.0, 9) if div == "pearson" else jnp.linspace(-4.0, 4.0, 9)
    r = ratio(o, loss)
    gap = f_prime(o, div) - F_PRIME_OF_R[div](r)
    np.testing.assert_allclose(gap, gap[0], atol=1e-5)  # only an additive constant differs
    # chain rule: d f'(r(o)) / do = f''(r) dr/do, which is what ∇ₓ of the flow uses
    d = jax.vmap(jax.grad(lambda t: f_prime(t, div)))(o)
    dr = jax.vmap(jax.grad(lambda t: ratio(t, loss)))(o)
    np.testing.assert_allclose(d, F_SECOND_OF_R[div](r) * dr, rtol=1e-5)


def test_unsafe_pairings_give_one_clear_error():
    check_pairing("lr", "js")
    with pytest.raises(ValueError, match="lsif goes with"):
        check_pairing("lsif", "kl")
    with pytest.raises(ValueError, match="divergence='hellinger'"):
        check_pairing("lr", "hellinger")
    with pytest.raises(ValueError, match="lsif goes with"):
        fdrl.Method(loss="lsif", divergence="js")
    with pytest.raises(ValueError, match=r"config\.method\.divergence='js'.*lsif goes with"):
        config_from_dict(fdrl.Config, {"method": {"loss": "lsif", "divergence": "js"}})


def test_flow_drift_descends_f_prime_per_example():
    c = jnp.array([1.0, -2.0])
    out = lambda x: -0.5 * jnp.sum((x - c) ** 2, axis=-1)  # o = log r, KL: f' = o
    x = jnp.array([[0.0, 0.0], [3.0, 1.0]])
    np.testing.assert_allclose(flow_drift(out, x, "kl"), x - c, rtol=1e-6)


def test_euler_maruyama_ou_process_has_the_closed_form_marginal():
    """Drift −x: x_{k+1} = (1−η) x_k + ν ξ, so x_K ~ N((1−η)^K x0, ν² (1−a^{2K})/(1−a²)),
    a = 1−η."""
    eta, nu, steps = 0.1, 0.3, 20
    x0 = jnp.full((40_000, 2), 2.0)
    x, stats = euler_maruyama(
        lambda x: -x, x0, jax.random.PRNGKey(0), num_steps=steps, step_size=eta, noise=nu
    )
    a = 1 - eta
    mean, var = a**steps * 2.0, nu**2 * (1 - a ** (2 * steps)) / (1 - a**2)
    np.testing.assert_allclose(x.mean(0), mean, atol=4 * np.sqrt(var / 40_000))
    np.testing.assert_allclose(x.var(0), var, rtol=0.03)
    assert stats["nfe"].shape == (40_000,) and int(stats["nfe"][0]) == steps
    np.testing.assert_allclose(noise_scale(0.5 * nu**2 / eta, eta), nu, rtol=1e-6)


def test_euler_maruyama_path_jit_and_bad_arguments():
    f = partial(euler_maruyama, lambda x: -x, num_steps=6, step_size=0.5, noise=0.1)
    x0, key = jnp.ones((3, 2)), jax.random.PRNGKey(1)
    x, stats = f(x0, key, save_every=2)
    assert stats["path"].shape == (4, 3, 2)
    np.testing.assert_array_equal(stats["path"][0], x0)
    np.testing.assert_array_equal(stats["path"][-1], x)
    np.testing.assert_allclose(jax.jit(f)(x0, key)[0], x, rtol=1e-6)  # same key, same draws
    with pytest.raises(ValueError, match="must divide"):
        f(x0, key, save_every=4)
    with pytest.raises(ValueError, match="step_size > 0"):
        euler_maruyama(lambda x: x, x0, key, num_steps=2, step_size=0.0, noise=0.1)


def test_data_dependent_prior_has_the_data_covariance():
    rng = np.random.default_rng(0)
    data = rng.normal(size=(5000, 3)) @ np.array([[1.0, 0.5, 0], [0, 0.3, 0], [0, 0.2, 2.0]])
    cfg = _cfg({"method.prior": "ddp", "method.prior_jitter": 1e-4})
    fitted = fdrl.fit_data(cfg, data)
    state = fdrl.init(cfg, {"x": data[:8]}, key=jax.random.PRNGKey(0), fitted=fitted)
    with pytest.raises(ValueError, match="prior='ddp' needs fitted="):
        fdrl.init(cfg, {"x": data[:8]}, key=jax.random.PRNGKey(0))
    cov = np.cov(data.T, bias=True) + 1e-4 * np.eye(3)
    np.testing.assert_allclose(state.prior_chol @ state.prior_chol.T, cov, rtol=1e-5, atol=1e-6)
    x = fdrl.sample_prior(state, 100_000, (3,), jax.random.PRNGKey(1), config=cfg)
    np.testing.assert_allclose(np.cov(np.asarray(x).T), cov, atol=0.03)
    clipped = fdrl.sample_prior(
        state,
        1000,
        (3,),
        jax.random.PRNGKey(1),
        config=_cfg({"method.prior": "ddp", "method.clip": True}),
    )
    assert float(jnp.abs(clipped).max()) <= 1.0


def test_train_step_is_pure_and_jit_equals_no_jit():
    cfg = _cfg({"model.hidden": (16, 16), "method.flow_steps": 5})
    batch = {"x": jax.random.normal(jax.random.PRNGKey(3), (32, 2)) + 1.0}
    state = fdrl.init(cfg, batch, key=jax.random.PRNGKey(0))
    a, ma = fdrl.train_step(state, batch, config=cfg)
    b, mb = jax.jit(partial(fdrl.train_step, config=cfg))(state, batch)
    for u, v in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
        np.testing.assert_allclose(u, v, rtol=1e-5, atol=1e-6)
    assert set(ma) >= {"loss", "p_term", "q_term", "r_q", "r_p", "grad_norm"}
    assert int(a.step) == 1 and np.isfinite(float(ma["loss"]))


def test_flow_guided_training_crosses_the_density_chasm():
    """docs/methods/fdrl.md §5 / paper Fig. 2-3: prior N(0, 0.1 I), data N(6, 0.1 I) in 1-D.
    Flow-guided training moves the samples across the chasm (the plain stale estimator fails
    here)."""
    cfg = _cfg(
        {
            "model.hidden": (32, 32),
            "method.loss": "lr",
            "method.divergence": "kl",
            "method.prior": "ddp",
            "method.flow_steps": 30,
            "method.step_size": 0.2,
            "method.noise": 0.01,
            "optim.ratio.lr": 3e-3,
            "optim.ratio.decay": "constant",
            "optim.ratio.ema_rate": 0.0,
        }
    )
    prior_sd, data_mean = np.sqrt(0.1), 6.0
    step = jax.jit(partial(fdrl.train_step, config=cfg))

    def data(i):
        return {"x": data_mean + prior_sd * jax.random.normal(jax.random.PRNGKey(i), (256, 1))}

    # the prior N(0, 0.1): a "ddp" prior with these moments
    fitted = (jnp.zeros(1), jnp.full((1, 1), prior_sd))
    state = fdrl.init(cfg, data(0), key=jax.random.PRNGKey(0), fitted=fitted)
    x0 = prior_sd * jax.random.normal(jax.random.PRNGKey(99), (512, 1))
    before = float(fdrl.flow_from(state, x0, config=cfg, key=jax.random.PRNGKey(7))[0].mean())
    for i in range(400):
        state, metrics = step(state, data(i))
    x, _ = fdrl.flow_from(state, x0, config=cfg, key=jax.random.PRNGKey(7))
    assert abs(before) < 1.0  # the untrained flow stays near the prior
    assert abs(float(x.mean()) - data_mean) < 0.3, float(x.mean())  # measured 5.88
    assert 0.1 < float(x.std()) < 0.6, float(x.std())  # data: 0.32; measured 0.22


# p = ½ N(−2, 0.3²) + ½ N(2, 0.3²) (two classes), q = N(0, 1): exact log-ratios and Bayes classifier
def _log_p_class(x, y):
    return norm.logpdf(x, 4.0 * y - 2.0, 0.3)


def _log_p(x):
    return jnp.logaddexp(_log_p_class(x, 0), _log_p_class(x, 1)) - jnp.log(2.0)


def _class_log_prob(x, y):  # log p(y|x), uniform class prior
    return _log_p_class(x, y) - jnp.log(2.0) - _log_p(x)


def test_conditional_ratio_is_q_over_the_class_density():
    """Eq. (12): with φ = 1 and the Bayes classifier, r(x)/(N p(y|x)) = q(x)/p(x|y)."""
    from jaxgen.objectives.fdrl import conditional_output

    x = jnp.linspace(-3.0, 3.0, 13)
    log_r = norm.logpdf(x) - _log_p(x)
    for y in (0, 1):
        cond = conditional_output(log_r, _class_log_prob(x, y), 2, "lr", phi=1.0)
        np.testing.assert_allclose(cond, norm.logpdf(x) - _log_p_class(x, y), rtol=1e-4)
        # lsif (o = r): the same ratio, multiplied; |x| <= 2 keeps exp() inside float32
        mid = jnp.abs(x) <= 2
        r_cond = conditional_output(jnp.exp(log_r), _class_log_prob(x, y), 2, "lsif", phi=1.0)
        np.testing.assert_allclose(jnp.log(r_cond)[mid], cond[mid], rtol=1e-4, atol=1e-4)


def test_guided_flow_samples_the_wanted_class():
    """The KL flow of the exact conditional ratio from q = N(0, 1) ends in class y's component;
    unguided, it splits between both."""
    cfg = _cfg(
        {
            "model.hidden": (4,),
            "method.loss": "lr",
            "method.divergence": "kl",
            "method.step_size": 0.02,
            "method.noise": 0.0,
        }
    )
    state = fdrl.init(cfg, {"x": jnp.zeros((2, 1))}, key=jax.random.PRNGKey(0))
    exact = lambda params, x, config, variables=None: norm.logpdf(x[:, 0]) - _log_p(x[:, 0])
    x0 = jax.random.normal(jax.random.PRNGKey(1), (400, 1))
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(fdrl, "output", exact)  # the trained network replaced by the exact log-ratio
        run = partial(
            fdrl.flow_from, state, x0, config=cfg, key=jax.random.PRNGKey(2), num_steps=300
        )
        free, _ = run()
        guided = {
            y: run(guide=(lambda x, y=y: _class_log_prob(x[:, 0], y), 2, 1.0))[0] for y in (0, 1)
        }
    assert 0.3 < float(jnp.mean(free > 0)) < 0.7
    assert float(jnp.mean(guided[1] > 0)) > 0.95 and float(jnp.mean(guided[0] < 0)) > 0.95


def test_train_cli_fits_the_ddp_prior_on_the_whole_training_set():
    """The declared data fit runs on the whole unaugmented training set (100k draws for 2-D
    sets), and the abstract state for a restore needs no fit."""
    from experiments import cli
    from experiments.configs.fdrl.toy2d import get_config
    from jaxgen.data.pipeline import to_unit_range

    c = get_config()
    exp = cli.experiment(c)
    assert exp.fit_data(exp.stream()) is None  # prior N(0, I): nothing to fit
    c.method.prior = "ddp"
    exp = cli.experiment(c)
    mean, chol = exp.fit_data(exp.stream())
    assert mean.shape == (2,) and chol.shape == (2, 2)
    c.data.update(dict(name="digits", batch_size=64, flip=True))
    exp = cli.experiment(c)
    stream = exp.stream()
    mean, chol = exp.fit_data(stream)
    images = to_unit_range(stream.image_source.images, stream.image_source.max_value)  # no flips
    flat = images.reshape(len(images), -1)
    np.testing.assert_allclose(mean, flat.mean(0), atol=1e-5)
    cov = np.cov(flat.T, bias=True) + 1e-4 * np.eye(flat.shape[1])
    np.testing.assert_allclose(chol @ chol.T, cov, atol=1e-4)
    abstract = exp.abstract_state()
    assert abstract.prior_chol.shape == (64, 64) and isinstance(
        abstract.prior_chol, jax.ShapeDtypeStruct
    )


def test_streaming_prior_fit_equals_the_direct_fit(monkeypatch):
    """The DDP fit (eq. 8) accumulated over chunks in float64 (merged in place two rows at a
    time) equals the population covariance of the whole set computed at once, for an array and
    for an iterable of uneven chunks, on data far from the origin (where one-pass sums would
    cancel); the memory is stated first."""
    from jaxgen import moments

    monkeypatch.setattr(moments, "_ROWS", 2)
    rng = np.random.default_rng(0)
    x = (50.0 + rng.normal(size=(1000, 6)) @ rng.normal(size=(6, 6))).astype(np.float32)
    flat = x.astype(np.float64)
    cov = np.cov(flat.T, bias=True) + 1e-4 * np.eye(6)
    lines = []
    for data in (x, (x[i : i + 333] for i in range(0, 1000, 333))):
        mean, chol = fdrl.fit_gaussian_prior(data, 1e-4, chunk=128, log=lines.append)
        np.testing.assert_allclose(mean, flat.mean(0), rtol=1e-6)
        np.testing.assert_allclose(chol.astype(np.float64) @ chol.T, cov, rtol=1e-5, atol=1e-5)
    assert lines[0].startswith("fdrl: fitting the data-dependent prior, D = 6: 0.00 GiB of host")
    with pytest.raises(ValueError, match="no examples"):
        fdrl.fit_gaussian_prior(iter(()), log=None)
    with pytest.raises(ValueError, match="not positive definite .* raise method.prior_jitter"):
        fdrl.fit_gaussian_prior(np.ones((10, 6), np.float32), 0.0, log=None)


def test_the_prior_fit_refuses_a_host_without_the_memory_in_one_line(monkeypatch):
    """The peak (12·D² bytes) is checked before the accumulator is allocated."""
    monkeypatch.setattr(fdrl_prior, "available_host_memory", lambda: 100 * 2**20)
    x = np.zeros((4, 32, 32, 3), np.float32)  # D = 3072: 0.11 GiB
    with pytest.raises(MemoryError, match=r"D = 3072 needs 0\.1 GiB .* 0\.1 GiB available") as e:
        fdrl.fit_gaussian_prior(x, log=None)
    assert "\n" not in str(e.value)


@pytest.mark.parametrize(
    "field, value", [("flow_steps", 0), ("step_size", 0.0), ("step_size", -1.0), ("noise", -0.1)]
)
def test_out_of_range_flow_settings_give_one_clear_error(field, value):
    """K < 1, η ≤ 0 and ν < 0 are refused when the config is built, naming the field."""
    with pytest.raises(ValueError, match=field) as err:
        fdrl.Method(**{field: value})
    assert "\n" not in str(err.value)

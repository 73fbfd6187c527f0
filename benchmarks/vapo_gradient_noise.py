"""How noisy is VAPO's stochastic gradient, with and without the control variate of
docs/methods/vapo.md eq. (10a)? On a trained run's weights and one fixed batch of training
images, the loss gradient is drawn `--draws` times with fresh (t, ξ) each time; reported per
estimator: the norm of the mean gradient (the signal), the root of the summed per-coordinate
variance (the noise of one batch's gradient), their ratio, and the same for the loss value and
for the gradient of the readout's bias (the direction that shifts Φ by a constant).

    python -m benchmarks.vapo_gradient_noise --workdir runs/vapo_fmnist [--step 5000] \
        [--draws 32] [--batch 64] [--out NAME]

Both estimators see the same (t, ξ) draws (paired); the control variate only changes the
weight's multiplier from Φ(x) to Φ(x) − Φ(m x̄), so both have the same expectation.
"""

import argparse
import dataclasses
import time

import jax
import jax.numpy as jnp
import numpy as np

from benchmarks.common import record
from benchmarks.vapo_t_sweep import run_config
from experiments import cli
from jaxgen.methods import vapo


def gradient_draws(params, xbar, config, keys):
    """`(grads [R, P], losses [R], bias grads [R])` of the loss at `params` over the keys."""

    def one(key):
        (loss, _), g = jax.value_and_grad(vapo.loss_fn, has_aux=True)(
            params, xbar, key, config=config
        )
        flat = jnp.concatenate([a.ravel() for a in jax.tree_util.tree_leaves(g)])
        bias = g["readout"]["bias"].ravel()[0] if "readout" in g else jnp.nan
        return flat, loss, bias

    fn = jax.jit(one)
    fn(keys[0])  # compile once, outside the timing
    out = [fn(k) for k in keys]
    return tuple(np.stack([np.asarray(o[i]) for o in out]) for i in range(3))


def signal_and_noise(grads) -> tuple[float, float]:
    """Over R gradient draws `[R, P]`: the norm of their mean and the root of the summed
    per-coordinate variance (one draw's noise)."""
    return float(np.linalg.norm(grads.mean(0))), float(np.sqrt(grads.var(0, ddof=1).sum()))


def summary(grads, losses, bias) -> dict:
    signal, noise = signal_and_noise(grads)
    return {
        "grad_mean_norm": signal,
        "grad_noise": noise,
        "noise_to_signal": noise / max(signal, 1e-30),
        "loss_mean": float(losses.mean()),
        "loss_sd": float(losses.std(ddof=1)),
        "readout_bias_grad_mean": float(bias.mean()),
        "readout_bias_grad_sd": float(bias.std(ddof=1)),
    }


def run_arguments(ap: argparse.ArgumentParser, *, draws: int) -> argparse.ArgumentParser:
    """The options every VAPO gradient benchmark takes: the run, its step, draws, batch, out."""
    ap.add_argument("--workdir", required=True)
    ap.add_argument("--step", type=int, default=None)
    ap.add_argument("--draws", type=int, default=draws)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--out", default=None, help="record name under docs/bench/")
    return ap


def restore_with_batch(args):
    """`(config, experiment, state, xbar)`: the run's weights at `args.step` (newest when None)
    and the first `args.batch` training images `[B, ...]`."""
    c = run_config(args.workdir)
    exp = cli.experiment(c)
    state, _ = exp.restore_latest(args.workdir, step=args.step)
    xbar = jnp.asarray(exp.stream("train").batch(0)["x"][: args.batch], jnp.float32)
    return c, exp, state, xbar


def record_result(args, c, state, xbar, **rows) -> None:
    """Record the run, step, data, batch and draws with `rows` as docs/bench/<args.out>.json."""
    result = {
        "workdir": args.workdir,
        "step": int(state.step),
        "data": c.data.name,
        "batch": int(xbar.shape[0]),
        "draws": args.draws,
        **rows,
    }
    if args.out:
        record(args.out, result)


def main():
    args = run_arguments(argparse.ArgumentParser(), draws=32).parse_args()
    c, exp, state, xbar = restore_with_batch(args)
    keys = list(jax.random.split(jax.random.PRNGKey(1), args.draws))
    params = state.potential.params
    rows = {}
    for cv in (False, True):
        m = dataclasses.replace(exp.rc.method, control_variate=cv)
        config = dataclasses.replace(exp.rc, method=m)
        t0 = time.perf_counter()
        with jax.default_matmul_precision("float32"):
            rows["control_variate" if cv else "paper"] = summary(
                *gradient_draws(params, xbar, config, keys)
            )
        print(
            f"control_variate={cv}: {rows['control_variate' if cv else 'paper']} "
            f"({time.perf_counter() - t0:.0f} s)",
            flush=True,
        )
    record_result(args, c, state, xbar, rows=rows)


if __name__ == "__main__":
    main()

"""Where along the homotopy does VAPO's training signal come from? On a trained run's weights
and one fixed batch of training images, the loss (paper eq. (20)) is evaluated with every
example's time t inside one of `--bins` equal bins of [0, 1]; per bin: the path's mean weight
m(t) on the data and its noise scale s(t) (docs/methods/vapo.md eq. (4)), the mean ½‖∇Φ‖² and
Φ on the perturbed points, and the norm of the bin's mean parameter gradient over `--draws`
draws, debiased for the draws' noise (‖mean‖² − noise²/R), and its share of the bins' sum (t is
uniform, so each bin carries 1/bins of the training loss).

    python -m benchmarks.vapo_loss_by_t --workdir runs/vapo_fmnist [--step N] [--bins 10] \
        [--draws 8] [--batch 64] [--out NAME]

Near t = 0 the perturbed points are prior draws (m ≈ 0, s ≈ σ0); the sampler starts there, so
a field learned only near the data shows up as bins near t = 0 with little gradient.
"""

import argparse
import time

import jax
import jax.numpy as jnp
import numpy as np

from benchmarks.vapo_gradient_noise import (
    record_result,
    restore_with_batch,
    run_arguments,
    signal_and_noise,
)
from jaxgen.methods import vapo
from jaxgen.objectives.vapo import homotopy_schedule


def bin_row(params, xbar, config, lo: float, hi: float, keys) -> dict:
    """Loss diagnostics and the mean gradient's norm with t ~ U[lo, hi) per example."""
    b = xbar.shape[0]

    def one(key):
        k_t, k_loss = jax.random.split(key)
        t = jax.random.uniform(k_t, (b,), minval=lo, maxval=hi)
        (loss, aux), g = jax.value_and_grad(vapo.loss_fn, has_aux=True)(
            params, xbar, k_loss, config=config, t=t
        )
        flat = jnp.concatenate([a.ravel() for a in jax.tree_util.tree_leaves(g)])
        return flat, loss, aux["phi_mean"], aux["grad_sq"]

    fn = jax.jit(one)
    out = [fn(k) for k in keys]
    signal, noise = signal_and_noise(np.stack([np.asarray(o[0]) for o in out]))
    mid = homotopy_schedule(0.5 * (lo + hi), **_schedule_kw(config))
    row = {
        "t": [lo, hi],
        "m_mid": float(mid.mean),
        "s_mid": float(mid.std),
        "loss": float(np.mean([o[1] for o in out])),
        "phi_mean": float(np.mean([o[2] for o in out])),
        "half_grad_sq": 0.5 * float(np.mean([o[3] for o in out])),
        "grad_mean_norm": signal,
        "grad_noise": noise,
    }
    # ‖mean of R draws‖² overestimates ‖E g‖² by the noise² / R; the difference is unbiased
    r = len(keys)
    sq = row["grad_mean_norm"] ** 2 - row["grad_noise"] ** 2 / r
    row["grad_signal_debiased"] = float(np.sqrt(max(sq, 0.0)))
    return row


def _schedule_kw(config) -> dict:
    m = config.method
    return dict(sigma0=m.sigma0, sigma=m.sigma, eps=m.eps)


def main():
    ap = run_arguments(argparse.ArgumentParser(description=__doc__.splitlines()[0]), draws=8)
    ap.add_argument("--bins", type=int, default=10)
    args = ap.parse_args()
    if args.bins < 1 or args.draws < 2 or args.batch < 1:
        ap.error("--bins >= 1, --draws >= 2 and --batch >= 1 are needed")
    c, exp, state, xbar = restore_with_batch(args)
    params = state.potential.params
    config = exp.rc
    edges = np.linspace(0.0, 1.0, args.bins + 1)
    rows = []
    for i, (lo, hi) in enumerate(zip(edges[:-1], edges[1:], strict=True)):
        keys = list(jax.random.split(jax.random.PRNGKey(100 + i), args.draws))
        t0 = time.perf_counter()
        with jax.default_matmul_precision("float32"):
            rows.append(bin_row(params, xbar, config, float(lo), float(hi), keys))
        r = rows[-1]
        print(
            f"t in [{lo:.2f}, {hi:.2f}): m {r['m_mid']:.3f} s {r['s_mid']:.3f} "
            f"loss {r['loss']:.4g} ½|∇Φ|² {r['half_grad_sq']:.4g} Φ {r['phi_mean']:.4g} "
            f"|mean grad| {r['grad_mean_norm']:.4g} debiased {r['grad_signal_debiased']:.4g} "
            f"noise {r['grad_noise']:.4g} "
            f"({time.perf_counter() - t0:.0f} s)",
            flush=True,
        )
    total = sum(r["grad_signal_debiased"] for r in rows)
    for r in rows:
        r["share_of_summed_signal"] = r["grad_signal_debiased"] / max(total, 1e-30)
    record_result(args, c, state, xbar, bins=rows)


if __name__ == "__main__":
    main()

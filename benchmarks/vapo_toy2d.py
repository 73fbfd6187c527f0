"""VAPO on 2-D data: mode coverage, NFE, wall times, the terminal-time sweep, and jitted
diffrax sampling against the paper's host-side scipy RK45 loop.

    python -m benchmarks.vapo_toy2d [--data 8gaussians] [--steps 3000] [--repeats 5]

Trains `experiments/configs/vapo/toy2d.py` (through the same `train` function as the CLI),
then samples 2000 points with EMA weights at T ∈ {1, 1.5, 2, 3}.
"""

import argparse
import tempfile
import time
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
from scipy.integrate import solve_ivp

from benchmarks.common import median_time, record
from experiments.configs.vapo.toy2d import get_config
from experiments.train import train
from jaxgen.data import mixture_modes, sample_toy2d
from jaxgen.methods import vapo
from jaxgen.metrics import mmd_rbf, mode_coverage


def scipy_rk45(params, cfg, x0, t_end):
    """The paper's sampler: scipy `solve_ivp(RK45)` on the host, the batch as one flat state,
    calling the jitted vector field once per evaluation."""
    vf = jax.jit(partial(vapo.velocity, params, config=cfg))
    shape, nfe = x0.shape, [0]

    def f(t, y):
        nfe[0] += 1
        return np.asarray(vf(jnp.asarray(y.reshape(shape), jnp.float32)), np.float64).ravel()

    sol = solve_ivp(
        f,
        (0.0, t_end),
        np.asarray(x0, np.float64).ravel(),
        method="RK45",
        rtol=cfg.rtol,
        atol=cfg.atol,
    )
    return sol.y[:, -1].reshape(shape), nfe[0]


def sampling_speed(state, cfg, repeats):
    """Wall time of 1000 samples: jitted diffrax Dopri5 vs host scipy RK45 (same field)."""
    params = state.potential.ema_params
    x0 = jax.random.normal(jax.random.PRNGKey(5), (1000, 2))
    solve = jax.jit(lambda p, x: vapo.solve_flow(p, x, config=cfg))
    diffrax_s = median_time(lambda: jax.block_until_ready(solve(params, x0)), repeats=repeats)
    scipy_s = median_time(lambda: scipy_rk45(params, cfg, x0, cfg.t_end), repeats=repeats)
    _, scipy_nfe = scipy_rk45(params, cfg, x0, cfg.t_end)
    _, stats = solve(params, x0)
    return {
        "num_samples": 1000,
        "diffrax_dopri5_s": diffrax_s,
        "scipy_rk45_host_s": scipy_s,
        "speedup": scipy_s / diffrax_s,
        "diffrax_nfe": int(stats["nfe"]),
        "scipy_nfe": scipy_nfe,
    }


def evaluate_t(state, cfg, data, t_end, key):
    cfg_t = vapo.Config(**{**cfg.__dict__, "t_end": t_end})
    t = time.perf_counter()
    x, stats = jax.jit(lambda s, k: vapo.sample(s, 2000, config=cfg_t, key=k))(state, key)
    x = np.asarray(x)
    seconds = time.perf_counter() - t
    ref = np.asarray(sample_toy2d(data, 2000, jax.random.PRNGKey(99)))
    row = {
        "t_end": t_end,
        "nfe": int(stats["nfe"]),
        "sample_s_incl_compile": seconds,
        "mmd_rbf": mmd_rbf(x, ref),
    }
    try:
        centers, std = mixture_modes(data)
        row.update(mode_coverage(x, centers, std))
    except ValueError:
        pass
    return row


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", default="8gaussians")
    ap.add_argument("--steps", type=int, default=0, help="0: the config's num_steps")
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()
    c = get_config()
    c.data.name = args.data
    if args.steps:
        c.train.num_steps = args.steps
    c.train.sample_every = 0
    from experiments.cli import recipe_config

    cfg = recipe_config(c)
    with tempfile.TemporaryDirectory() as wd:
        t = time.perf_counter()
        state = train(c, wd, progress=False)
        train_s = time.perf_counter() - t
    sweep = [evaluate_t(state, cfg, args.data, T, jax.random.PRNGKey(1)) for T in (1, 1.5, 2, 3)]
    for row in sweep:
        print({k: (round(v, 4) if isinstance(v, float) else v) for k, v in row.items()}, flush=True)
    speed = sampling_speed(state, cfg, args.repeats)
    print(speed)
    path = record(
        f"vapo_toy2d_{args.data}",
        {
            "data": args.data,
            "num_steps": c.train.num_steps,
            "batch_size": c.data.batch_size,
            "train_s_incl_compile": train_s,
            "default_t_end": cfg.t_end,
            "t_sweep": sweep,
            "sampling_speed": speed,
        },
    )
    print(f"train {train_s:.1f}s; wrote {path}")


if __name__ == "__main__":
    main()

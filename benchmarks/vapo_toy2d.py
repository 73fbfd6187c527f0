"""VAPO on 2-D data: mode coverage, NFE and MMD per terminal time T, and the in-jit Dopri5
sampler against the paper's host-side scipy RK45 loop, each beside its compute limit.

    python -m benchmarks.vapo_toy2d [--data 8gaussians] [--steps 3000] [--repeats 9] \
        [--sizes 64,1000,8000] [--no-sweep] [--out]

Trains `experiments/configs/vapo/toy2d.py` (through the same `train` function as the CLI), then,
with the EMA weights:
- T sweep: 2000 points at T ∈ {1, 1.5, 2, 3}; each sampler is compiled by a first call (timed
  and reported as `first_call_s`) and then timed once compiled (`sample_s`).
- Sampling speed at each of `--sizes` points, T = 1, rtol = atol = 1e-3 for both solvers:
  * `scipy_rk45`: `scipy.integrate.solve_ivp(RK45)` on the host with the batch as one flat
    float64 state, calling the jitted field ∇Φ once per evaluation;
  * `jit_dopri5`: `vapo.solve_flow` (diffrax Dopri5, one step-size controller) under `jax.jit`;
  * `field`: ONE jitted evaluation of ∇Φ from the host (blocking), the unit both are measured in.
  The field and the sampler are each jitted once, outside every timed region, and warmed up at
  the batch size; then the repeats run interleaved (scipy, jit, field, scipy, jit, field, ...).
  Reported: medians and quartiles over the repeats, each sampler's NFE, its compute limit
  `nfe_x_field_ms` = NFE × `one_field_eval_ms`, and `time_over_nfe_x_field` = time / (NFE ×
  field). The field time is per call averaged over a block of back-to-back calls long enough to
  time (≥ 20 ms); `field_in_loop_ms` is the same evaluation inside one jitted loop (no per-call
  dispatch), the floor the in-jit solver can approach.

Prints only, unless `--out`: then writes `docs/bench/vapo_toy2d_sampling.json` (the raw sampling
numbers) and `docs/bench/vapo_toy2d_<data>.json` (training, T sweep, sampling summary).
"""

import argparse
import tempfile
import time
from functools import partial

import jax
import numpy as np
from scipy.integrate import solve_ivp

from benchmarks.common import record
from experiments.cli import experiment
from experiments.configs.vapo.toy2d import get_config
from experiments.train import train
from jaxgen.data import mixture_modes, sample_toy2d
from jaxgen.methods import vapo
from jaxgen.methods.common import replace_fields
from jaxgen.metrics import mmd_rbf, mode_coverage

FIELD_BLOCK_S = 0.02  # a field timing block lasts at least this long
IN_LOOP_EVALS = 16  # field evaluations per jitted loop for `field_in_loop_ms`


def scipy_rk45(field, params, x0: np.ndarray, *, t_end: float, rtol: float, atol: float):
    """The paper's sampler: scipy `solve_ivp(RK45)` on the host, the batch as one flat float64
    state; `field(params, x)` is the already-jitted ∇Φ. Returns `(x_T, nfe)`."""
    shape, nfe = x0.shape, [0]

    def f(t, y):
        nfe[0] += 1
        x = np.asarray(y.reshape(shape), np.float32)
        return np.asarray(field(params, x), np.float64).ravel()

    y0 = np.asarray(x0, np.float64).ravel()
    sol = solve_ivp(f, (0.0, t_end), y0, method="RK45", rtol=rtol, atol=atol)
    return sol.y[:, -1].reshape(shape), nfe[0]


def field_block(field, params, x, n: int) -> float:
    """Seconds per call of `n` back-to-back blocking calls of the jitted field."""
    t = time.perf_counter()
    for _ in range(n):
        jax.block_until_ready(field(params, x))
    return (time.perf_counter() - t) / n


def summary(times) -> dict:
    t = np.asarray(times)
    q1, med, q3 = np.percentile(t, [25, 50, 75])
    return {"median": float(med), "quartiles": [float(q1), float(q3)], "raw": t.tolist()}


def speed_at(n: int, params, cfg, field, solve, field_loop, repeats: int) -> dict:
    """Interleaved timings of scipy RK45, the jitted Dopri5 and one field evaluation at `n`
    points (all compiled and warmed up before the first timed repeat)."""
    s = cfg.sample
    x0 = np.asarray(jax.random.normal(jax.random.PRNGKey(5), (n, 2)), np.float32)
    x0_dev = jax.device_put(x0)
    scipy_kw = dict(t_end=s.t_end, rtol=s.rtol, atol=s.atol)

    # warm-up: compiles the field at this batch size (also used by scipy) and the solver
    x_scipy, nfe_scipy = scipy_rk45(field, params, x0, **scipy_kw)
    x_jit, stats = jax.block_until_ready(solve(params, x0_dev))
    jax.block_until_ready(field_loop(params, x0_dev))
    one = field_block(field, params, x0_dev, 10)
    block = max(10, int(np.ceil(FIELD_BLOCK_S / max(one, 1e-7))))
    nfe_jit = int(np.max(stats["nfe"]))
    assert bool(np.all(stats["success"])), "the jitted Dopri5 solve did not finish"

    times = {"scipy_rk45": [], "jit_dopri5": [], "field": [], "field_in_loop": []}
    for _ in range(repeats):
        t = time.perf_counter()
        _, nfe = scipy_rk45(field, params, x0, **scipy_kw)
        times["scipy_rk45"].append(time.perf_counter() - t)
        assert nfe == nfe_scipy
        t = time.perf_counter()
        jax.block_until_ready(solve(params, x0_dev))
        times["jit_dopri5"].append(time.perf_counter() - t)
        times["field"].append(field_block(field, params, x0_dev, block))
        t = time.perf_counter()
        jax.block_until_ready(field_loop(params, x0_dev))
        times["field_in_loop"].append((time.perf_counter() - t) / IN_LOOP_EVALS)

    raw = {k: summary(v) for k, v in times.items()}
    field_ms = 1e3 * raw["field"]["median"]
    row = {
        "num_points": n,
        "one_field_eval_ms": field_ms,
        "one_field_eval_ms_quartiles": [1e3 * q for q in raw["field"]["quartiles"]],
        "field_block_calls": block,
        "field_in_loop_ms": 1e3 * raw["field_in_loop"]["median"],
    }
    for name, nfe in (("scipy_rk45", nfe_scipy), ("jit_dopri5", nfe_jit)):
        ms = 1e3 * raw[name]["median"]
        row[name] = {
            "ms": ms,
            "ms_quartiles": [1e3 * q for q in raw[name]["quartiles"]],
            "nfe": nfe,
            "nfe_x_field_ms": nfe * field_ms,
            "time_over_nfe_x_field": ms / (nfe * field_ms),
        }
    row["scipy_over_jit"] = raw["scipy_rk45"]["median"] / raw["jit_dopri5"]["median"]
    row["max_abs_diff_endpoints"] = float(np.max(np.abs(x_scipy - np.asarray(x_jit))))
    return row, raw


def sampling_speed(state, cfg, sizes, repeats: int):
    """Rows per batch size and the raw timings (seconds per repeat)."""
    params = state.potential.eval_params(True)
    field = jax.jit(partial(vapo.velocity, config=cfg))  # ONE jitted field, reused everywhere
    solve = jax.jit(partial(vapo.solve_flow, config=cfg))

    @jax.jit
    def field_loop(params, x):
        step = lambda i, x: x + 1e-6 * vapo.velocity(params, x, config=cfg)
        return jax.lax.fori_loop(0, IN_LOOP_EVALS, step, x)

    rows, raw = [], {}
    for n in sizes:
        row, raw[str(n)] = speed_at(n, params, cfg, field, solve, field_loop, repeats)
        rows.append(row)
        print_row(row)
    return rows, raw


def print_row(row: dict) -> None:
    head = f"N={row['num_points']}: field {row['one_field_eval_ms']:.3f} ms"
    head += f" (in-loop {row['field_in_loop_ms']:.3f} ms)"
    parts = [head]
    for name in ("scipy_rk45", "jit_dopri5"):
        r = row[name]
        q1, q3 = r["ms_quartiles"]
        parts.append(
            f"{name} {r['ms']:.2f} ms [{q1:.2f}, {q3:.2f}], NFE {r['nfe']}, "
            f"NFE×field {r['nfe_x_field_ms']:.2f} ms, ×{r['time_over_nfe_x_field']:.2f} of limit"
        )
    parts.append(f"scipy/jit {row['scipy_over_jit']:.2f}")
    print(" | ".join(parts), flush=True)


def evaluate_t(state, cfg, data, t_end, key):
    """2000 samples at terminal time `t_end`: NFE, MMD, mode coverage and wall time (the first
    call, with compilation, and a second, compiled one)."""
    cfg_t = replace_fields(cfg, {"sample.t_end": float(t_end)})
    fn = jax.jit(partial(vapo.sample, num=2000, config=cfg_t))
    t = time.perf_counter()
    jax.block_until_ready(fn(state, key=key))
    first = time.perf_counter() - t
    t = time.perf_counter()
    x, stats = jax.block_until_ready(fn(state, key=key))
    seconds = time.perf_counter() - t
    x = np.asarray(x)
    ref = np.asarray(sample_toy2d(data, 2000, jax.random.PRNGKey(99)))
    row = {
        "t_end": t_end,
        "nfe": int(np.max(stats["nfe"])),
        "first_call_s": first,
        "sample_s": seconds,
        "mmd_rbf": mmd_rbf(x, ref),
    }
    try:
        centers, std = mixture_modes(data)
        row.update(mode_coverage(x, centers, std))
    except ValueError:
        pass
    return row


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", default="8gaussians")
    ap.add_argument("--steps", type=int, default=0, help="0: the config's num_steps")
    ap.add_argument("--repeats", type=int, default=9, help="interleaved timing repeats")
    ap.add_argument("--sizes", default="64,1000,8000", help="comma-separated numbers of points")
    ap.add_argument("--no-sweep", action="store_true", help="skip the T sweep")
    ap.add_argument("--out", action="store_true", help="write the results to docs/bench/")
    args = ap.parse_args()
    sizes = [int(s) for s in args.sizes.split(",") if s.strip()]
    c = get_config()
    c.data.name = args.data
    if args.steps:
        c.train.num_steps = args.steps
    c.train.sample_every = 0
    exp = experiment(c)
    cfg = exp.rc
    with tempfile.TemporaryDirectory() as wd:
        t = time.perf_counter()
        state = train(exp, wd, progress=False)
        train_s = time.perf_counter() - t
    print(f"trained {c.train.num_steps} steps in {train_s:.1f} s (incl. compile)", flush=True)
    sweep = []
    if not args.no_sweep:
        for T in (1, 1.5, 2, 3):
            sweep.append(evaluate_t(state, cfg, args.data, T, jax.random.PRNGKey(1)))
            row = sweep[-1]
            print({k: (round(v, 4) if isinstance(v, float) else v) for k, v in row.items()})
    t = time.perf_counter()
    rows, raw = sampling_speed(state, cfg, sizes, args.repeats)
    print(f"sampling benchmark {time.perf_counter() - t:.1f} s")
    if not args.out:
        return
    settings = {
        "data": args.data,
        "num_steps": c.train.num_steps,
        "t_end": cfg.sample.t_end,
        "rtol": cfg.sample.rtol,
        "atol": cfg.sample.atol,
        "repeats": args.repeats,
        "params": "EMA",
    }
    path = record("vapo_toy2d_sampling", {**settings, "rows": rows, "raw_seconds": raw})
    print(f"wrote {path}")
    path = record(
        f"vapo_toy2d_{args.data}",
        {
            "data": args.data,
            "num_steps": c.train.num_steps,
            "batch_size": c.data.batch_size,
            "train_s_incl_compile": train_s,
            "default_t_end": cfg.sample.t_end,
            "t_sweep": sweep,
            "sampling_speed": rows,
        },
    )
    print(f"wrote {path}")


if __name__ == "__main__":
    main()

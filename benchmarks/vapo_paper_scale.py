"""Paper-scale VAPO configs on this CPU: one training step at the full architecture and a tiny
batch, with XLA's FLOP count, memory estimate and peak RSS, to budget the real runs.

    python -m benchmarks.vapo_paper_scale [--configs cifar10 celeba64] [--batch 2] [--steps 3]

Synthetic batches of the dataset's shape are used (the data sets are not on this machine); the
network, loss and optimizer are exactly those of the config. FLOPs of the paper batch size are
the per-example FLOPs × batch (the step is linear in the batch).
"""

import argparse
import importlib
import resource
import time
from functools import partial

import jax
import numpy as np

from benchmarks.common import record
from experiments.experiment import recipe_config
from jaxgen.methods import vapo

SHAPES = {"cifar10": (32, 32, 3), "celeba64": (64, 64, 3), "fashion_mnist": (28, 28, 1)}
SGEMM_LIMIT_GFLOPS = 188.0  # jitted 2048² sgemm on this machine kind (performance.md)


def measure(name: str, batch: int, steps: int) -> dict:
    c = importlib.import_module(f"experiments.configs.vapo.{name}").get_config()
    rc = recipe_config(c)
    x = np.random.default_rng(0).uniform(-1, 1, (batch, *SHAPES[name])).astype(np.float32)
    state = vapo.init(rc, {"x": x}, key=jax.random.PRNGKey(0))
    n_params = sum(int(np.prod(p.shape)) for p in jax.tree.leaves(state.potential.params))
    step = jax.jit(partial(vapo.train_step, config=rc), donate_argnums=0)
    t = time.perf_counter()
    compiled = step.lower(state, {"x": x}).compile()
    compile_s = time.perf_counter() - t
    cost = compiled.cost_analysis()
    cost = cost[0] if isinstance(cost, list | tuple) else cost
    mem = compiled.memory_analysis()
    times = []
    for _ in range(steps):
        t = time.perf_counter()
        state, m = compiled(state, {"x": x})
        jax.block_until_ready(m)
        times.append(time.perf_counter() - t)
    flops = float(cost.get("flops", float("nan")))
    step_s = float(np.median(times))
    return {
        "config": name,
        "params": n_params,
        "batch": batch,
        "paper_batch": c.data.batch_size,
        "compile_s": compile_s,
        "step_s_median": step_s,
        "gflop_per_step": flops / 1e9,
        "gflop_per_example": flops / 1e9 / batch,
        "gflop_per_paper_step": flops / 1e9 / batch * c.data.batch_size,
        "achieved_gflops": flops / 1e9 / step_s,
        "fraction_of_sgemm_limit": flops / 1e9 / step_s / SGEMM_LIMIT_GFLOPS,
        "xla_temp_mb": getattr(mem, "temp_size_in_bytes", 0) / 2**20,
        "xla_argument_mb": getattr(mem, "argument_size_in_bytes", 0) / 2**20,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "loss": float(m["loss"]),
    }


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--configs", nargs="+", default=["cifar10", "celeba64"])
    ap.add_argument("--batch", type=int, default=2)
    ap.add_argument("--steps", type=int, default=3)
    args = ap.parse_args()
    rows = []
    for name in args.configs:
        row = measure(name, args.batch, args.steps)
        rows.append(row)
        print({k: round(v, 3) if isinstance(v, float) else v for k, v in row.items()}, flush=True)
    print("wrote", record("vapo_paper_scale", {"rows": rows}))


if __name__ == "__main__":
    main()

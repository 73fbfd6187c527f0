"""One full-size DDGAN training step on this CPU (docs/methods/ddgan.md §7): the CIFAR-10 config's
networks (README values) at a small batch.

    python -m benchmarks.ddgan_step [--config experiments/configs/ddgan/cifar10.py] [--batch 4]
        [--repeats 5] [--out]

Two programs are compiled: the plain step (`method.r1_gamma=0`) and the step with R1
(`method.lazy_reg=1`), so XLA's FLOP count and temporary-buffer size (the step's working memory
beyond arguments and outputs) are each kind's own; both are warmed up, repeats interleaved,
medians. The lazy schedule's mean step is (k − 1)/k plain + 1/k with R1 (k = the config's
`lazy_reg`). Reported: parameter counts, FLOPs, memory, step times, the achieved FLOP rate
against this machine's float32 matmul rate, and the paper's budget: iterations × the mean
step's FLOPs at the global batch, scaled linearly from this batch. (Timed outside `lax.cond`:
XLA:CPU runs convolutions inside a conditional's branch un-rewritten, several times slower,
so on this CPU the recipe's lazy program is slower on its R1 steps than the R1 program here.)
"""

import argparse
import time
from functools import partial

import jax
import numpy as np

from benchmarks.common import interleaved_times, record
from benchmarks.glf_fashion import _sgemm_rate
from experiments import cli
from tools.tpu_compile import load_config


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--config", default="experiments/configs/ddgan/cifar10.py")
    p.add_argument("--batch", type=int, default=4)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--out", action="store_true")
    args = p.parse_args()
    c = load_config(args.config, [])
    global_batch, iterations = int(c.data.batch_size), int(c.train.num_steps)
    c.data.batch_size = args.batch
    k = int(c.method.lazy_reg)
    programs, state = {}, None
    for name, change in (("plain", {"r1_gamma": 0.0}), ("with_r1", {"lazy_reg": 1})):
        c2 = c.copy_and_resolve_references()
        c2.method.update(change)
        exp = cli.experiment(c2)
        mod, rc = exp.recipe, exp.rc
        x = np.random.default_rng(0).uniform(-1, 1, (args.batch, *exp.shape)).astype(np.float32)
        if state is None:
            t0 = time.perf_counter()
            state = mod.init(rc, {"x": x}, key=jax.random.PRNGKey(0))
            print(f"init: {time.perf_counter() - t0:.1f} s", flush=True)
        t0 = time.perf_counter()
        step = jax.jit(lambda s, b, rc=rc, mod=mod: mod.train_step(s, b, config=rc))
        programs[name] = step.lower(state, {"x": x}).compile()
        print(f"{name}: compiled in {time.perf_counter() - t0:.1f} s", flush=True)
    calls = {name: partial(fn, state, {"x": x}) for name, fn in programs.items()}
    for call in calls.values():
        jax.block_until_ready(call())
    times = interleaved_times(calls, args.repeats)
    count = lambda tree: int(sum(np.prod(a.shape) for a in jax.tree.leaves(tree)))
    sgemm = _sgemm_rate()
    kinds = {}
    for name, fn in programs.items():
        flops, med = float(fn.cost_analysis()["flops"]), float(np.median(times[name]))
        memory = fn.memory_analysis()
        kinds[name] = {
            "flops": flops,
            "median_s": med,
            "times_s": times[name],
            "temp_mib": memory.temp_size_in_bytes / 2**20,
            "argument_mib": memory.argument_size_in_bytes / 2**20,
            "achieved_fraction_of_sgemm": flops / med / 1e9 / sgemm,
        }
    mean_flops = ((k - 1) * kinds["plain"]["flops"] + kinds["with_r1"]["flops"]) / k
    result = {
        "config": args.config,
        "batch": args.batch,
        "lazy_reg": k,
        "params_gen": count(state.gen.params),
        "params_disc": count(state.disc.params),
        "sgemm_gflops": sgemm,
        **kinds,
        "mean_step_flops": mean_flops,
        "paper": {
            "global_batch": global_batch,
            "iterations": iterations,
            "total_flops": mean_flops * global_batch / args.batch * iterations,
        },
    }
    for k, v in result.items():
        print(f"{k}: {v}")
    if args.out:
        name = "ddgan_step_" + args.config.rsplit("/", 1)[-1].removesuffix(".py")
        print(f"wrote {record(name, result)}")


if __name__ == "__main__":
    main()

"""One full-size DDGAN training step on this CPU (docs/methods/ddgan.md §7): the CIFAR-10 config's
networks (README values) at a small batch.

    python -m benchmarks.ddgan_step [--config experiments/configs/ddgan/cifar10.py] [--batch 4]
        [--repeats 5] [--out]

The step is compiled once (the lazy R1 is a `lax.cond`, so one program holds both kinds of
step); the state's step counter picks the branch, so a step with R1 (step 0) and one without
(step 1) are timed from the same executable, warmed up, repeats interleaved, medians. Reported:
parameter counts, XLA's FLOP count of the program (both branches: XLA counts a conditional's
branches once each) and temporary-buffer size (the step's working memory beyond arguments and
outputs), the achieved FLOP rate against this machine's float32 matmul rate, and the paper's
budget: iterations × FLOPs per step at the global batch, scaled linearly from this batch.
"""

import argparse
import importlib.util
import time

import jax
import jax.numpy as jnp
import numpy as np

from benchmarks.common import interleaved_times, record
from benchmarks.glf_fashion import _sgemm_rate
from experiments import cli


def _load(path: str):
    spec = importlib.util.spec_from_file_location("cfg", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.get_config()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--config", default="experiments/configs/ddgan/cifar10.py")
    p.add_argument("--batch", type=int, default=4)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--out", action="store_true")
    args = p.parse_args()
    c = _load(args.config)
    global_batch, iterations = int(c.data.batch_size), int(c.train.num_steps)
    c.data.batch_size = args.batch
    exp = cli.experiment(c)
    mod, rc = exp.recipe, exp.rc
    x = np.random.default_rng(0).uniform(-1, 1, (args.batch, *exp.shape)).astype(np.float32)
    t0 = time.perf_counter()
    state = mod.init(rc, {"x": x}, key=jax.random.PRNGKey(0))
    init_s = time.perf_counter() - t0
    step = jax.jit(lambda s, b: mod.train_step(s, b, config=rc))
    t0 = time.perf_counter()
    compiled = step.lower(state, {"x": x}).compile()
    compile_s = time.perf_counter() - t0
    with_r1, without = state, state.replace(step=jnp.ones((), jnp.int32))
    calls = {
        "with_r1": lambda: compiled(with_r1, {"x": x}),
        "without_r1": lambda: compiled(without, {"x": x}),
    }
    for call in calls.values():
        jax.block_until_ready(call())
    times = interleaved_times(calls, args.repeats)
    count = lambda tree: int(sum(np.prod(a.shape) for a in jax.tree.leaves(tree)))
    flops = float(compiled.cost_analysis()["flops"])
    memory = compiled.memory_analysis()
    sgemm = _sgemm_rate()
    medians = {k: float(np.median(v)) for k, v in times.items()}
    result = {
        "config": args.config,
        "batch": args.batch,
        "params_gen": count(state.gen.params),
        "params_disc": count(state.disc.params),
        "init_s": init_s,
        "compile_s": compile_s,
        "flops_program": flops,
        "temp_mib": memory.temp_size_in_bytes / 2**20,
        "argument_mib": memory.argument_size_in_bytes / 2**20,
        "step_s": medians,
        "times": times,
        "sgemm_gflops": sgemm,
        # the program's count holds both branches: the step with R1 does at most all of it
        "achieved_fraction_with_r1_upper": flops / medians["with_r1"] / 1e9 / sgemm,
        "paper": {
            "global_batch": global_batch,
            "iterations": iterations,
            "total_flops_upper": flops * global_batch / args.batch * iterations,
        },
    }
    for k, v in result.items():
        print(f"{k}: {v}")
    if args.out:
        name = "ddgan_step_" + args.config.rsplit("/", 1)[-1].removesuffix(".py")
        print(f"wrote {record(name, result)}")


if __name__ == "__main__":
    main()

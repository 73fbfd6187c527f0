"""VAEBM's stage-two step on this CPU: the whole `train_step`, the Langevin chain alone (K steps
of ∇_ε E through the frozen decoder and the energy) and the rest (the contrastive loss's forward
and backward on data and negatives, the optimizer), each compiled once and warmed up, interleaved
repeat by repeat, medians; and the compiled step's memory (XLA's buffer assignment).

    python -m benchmarks.vaebm_step --config experiments/configs/vaebm/fashion_mnist.py

The base is the config's default base, freshly initialised (timing does not depend on its
weights); the energy is initialised on a data-shaped batch. Records
`docs/bench/vaebm_step_<data>.json`.
"""

import argparse

import jax
import numpy as np

from benchmarks.common import interleaved_times, record
from experiments import cli
from jaxgen.methods import vaebm
from tools.tpu_compile import load_config


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--config", required=True)
    p.add_argument("--repeats", type=int, default=7)
    a = p.parse_args()
    c = load_config(a.config, [])
    exp = cli.experiment(c)
    cfg, shape, b = exp.rc, exp.shape, c.data.batch_size
    rng = np.random.default_rng(0)
    x = rng.uniform(-1, 1, size=(b, *shape)).astype(np.float32)
    stage = vaebm.CAPABILITIES.base_stage
    base = stage.init_default_base(cfg, {"x": x}, key=jax.random.PRNGKey(3))[2]
    state = vaebm.init(cfg, {"x": x}, key=jax.random.PRNGKey(0), base=base)
    tb = vaebm.tilt_base(cfg, shape)
    m = cfg.method

    step = jax.jit(lambda s, v: vaebm.train_step(s, {"x": v}, config=cfg))
    eps0 = vaebm.fresh_eps(jax.random.PRNGKey(1), b, tb, cfg)
    chain = jax.jit(
        lambda s, e: vaebm.run_chain(
            s.energy.params,
            s.base,
            e,
            jax.random.PRNGKey(2),
            config=cfg,
            base=tb,
            steps=m.langevin_steps,
            eta=m.step_size,
        )[0]
    )
    lowered = step.lower(state, x)
    compiled = lowered.compile()
    mem = compiled.memory_analysis()
    cost = compiled.cost_analysis()
    cost = cost[0] if isinstance(cost, list) else cost
    calls = {
        "train_step": lambda: compiled(state, x)[1]["loss"],
        "chain": lambda: chain(state, eps0),
    }
    for call in calls.values():  # compile and warm up
        jax.block_until_ready(call())
        jax.block_until_ready(call())
    times = interleaved_times(calls, a.repeats)
    med = {k: float(np.median(v)) for k, v in times.items()}
    out = {
        "config": a.config,
        "batch": b,
        "langevin_steps": m.langevin_steps,
        "median_s": med,
        "chain_share": med["chain"] / med["train_step"],
        "per_langevin_step_ms": 1e3 * med["chain"] / m.langevin_steps,
        "flops_step": float(cost.get("flops", float("nan"))) if cost else None,
        "temp_bytes": getattr(mem, "temp_size_in_bytes", None),
        "argument_bytes": getattr(mem, "argument_size_in_bytes", None),
        "times_s": times,
    }
    print(out)
    record(f"vaebm_step_{c.data.name}", out)


if __name__ == "__main__":
    main()

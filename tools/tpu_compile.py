"""Compile an experiment's training step and sampler ahead of time for a TPU topology, on a
machine without TPUs: per-chip memory against HBM, FLOPs, collectives, compile time.

    pip install libtpu==0.0.51   # the TPU compiler; no TPU needed (see docs/tpu.md)
    python -m tools.tpu_compile --config experiments/configs/vapo/cifar10.py \\
        --topology v5e:4x4 [--topology v5e:2x2 ...] [--sample-batch 0] [--out]

The step is the trainer's own: `jaxgen.train.step.make_sharded_step` (guarded, donated, batch
split over `data`, state laid out by `jaxgen.parallel.state_shardings`) on
`jaxgen.parallel.make_mesh(devices=topology.devices)`, with the state from
`Experiment.abstract_state()` (`jax.eval_shape(init)`: nothing is materialised). On a topology
of several hosts the batch is the global array the trainer assembles from each host's slice
(`jax.make_array_from_process_local_data` with the same `data` sharding), so the compiled
program is the one each host runs.

Estimates of step time use FLOPs at a stated fraction of the chip's peak (`--mfu`); they are
estimates, not measurements. Peaks (bf16 dense matmul) and HBM per chip are Google Cloud's
published figures for each TPU generation.
"""

import argparse
import ast
import json
import re
import time
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
from ml_collections import config_flags

from experiments.configs.common import set_field
from jaxgen.parallel import batch_sharding, make_mesh, replicated
from jaxgen.train.step import make_sharded_sampler, make_sharded_step
from tools.records import record

# per chip: HBM (GiB) and peak bf16 matmul TFLOP/s (Google Cloud TPU documentation)
CHIPS = {
    "v4": (32, 275.0),
    "v5e": (16, 197.0),
    "v5p": (95, 459.0),
    "v6e": (32, 918.0),
}
COLLECTIVES = ("all-reduce", "all-gather", "reduce-scatter", "collective-permute", "all-to-all")
DTYPE_BYTES = {"f32": 4, "bf16": 2, "f16": 2, "s32": 4, "u32": 4, "pred": 1, "s8": 1, "u8": 1}


def load_config(path: str, overrides: list[str]):
    """The ConfigDict of a config file with `a.b=value` overrides (as on the CLI)."""
    c = config_flags.config_flags._LoadConfigModule("cfg", path).get_config()  # noqa: SLF001
    for item in overrides:
        key, value = item.split("=", 1)
        try:
            value = ast.literal_eval(value)
        except (ValueError, SyntaxError):
            pass  # a plain string
        set_field(c, key, value)
    return c


def _computations(hlo: str) -> dict:
    """`{name: body text}` of each computation in an HLO module's text."""
    header = re.compile(r"^(?:ENTRY )?%?([\w.\-]+) \(.*\{$", re.M)
    found = list(header.finditer(hlo))
    ends = [m.start() for m in found[1:]] + [len(hlo)]
    return {
        m.group(1): hlo[m.end() : end] for m, end in zip(found, ends[: len(found)], strict=True)
    }


def _loop_computations(comps: dict) -> set:
    """Names of the computations that run inside a while loop: every loop's body and condition,
    and what they call, transitively."""
    called = re.compile(r"(?:body|condition|calls|to_apply)=%?([\w.\-]+)")
    loop = {
        n for text in comps.values() for n in re.findall(r"(?:body|condition)=%?([\w.\-]+)", text)
    }
    todo = list(loop)
    while todo:
        for n in called.findall(comps.get(todo.pop(), "")):
            if n not in loop:
                loop.add(n)
                todo.append(n)
    return loop


def _collective_ops(hlo: str):
    """Each collective of an HLO module as `(kind, result shapes, the rest of its line, in a
    loop)`, an async `-start` once (its `-done` not at all); `in a loop`: inside a while loop's
    body, so it runs once per iteration, not once per step."""
    kinds = "|".join(COLLECTIVES)
    line = re.compile(rf"^\s*(?:ROOT )?\S+ = (.*?) ({kinds})(?:-start)?\((.*)$", re.M)
    comps = _computations(hlo) or {"": hlo}
    loop = _loop_computations(comps)
    for name, text in comps.items():
        for shapes, kind, rest in line.findall(text):
            yield kind, shapes, rest, name in loop


def collectives(hlo: str) -> dict:
    """`{kind: {"count": n, "bytes": total result bytes, "in_loop": n}}` of the collectives in an
    HLO module (`_collective_ops`)."""
    out = {}
    for kind, shapes, _, in_loop in _collective_ops(hlo):
        total = 0
        for dtype, dims in re.findall(r"\b([a-z]+\d*)\[([\d,]*)\]", shapes):
            n = int(np.prod([int(d) for d in dims.split(",") if d])) if dims else 1
            total += n * DTYPE_BYTES.get(dtype, 4)
        entry = out.setdefault(kind, {"count": 0, "bytes": 0, "in_loop": 0})
        entry["count"] += 1
        entry["bytes"] += total
        entry["in_loop"] += in_loop
    return out


def loop_collective_sources(hlo: str) -> list[str]:
    """Each collective inside a while loop's body, as "kind shapes op_name [(file:line)]" from its
    HLO metadata (the source line where XLA keeps it inline): which operation of the traced
    program is reduced once per loop iteration."""
    meta = re.compile(r'op_name="([^"]*)"(?:.*?source_file="([^"]*)" source_line=(\d+))?')
    found = []
    for kind, shapes, rest, in_loop in _collective_ops(hlo):
        if not in_loop:
            continue
        m = meta.search(rest)
        where = m.group(1) if m else "(no metadata)"
        where += f" ({m.group(2)}:{m.group(3)})" if m and m.group(2) else ""
        found.append(f"{kind} {shapes} {where}")
    return found


def _placed(tree, shardings):
    return jax.tree.map(
        lambda a, s: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=s), tree, shardings
    )


def _analysis(compiled, seconds: float) -> dict:
    mem, hlo = compiled.memory_analysis(), compiled.as_text()
    cost = compiled.cost_analysis()
    cost = cost[0] if isinstance(cost, list | tuple) else cost
    return {
        "compile_s": seconds,
        "argument_mib": mem.argument_size_in_bytes / 2**20,
        "output_mib": mem.output_size_in_bytes / 2**20,
        "alias_mib": mem.alias_size_in_bytes / 2**20,
        "temp_mib": mem.temp_size_in_bytes / 2**20,
        "code_mib": mem.generated_code_size_in_bytes / 2**20,
        "tflop_per_chip": float(cost.get("flops", float("nan"))) / 1e12,
        "collectives": collectives(hlo),
        "collectives_in_loop": loop_collective_sources(hlo),
    }


def compile_for(c, topology: str, *, sample_batch: int) -> dict:
    """Compile the train step (and the sampler when `sample_batch` > 0) of config `c`."""
    from jax.experimental import topologies

    topo = topologies.get_topology_desc(platform="tpu", topology_name=topology)
    devices = list(topo.devices)
    exp = experiment_for(c, len(devices))
    mesh = make_mesh(devices=devices)
    abstract = exp.abstract_state()
    shardings = exp.state_sharding(mesh, abstract)
    state = _placed(abstract, shardings)
    b = c.data.batch_size
    data = batch_sharding(mesh)
    batch = {"x": jax.ShapeDtypeStruct((b, *exp.shape), jnp.float32, sharding=data)}
    if not exp.toy2d:
        batch["label"] = jax.ShapeDtypeStruct((b,), jnp.int32, sharding=data)
    step = make_sharded_step(
        partial(exp.recipe.train_step, config=exp.rc), mesh, state_sharding=shardings
    )
    t = time.perf_counter()
    compiled = step.lower(state, batch).compile()
    row = {"topology": topology, "chips": len(devices), "hosts": _hosts(devices), "batch": b}
    row["train_step"] = _analysis(compiled, time.perf_counter() - t)
    if sample_batch:
        row["sample"] = _compile_sampler(exp, mesh, abstract, sample_batch)
    kind = topology.split(":")[0]
    hbm, peak = CHIPS.get(kind, (float("nan"), float("nan")))
    row.update(hbm_gib=hbm, peak_bf16_tflops=peak)
    return row


def experiment_for(c, num_devices: int):
    """The run's `Experiment`, checked for the topology's device count instead of this host's."""
    c.train.num_devices = 0
    if c.data.batch_size % num_devices:
        raise SystemExit(
            f"data.batch_size={c.data.batch_size} is not divisible by the {num_devices} chips"
        )
    from experiments.experiment import Experiment

    return Experiment(c)


def _hosts(devices) -> int:
    return len({getattr(d, "process_index", 0) for d in devices})


def _compile_sampler(exp, mesh, abstract, num: int) -> dict:
    # the CLI's sampler: traced under the mesh, its draws split over the devices
    fn = make_sharded_sampler(partial(exp.recipe.sample, config=exp.rc, shape=exp.shape), mesh)
    state = _placed(abstract, jax.tree.map(lambda _: replicated(mesh), abstract))
    key = jax.ShapeDtypeStruct((2,), jnp.uint32, sharding=replicated(mesh))
    t = time.perf_counter()
    compiled = fn.lower(state, num, key).compile()
    return {"num": num, **_analysis(compiled, time.perf_counter() - t)}


def estimate(row: dict, *, num_steps: int, mfu: float) -> dict:
    """Step time and whole-run time from FLOPs at `mfu` × the chip's bf16 peak (an estimate)."""
    step_s = row["train_step"]["tflop_per_chip"] / (mfu * row["peak_bf16_tflops"])
    return {"mfu": mfu, "step_s": step_s, "run_hours": step_s * num_steps / 3600}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--config", required=True)
    ap.add_argument("--topology", action="append", required=True, help="e.g. v5e:4x4")
    ap.add_argument("--set", action="append", default=[], help="config override a.b=value")
    ap.add_argument("--sample-batch", type=int, default=0, help="also compile the sampler")
    ap.add_argument("--mfu", type=float, default=0.3, help="fraction of peak for the estimate")
    ap.add_argument("--out", action="store_true", help="record to docs/bench/")
    args = ap.parse_args()
    rows = []
    for topology in args.topology:
        c = load_config(args.config, args.set)
        row = compile_for(c, topology, sample_batch=args.sample_batch)
        row["estimate"] = estimate(row, num_steps=c.train.num_steps, mfu=args.mfu)
        row["config"], row["overrides"] = args.config, args.set
        rows.append(row)
        print(json.dumps(row, indent=1, default=float), flush=True)
    if args.out:
        name = args.config.split("configs/")[-1].removesuffix(".py").replace("/", "_")
        print("wrote", record(f"tpu_compile_{name}", {"rows": rows}))


if __name__ == "__main__":
    main()

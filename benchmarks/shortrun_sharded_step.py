"""The short-run EBM's train step on 8 simulated devices, with its chain starts split over the
devices (`batch_normal`, since 2026-12-07) against drawn whole on every device (before): the
swiss-roll MLP (3 × 48), K Langevin steps, global batch 512.

    python -m benchmarks.shortrun_sharded_step [--repeats 7] [--out]

Both programs are compiled and warmed up first, then timed interleaved (`interleaved_times`),
medians reported; the rows per device of each program's matmuls are read from its HLO.
"""

import argparse
import os

os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=8")

from functools import partial  # noqa: E402

import jax  # noqa: E402
import numpy as np  # noqa: E402

from benchmarks.common import interleaved_times, record  # noqa: E402
from jaxgen.methods import shortrun_ebm  # noqa: E402
from jaxgen.methods.common import replace_fields  # noqa: E402
from jaxgen.parallel import make_mesh, replicated  # noqa: E402
from jaxgen.train.step import make_sharded_step  # noqa: E402

BATCH, WIDTH = 512, 48


def build(cfg, state, batch, mesh, *, split: bool):
    """The compiled step, with the chain starts split (`split`) or drawn whole per device."""
    draw = shortrun_ebm.batch_normal if split else jax.random.normal
    saved = shortrun_ebm.batch_normal
    shortrun_ebm.batch_normal = draw
    try:
        step = make_sharded_step(partial(shortrun_ebm.train_step, config=cfg), mesh, donate=False)
        compiled = step.lower(state, batch).compile()
    finally:
        shortrun_ebm.batch_normal = saved
    hlo = compiled.as_text()
    import re

    rows = {int(r) for r in re.findall(rf"= f32\[(\d+),{WIDTH}\]\{{[^}}]*\}} dot\(", hlo)}
    return compiled, sorted(r for r in rows if r % (BATCH // 8) == 0 and r != WIDTH)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--steps", type=int, default=40, help="K")
    ap.add_argument("--out", action="store_true")
    args = ap.parse_args()
    cfg = replace_fields(
        shortrun_ebm.Config(), {"model.hidden": (WIDTH,) * 3, "method.langevin_steps": args.steps}
    )
    x = np.random.default_rng(0).normal(size=(BATCH, 2)).astype(np.float32)
    state = shortrun_ebm.init(cfg, {"x": x}, key=jax.random.PRNGKey(0))
    mesh = make_mesh(8)
    state = jax.device_put(state, replicated(mesh))
    calls, rows = {}, {}
    for name, split in (("whole batch per device (before)", False), ("split (after)", True)):
        compiled, rows[name] = build(cfg, state, {"x": x}, mesh, split=split)
        calls[name] = partial(compiled, state, {"x": x})
        jax.block_until_ready(calls[name]())  # warm up
    times = interleaved_times(calls, args.repeats)
    result = {
        name: {"median_s": float(np.median(t)), "times_s": t, "rows_per_device": rows[name]}
        for name, t in times.items()
    }
    for name, r in result.items():
        print(f"{name}: {r['median_s'] * 1e3:.1f} ms per step, matmul rows {r['rows_per_device']}")
    if args.out:
        meta = {"batch": BATCH, "width": WIDTH, "K": args.steps, "devices": 8}
        print(f"wrote {record('shortrun_sharded_step', {**meta, 'rows': result})}")


if __name__ == "__main__":
    main()

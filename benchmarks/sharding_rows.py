"""Rows per device of every recipe's compiled train step and CLI sampler on 8 simulated devices
(the table of docs/results.md, "Recipe kit: draws split over the devices").

    python -m benchmarks.sharding_rows [--out]

Global batch 96 over 8 devices: a program that splits its work sees 12 rows (24 where real and
generated examples are stacked) in every activation-sized matmul or convolution; one that runs
the global batch on every device shows 96. Reads the compiled HLO with `tools.hlo_rows`, as
`tests/test_sharding_rows.py` does. On a checkout without `make_sharded_sampler` (before
2026-12-07) the sampler is compiled the way the CLI did then: `sample(..., sharding=)` where the
recipe declared it, a plain `jit` otherwise.
"""

import argparse
import os

os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=8")

import jax  # noqa: E402

from benchmarks.common import record  # noqa: E402
from jaxgen.methods import RECIPES  # noqa: E402
from jaxgen.parallel import batch_sharding, make_mesh, replicated  # noqa: E402
from tools.hlo_rows import BATCH, DEVICES, activation_rows, setup, step_rows  # noqa: E402


def cli_sampler_rows(name: str) -> set[int]:
    from functools import partial

    recipe, cfg, state, _, shape = setup(name)
    mesh = make_mesh(DEVICES)
    state = jax.device_put(state, replicated(mesh))
    key = jax.random.PRNGKey(1)
    try:
        from jaxgen.train.step import make_sharded_sampler
    except ImportError:  # the CLI's path before make_sharded_sampler
        kw = dict(shape=shape)
        if recipe.CAPABILITIES.sample_sharding:
            kw["sharding"] = batch_sharding(mesh)
        fn = jax.jit(partial(recipe.sample, config=cfg, **kw), static_argnums=1)
        return activation_rows(fn.lower(state, BATCH, key=key).compile().as_text())
    fn = make_sharded_sampler(partial(recipe.sample, config=cfg, shape=shape), mesh)
    return activation_rows(fn.lower(state, BATCH, key).compile().as_text())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="", help="record as docs/bench/<OUT>.json")
    args = ap.parse_args()
    rows = {}
    print("| recipe | train step: rows per device | sampler: rows per device |")
    print("|---|---|---|")
    for name in sorted(RECIPES):
        rows[name] = {
            "train_step": sorted(step_rows(name, DEVICES)),
            "sampler": sorted(cli_sampler_rows(name)),
        }
        print(f"| {name} | {rows[name]['train_step']} | {rows[name]['sampler']} |", flush=True)
    if args.out:
        print(f"wrote {record(args.out, {'batch': BATCH, 'devices': DEVICES, 'rows': rows})}")


if __name__ == "__main__":
    main()

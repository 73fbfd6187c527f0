"""FD against the number of test flow steps K + κ on a trained FDRL image run (the paper's Fig. 5:
best near κ = 20, then worse; docs/methods/fdrl.md §5).

    python -m benchmarks.fdrl_kappa --workdir runs/fdrl_fmnist [--num 2000] [--kappa 0 5 10 20 50]
    python -m benchmarks.fdrl_kappa --workdir runs/fdrl_fmnist --steps 0 5 10 20 40 --record-as NAME

`--steps` gives absolute flow depths instead of K + κ; depth 0 scores the prior's draws
themselves (the prior-only control: what the fitted prior does without the learned flow).

One flow of K + max κ steps per chunk of prior draws, with every g-th iterate kept (g the
greatest common divisor of the step counts), so each κ is scored on the same particles at a
different depth: FD-<dataset>, KID and precision/recall in the project's features against the
run's reference statistics, as `experiments.evaluate` computes them (samples clamped to [-1, 1]
and quantised to 8 bits first). The EMA network, as in sampling. Writes
`docs/figures/fdrl_<dataset>_kappa.png` (FD against K + κ, and a row of samples per κ) and
`docs/bench/fdrl_<dataset>_kappa.json`.
"""

import argparse
import math
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np

from benchmarks.common import RESULTS, record
from benchmarks.vapo_t_sweep import run_config
from experiments import cli
from experiments import protocol as protocol_lib
from experiments.experiment import workdir_paths
from jaxgen.methods import fdrl
from jaxgen.metrics import kernel_inception_distance, precision_recall
from jaxgen.train.figures import save_image_rows


def flow_depths(state, key, *, config, shape, num, total, every):
    """Prior draws `[num, *shape]` flowed `total` steps: the iterates `[total // every + 1, num,
    *shape]` (x_0 and every `every`-th), clamped as the final samples are."""
    k_prior, k_flow = jax.random.split(key)
    x0 = fdrl.sample_prior(state, num, shape, k_prior, config=config)
    _, stats = fdrl.flow_from(
        state, x0, config=config, key=k_flow, num_steps=total, save_every=every
    )
    path = stats["path"]
    return jnp.clip(path, -1.0, 1.0) if config.method.clip else path


def score(c, x, net, name, ref, ref_feats):
    x = protocol_lib.unpad(c, protocol_lib.dequantise(protocol_lib.quantise(x)))
    feats = net.features(x)
    kid, _ = kernel_inception_distance(
        feats, ref_feats, num_subsets=50, subset_size=min(len(x), 1000)
    )
    pr = precision_recall(ref_feats[: len(x)], feats, k=3)
    return {name: protocol_lib.frechet_to_reference(feats, ref), "kid": kid, **pr}


def _figure(path, rows, strips, name):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(4.5, 3.2))
    ax.plot([r["flow_steps"] for r in rows], [r[name] for r in rows], "o-")
    ax.set_xlabel("test flow steps K + κ")
    ax.set_ylabel(name)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    save_image_rows(path.with_name(path.stem + "_samples.png"), np.stack(strips), scale=2)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--workdir", required=True)
    ap.add_argument("--num", type=int, default=2000)
    ap.add_argument("--chunk", type=int, default=500)
    ap.add_argument("--kappa", type=int, nargs="+", default=[0, 5, 10, 20, 30, 50])
    ap.add_argument("--steps", type=int, nargs="+", help="absolute flow depths (0: the prior)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--record-as", default="", help="name of the record and figure")
    args = ap.parse_args()
    c = run_config(args.workdir)
    exp = cli.experiment(c)
    state, _ = exp.restore_latest(args.workdir)
    k = exp.rc.method.flow_steps
    steps = sorted(set(args.steps) if args.steps else {k + kappa for kappa in args.kappa})
    if steps[0] < 0:
        raise SystemExit(f"error: flow depths must be >= 0, got {steps[0]}")
    every = math.gcd(*steps)
    fn = jax.jit(
        partial(
            flow_depths,
            config=exp.rc,
            shape=exp.shape,
            num=args.chunk,
            total=steps[-1],
            every=every,
        )
    )
    chunks = []
    for i in range(-(-args.num // args.chunk)):
        path = fn(state, jax.random.fold_in(jax.random.PRNGKey(args.seed), i))
        chunks.append(np.asarray(path)[[s // every for s in steps]])
        print(f"chunk {i + 1}: {steps[-1]} flow steps", flush=True)
    depths = np.concatenate(chunks, axis=1)[:, : args.num]
    net, name, reason = protocol_lib.feature_network(c)
    if net is None:
        raise SystemExit(f"error: no feature network for {c.data.name}: {reason}")
    ref, ref_feats = protocol_lib.reference(c, net, workdir_paths(args.workdir)["eval"])
    rows, strips = [], []
    for s, x in zip(steps, depths, strict=True):
        rows.append({"kappa": s - k, "flow_steps": s, **score(c, x, net, name, ref, ref_feats)})
        strips.append(x[:10])
        print(
            {a: round(b, 4) if isinstance(b, float) else b for a, b in rows[-1].items()}, flush=True
        )
    stem = args.record_as or f"fdrl_{c.data.name}_kappa"
    fig = RESULTS.parent / "figures" / f"{stem}.png"
    _figure(fig, rows, strips, name)
    payload = {"workdir": args.workdir, "step": int(state.step), "num_samples": args.num}
    record(stem, {**payload, "train_flow_steps": k, "rows": rows})
    print(f"figure: {fig}")


if __name__ == "__main__":
    main()

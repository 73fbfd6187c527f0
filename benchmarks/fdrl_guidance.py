"""FDRL class-guided Fashion-MNIST samples (docs/methods/fdrl.md §4.1): for each of the 10
classes, guided draws from a trained run, and how often an independent classifier names the
wanted class, against the unguided draws' rate.

    python -m benchmarks.fdrl_guidance --workdir runs/fdrl_fmnist [--per_class 100] [--phi 1]

The guiding classifier is the in-project FD-fashion_mnist extractor's logits
(`jaxgen.metrics.load_extractor("fashion_mnist")`); the accuracy is measured by the other,
independently trained check extractor (`check=True`), so a sample that only fools the guide
does not count. The unguided rate of class n is the fraction of plain samples the check
classifier assigns to n (≈ 10% for a model that covers every class evenly). Writes
`DIR/guidance/grid_phi<φ>.png` (one row per class) and, with `--out`, docs/bench/fdrl_guidance.json.
"""

import argparse
import json
from pathlib import Path

import jax
import numpy as np

from benchmarks.common import record
from benchmarks.vapo_t_sweep import run_config
from experiments.protocol import unpad
from jaxgen.methods.fdrl_applications import guided_sample
from jaxgen.metrics import load_extractor
from jaxgen.train.figures import save_image_grid


def main() -> None:
    from experiments import cli

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--workdir", required=True)
    p.add_argument("--per_class", type=int, default=100)
    p.add_argument("--phi", type=float, default=1.0)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", action="store_true")
    p.add_argument("--record-as", default="fdrl_guidance", help="name of the --out record")
    args = p.parse_args()
    c = run_config(args.workdir)  # the run's own config.json
    exp = cli.experiment(c)
    state, meta = exp.restore_latest(args.workdir)
    guide_net, judge = load_extractor("fashion_mnist"), load_extractor("fashion_mnist", check=True)
    logits = guide_net.logits_fn()
    classifier = lambda x: logits(unpad(c, x))  # [B, 10] logits of the 28×28 images
    draw = jax.jit(
        lambda s, label, key: guided_sample(
            s,
            args.per_class,
            label,
            classifier,
            config=exp.rc,
            key=key,
            shape=exp.shape,
            phi=args.phi,
        ),
        static_argnums=1,
    )
    rows, grid = {}, []
    key = jax.random.PRNGKey(args.seed)
    for label in range(10):
        x, _ = draw(state, label, jax.random.fold_in(key, label))
        x = np.asarray(x)
        predicted = judge.logits(unpad(c, x)).argmax(axis=1)
        rows[label] = float(np.mean(predicted == label))
        grid.append(x[:10])
        print(
            f"class {label}: {rows[label]:.1%} of guided samples classified as {label}", flush=True
        )
    plain, _ = exp.draw(state, 10 * args.per_class, seed=args.seed + 1)
    plain_classes = judge.logits(unpad(c, plain)).argmax(axis=1)
    unguided = {n: float(np.mean(plain_classes == n)) for n in range(10)}
    out = Path(args.workdir) / "guidance"
    out.mkdir(exist_ok=True)
    grid_path = out / f"grid_phi{args.phi:g}.png"
    save_image_grid(grid_path, np.concatenate(grid), ncol=10, scale=2)
    result = {
        "workdir": args.workdir,
        "checkpoint_step": int(meta.get("step", state.step)),
        "phi": args.phi,
        "per_class": args.per_class,
        "flow_steps": exp.rc.method.flow_steps + exp.rc.sample.refine_steps,
        "guided_accuracy": rows,
        "guided_accuracy_mean": float(np.mean(list(rows.values()))),
        "unguided_rate": unguided,
        "judge": judge.name,
        "grid": str(grid_path),
    }
    print(json.dumps(result, indent=1))
    if args.out:
        record(args.record_as, result)


if __name__ == "__main__":
    main()

"""FDRL unpaired translation on a trained run (docs/methods/fdrl.md §4.2): FD of the translated
source test images to the target group and to the source group, beside the same distances of
the untranslated images (a translation should move from the second towards the first).

    python -m benchmarks.fdrl_translation --workdir runs/fdrl_tops2trousers [--num 1000]

The run's config is read from `WORKDIR/config.json`. FD-<dataset> and KID in the project's
features, against each group's training images (`data.classes` for the target,
`data.source_classes` for the source), the samples quantised to 8 bits first as in
`experiments.evaluate`. Writes `docs/figures/fdrl_<run>_translation.png` (pairs of rows:
source images, their translations) and `docs/bench/fdrl_<run>_translation.json`.
"""

import argparse
import copy
from pathlib import Path

import numpy as np

from benchmarks.common import RESULTS, record
from benchmarks.vapo_t_sweep import run_config
from experiments import cli
from experiments import protocol as protocol_lib
from experiments.experiment import workdir_paths
from jaxgen.metrics import kernel_inception_distance
from jaxgen.train.figures import save_image_rows


def _group(c, name: str, classes):
    g = copy.deepcopy(c)
    g.data.name, g.data.classes = name, tuple(classes)
    return g


def distances(c, x, net, groups: dict, out: Path) -> dict:
    """FD and KID of images `x` to each group's training images (`groups`: name → config)."""
    feats = net.features(protocol_lib.unpad(c, protocol_lib.dequantise(protocol_lib.quantise(x))))
    row = {}
    for name, g in groups.items():
        ref, ref_feats = protocol_lib.reference(g, net, out)
        n = min(len(feats), len(ref_feats), 1000)
        kid, _ = kernel_inception_distance(feats, ref_feats, num_subsets=50, subset_size=n)
        row[f"fd_to_{name}"] = protocol_lib.frechet_to_reference(feats, ref)
        row[f"kid_to_{name}"] = kid
    return row


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--workdir", required=True)
    ap.add_argument("--num", type=int, default=1000)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    c = run_config(args.workdir)
    exp = cli.experiment(c)
    if not exp.translating:
        raise SystemExit(f"error: {args.workdir} is not a translation run (no data.source)")
    state, _ = exp.restore_latest(args.workdir)
    source = exp.source_images(args.num, seed=args.seed)
    translated, stats = exp.translate(state, source, seed=args.seed)
    net, _, reason = protocol_lib.feature_network(c)
    if net is None:
        raise SystemExit(f"error: no feature network for {c.data.name}: {reason}")
    groups = {
        "target": _group(c, c.data.name, c.data.classes),
        "source": _group(c, c.data.source, c.data.source_classes),
    }
    out = workdir_paths(args.workdir)["eval"]
    out.mkdir(parents=True, exist_ok=True)
    rows = {
        "untranslated": distances(c, source, net, groups, out),
        "translated": distances(c, translated, net, groups, out),
    }
    for name, row in rows.items():
        print(name, {k: round(v, 3) for k, v in row.items()}, flush=True)
    run = Path(args.workdir).name
    fig = RESULTS.parent / "figures" / f"fdrl_{run}_translation.png"
    save_image_rows(
        fig, np.stack([source[:10], translated[:10], source[10:20], translated[10:20]]), scale=2
    )
    payload = {
        "workdir": args.workdir,
        "step": int(state.step),
        "num": args.num,
        "flow_steps": stats["nfe_mean"],
        "target": {"data": c.data.name, "classes": list(c.data.classes)},
        "source": {"data": c.data.source, "classes": list(c.data.source_classes)},
        **rows,
    }
    record(f"fdrl_{run}_translation", payload)
    print(f"figure: {fig}")


if __name__ == "__main__":
    main()

"""Model selection during training (VAPO's protocol, docs/methods/vapo.md §5.5): every
`train.select_every` steps, the FD (or FID) of `train.select_samples` EMA samples; the best
state is kept in `DIR/best/` and every evaluation is appended to `DIR/selection.jsonl`."""

import json
import math
from pathlib import Path

import jax
import numpy as np
from jax.experimental import multihost_utils

from experiments import protocol as protocol_lib
from experiments.experiment import Experiment, workdir_paths
from jaxgen.methods.common import ConfigError
from jaxgen.parallel import is_primary


def best_so_far(log: Path, name: str) -> float:
    """The smallest score recorded in `log` (inf when there is none), so a resumed run keeps it."""
    if not log.exists():
        return math.inf
    rows = [json.loads(line) for line in log.read_text().splitlines() if line.strip()]
    return min((r[name] for r in rows), default=math.inf)


def selection_hook(exp: Experiment, workdir: str):
    """`(every, callback)` for `fit(hooks=...)`; `None` when `train.select_every` is 0."""
    c = exp.c
    if not c.train.select_every:
        return None
    if exp.toy2d:
        raise ConfigError("config.train.select_every: model selection needs an image data set")
    net, name, why = protocol_lib.feature_network(c)
    if net is None:
        raise ConfigError(f"config.train.select_every: {name} {why}")
    paths = workdir_paths(workdir)
    log, best_dir = paths["root"] / "selection.jsonl", paths["root"] / "best"
    ref, _ = protocol_lib.reference(c, net, paths["eval"])
    best = {"score": best_so_far(log, name)}

    def callback(state, step: int):
        x, stats = exp.draw(state, c.train.select_samples, seed=c.seed + 7)
        feats = net.features(
            protocol_lib.unpad(c, protocol_lib.dequantise(protocol_lib.quantise(x)))
        )
        score = protocol_lib.frechet_to_reference(feats, ref)
        if jax.process_count() > 1:  # process 0's score decides on every process
            score = float(multihost_utils.broadcast_one_to_all(np.float64(score)))
        row = {"step": step, name: score, "num_samples": len(x), "nfe": stats.get("nfe_mean")}
        if is_primary():  # every process computes the same score, so all decide alike
            with open(log, "a") as f:
                f.write(json.dumps(row) + "\n")
        if score < best["score"] and np.isfinite(score):
            best["score"] = score
            store = exp.checkpoints(best_dir, workdir, max_to_keep=1)
            store.save(step, state, {"recipe": c.recipe, name: score})
            store.close()

    return c.train.select_every, callback

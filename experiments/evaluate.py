"""Evaluate a trained run: `python -m experiments.evaluate --config C --workdir DIR`.

Computes the metrics listed in `config.eval.metrics` on `eval.num_samples` samples (EMA weights
unless `eval.ema=False`) and writes `DIR/eval/metrics.json` (with the protocol: sample count,
sampler statistics, checkpoint step, feature network) and `DIR/eval/metrics.md`.
`--step N` evaluates checkpoint N instead of the newest and writes to `DIR/eval/step_N/`.

A missing or bad FID weights file (`eval.inception_weights` / `$JAXGEN_INCEPTION_WEIGHTS`)
disables FID with one warning line and the other metrics still run; missing data that a chosen
metric needs, or a config that is not the run's (`experiments.resume.check_sampling`;
`--config.eval.allow_changes` accepts a deliberate change), stops the evaluation before any
sample is drawn.
"""

import json
import sys
import time
from pathlib import Path

import numpy as np

from experiments import cli, evaluators
from experiments import protocol as protocol_lib
from experiments.experiment import Experiment
from experiments.resume import checked_restore
from jaxgen.data import IMAGE_NAMES, OOD_NAMES, check_images_available
from jaxgen.methods.common import ConfigError, config_to_dict
from jaxgen.metrics.inception_weights import InceptionWeightsError
from jaxgen.train.lock import WorkdirLock


def available_metrics(exp: Experiment) -> tuple[str, ...]:
    """The metrics this data set and the recipe's declared capabilities support
    (`experiments.evaluators.EVALUATORS`)."""
    return evaluators.available("toy2d" if exp.toy2d else "image", exp.caps)


def chosen_metrics(exp: Experiment) -> list[str]:
    c, available = exp.c, available_metrics(exp)
    metrics = [m for m in c.eval.metrics if m != "default"] or list(available)
    unknown = [m for m in metrics if m not in available]
    if unknown:
        raise ConfigError(
            f"config.eval.metrics: {unknown} not available for {c.data.name} with {c.recipe}; "
            f"available: {list(available)}"
        )
    for name in c.eval.ood_sets if "ood" in metrics else ():
        if name not in OOD_NAMES:
            raise ConfigError(
                f"config.eval.ood_sets: unknown set {name!r}; choose from {list(OOD_NAMES)}"
            )
    return metrics


def check_data(c, metrics) -> None:
    """Stop (`DatasetMissingError`, one line) before sampling when a chosen metric needs data
    that is not on this machine: the run's splits, and the data sets among `eval.ood_sets`."""
    splits = {split for m in metrics for split in evaluators.EVALUATORS[m].splits}
    needed = {(c.data.name, split) for split in splits}
    if "ood" in metrics:
        needed |= {(name, "test") for name in c.eval.ood_sets if name in IMAGE_NAMES}
    for name, split in sorted(needed):
        check_images_available(name, split, data_dir=c.data.data_dir or None)


def feature_network(c):
    """`protocol.feature_network(c)`, with a bad Inception weights file treated like a missing
    one: `(None, "fid", "unavailable: <what is wrong with which file>")`. When the network is
    unavailable, prints one warning line; the other metrics still run."""
    try:
        net, name, why = protocol_lib.feature_network(c)
    except InceptionWeightsError as e:  # not the weights: the same as no weights
        net, name, why = None, "fid", f"unavailable: {e}"
    if net is None:
        print(f"warning: {name} {why}; the other metrics still run", file=sys.stderr)
    return net, name, why


def _image_scores(exp: Experiment, state, metrics, out, *, seed: int, protocol: dict, ref_dir):
    """`(sampler stats, scores)` of the image protocol: rounds (in `out`), then the feature
    metrics (the reference statistics cached in `ref_dir`, shared by every step's evaluation)."""
    c = exp.c
    net, fd_name, why = feature_network(c) if "fd" in metrics else (None,) * 3
    check = protocol_lib.check_network(c) if net is not None else None
    if net is not None:
        protocol["feature_network"] = {"name": net.name, "hash": net.hash}
        protocol_lib.reference(c, net, ref_dir)  # the reference split's statistics, cached first
    if check is not None:  # named in the protocol, so these rounds get their own fingerprint
        protocol["check_network"] = {"name": check.name, "hash": check.hash}
        protocol_lib.reference(c, check, ref_dir)
    protocol["round_size"] = int(c.eval.round_size)
    rounds = protocol_lib.sample_rounds(
        exp, state, net, out, seed=seed, protocol=protocol, check=check
    )
    stats = rounds.sampler_stats(exp.caps.sampler_stats)
    x = protocol_lib.dequantise(rounds.cat("samples"))
    scores = evaluators.run([m for m in metrics if m != "fd"], exp, state, x, out, seed=seed)
    if "fd" in metrics:
        scores["fd"] = (
            protocol_lib.feature_metrics(c, net, fd_name, rounds, ref_dir, check=check)
            if net is not None
            else {fd_name: why}  # the one-line reason it is unavailable
        )
    return stats, scores


def evaluate(config, workdir: str, *, seed: int = 1, step: int | None = None) -> dict:
    """Evaluate the newest checkpoint of `workdir`, or checkpoint `step` (`config`: an
    experiment ConfigDict or its `Experiment`); writes and returns `eval/metrics.json`'s
    content (`eval/step_<step>/metrics.json` for a given step)."""
    exp = cli.as_experiment(config)
    c = exp.c
    metrics = chosen_metrics(exp)
    if not exp.toy2d:
        check_data(c, metrics)  # before the checkpoint is read or any sample drawn
    # the run the config describes (`check_sampling`), before anything is drawn or written
    state, _ = checked_restore(exp, workdir, step, what="evaluate")
    out = eval_dir(workdir, step)
    out.mkdir(parents=True, exist_ok=True)
    # one evaluation per output folder: a second one at the same time would redo every round
    with WorkdirLock(out, name=".lock", say=lambda *_: None):
        return _evaluate_into(exp, state, out, workdir, metrics, seed)


def _evaluate_into(exp: Experiment, state, out: Path, workdir, metrics, seed: int) -> dict:
    """`evaluate`'s work on the restored `state`, written to `out` (whose lock it holds)."""
    c = exp.c
    protocol = {
        "num_samples": int(c.eval.num_samples),
        "checkpoint_step": int(state.step),
        "ema": bool(c.eval.ema),
        "recipe": c.recipe,
        "config": config_to_dict(exp.rc),
        "nfe_counts": exp.caps.nfe,
        "seed": seed,
    }
    t0 = time.perf_counter()
    if exp.toy2d:
        x, stats = exp.draw(state, c.eval.num_samples, seed=seed, use_ema=c.eval.ema)
        scores = evaluators.run(metrics, exp, state, x, out, seed=seed)
        np.save(out / "samples.npy", x)
    else:
        ref_dir = eval_dir(workdir)
        ref_dir.mkdir(parents=True, exist_ok=True)
        stats, scores = _image_scores(
            exp, state, metrics, out, seed=seed, protocol=protocol, ref_dir=ref_dir
        )
    result = {
        "protocol": protocol,
        "sampler_stats": stats,
        "seconds": time.perf_counter() - t0,
        **scores,
    }
    (out / "metrics.json").write_text(json.dumps(result, indent=1, default=str))
    (out / "metrics.md").write_text(metrics_table(result))
    return result


def eval_dir(workdir: str, step: int | None = None) -> Path:
    """Where `evaluate` writes: `DIR/eval/`, or `DIR/eval/step_<step>/` for a chosen step."""
    out = cli.workdir_paths(workdir)["eval"]
    return out if step is None else out / f"step_{step}"


def metrics_table(result: dict) -> str:
    """A two-column markdown table of every scalar in `result` (nested keys joined by '.')."""
    rows = []

    def walk(prefix, v):
        if isinstance(v, dict):
            for k, sub in v.items():
                walk(f"{prefix}.{k}" if prefix else k, sub)
        elif isinstance(v, float):
            rows.append((prefix, f"{v:.4g}"))
        elif isinstance(v, (int, str, bool)):
            rows.append((prefix, str(v)))

    walk("", {k: v for k, v in result.items() if k != "protocol"})
    walk("protocol", {k: v for k, v in result["protocol"].items() if k != "config"})
    lines = ["| metric | value |", "|---|---|", *(f"| {k} | {v} |" for k, v in rows)]
    return "\n".join(lines) + "\n"


def main(argv):
    from absl import flags

    def run():
        exp = cli.parse_flags(argv, cluster=False)
        workdir = flags.FLAGS.workdir
        if workdir is None:
            raise ConfigError("--workdir is required")
        step = flags.FLAGS.step
        if step is not None and step < 0:
            raise ConfigError(f"--step must be a checkpoint step >= 0, got {step}")
        where = eval_dir(workdir, step)
        with cli.stop_on_sigterm(
            f"evaluation stopped; the finished rounds are kept in {where}; run the same "
            "command to resume"
        ):
            result = evaluate(exp, workdir, step=step)
        print(metrics_table(result), end="")
        print(f"written: {eval_dir(workdir, step) / 'metrics.json'}")

    cli.run_main(run)


if __name__ == "__main__":
    cli.define_common_flags()
    from absl import flags

    flags.DEFINE_integer("step", None, "evaluate this checkpoint step (default: the newest)")
    main(sys.argv)

"""GLF on Fashion-MNIST: the variants' report and the training step's throughput.

    python -m benchmarks.glf_fashion report glf=runs/glf reg400=runs/reg [...] [--tag T] [--out]
    python -m benchmarks.glf_fashion throughput [--repeats 7] [--out]

`report` reads each run's `metrics.jsonl` and `eval/metrics.json` (written by
`python -m experiments.evaluate`), prints the table (FD-fashion_mnist, KID, precision /
recall, FD in the check extractor, test reconstruction error, training time) and plots the
latent norm, log-det, NLL and reconstruction curves (`docs/figures/glf_fashion_curves.png`;
with `--tag T`, `glf_fashion_curves_T.png` and `docs/bench/glf_fashion_T.json`, so runs reported
at another time keep the earlier report).

`throughput` times the GLF training step of `experiments/configs/glf/fashion_mnist.py` (batch
256) with the recipe's sub-pixel deconvolution against the zero-dilated convolution that
`flax.linen.ConvTranspose` computes (the same function and parameters: the two steps' metrics
are compared), both compiled and warmed up, repeats interleaved, medians, with XLA's FLOP
count against this machine's float32 matmul rate.
"""

import argparse
import json
import time
from functools import partial
from pathlib import Path

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from benchmarks.common import interleaved_times, record
from jaxgen.methods import glf
from jaxgen.train.figures import save_curves

CURVES = ("latent_norm", "log_det", "nll", "loss_rec")
FIGURE = Path(__file__).resolve().parents[1] / "docs" / "figures" / "glf_fashion_curves.png"


def read_run(workdir: Path) -> dict:
    rows = [json.loads(x) for x in (workdir / "metrics.jsonl").read_text().splitlines()]
    evaluation = json.loads((workdir / "eval" / "metrics.json").read_text())
    config = json.loads((workdir / "config.json").read_text())
    return {"rows": rows, "eval": evaluation, "config": config}


def summary(name: str, run: dict) -> dict:
    ev, fd = run["eval"], run["eval"]["fd"]
    check = fd.get("check", {})
    last = run["rows"][-1]
    method = run["config"]["method"]
    return {
        "run": name,
        "variant": method["variant"],
        "beta": method["beta"],
        "perceptual": method["perceptual"] or "-",
        "steps": ev["protocol"]["checkpoint_step"],
        "fd_fashion_mnist": fd.get("fd_fashion_mnist"),
        "kid": fd.get("kid"),
        "precision": fd.get("precision"),
        "recall": fd.get("recall"),
        "fd_check": next((v for k, v in check.items() if k.startswith("fd_check")), None),
        "test_sse_per_image": ev.get("reconstruction", {}).get("sse_per_image"),
        "latent_norm": last.get("latent_norm"),
        "log_det": last.get("log_det"),
        "num_samples": fd.get("num_samples"),
    }


def plot(runs: dict, path: Path) -> None:
    rows = {name: run["rows"] for name, run in runs.items()}
    negative = any(min(r.get("log_det", 1) for r in run["rows"]) <= 0 for run in runs.values())
    save_curves(path, rows, CURVES, symlog=("log_det",) if negative and "log_det" in CURVES else ())


def report(args) -> None:
    runs = {}
    for spec in args.runs:
        name, _, folder = spec.partition("=")
        runs[name] = read_run(Path(folder))
    table = [summary(name, run) for name, run in runs.items()]
    suffix = f"_{args.tag}" if args.tag else ""
    figure = FIGURE.with_name(f"{FIGURE.stem}{suffix}.png")
    plot(runs, figure)
    cols = list(table[0])
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for row in table:
        cells = [f"{v:.4g}" if isinstance(v, float) else str(v) for v in row.values()]
        lines.append("| " + " | ".join(cells) + " |")
    print("\n".join(lines))
    print(f"figure: {figure}")
    if args.out:
        cmd = "python -m benchmarks.glf_fashion report " + " ".join(args.runs)
        cmd += f" --tag {args.tag}" if args.tag else ""
        print(f"wrote {record('glf_fashion' + suffix, {'command': cmd, 'runs': table})}")


class Deconv4x4(nn.Module):
    """The baseline: the same transposed convolution (and parameter names) as
    `jaxgen.nn.autoencoder.Deconv4x4`, computed as `lax.conv_transpose` / Flax's
    `ConvTranspose` do, by a convolution of the zero-dilated input with the flipped kernel."""

    features: int
    use_bias: bool = True

    @nn.compact
    def __call__(self, x):
        kernel = self.param(
            "kernel", nn.initializers.normal(0.02), (4, 4, x.shape[-1], self.features)
        )
        y = jax.lax.conv_general_dilated(
            x,
            kernel[::-1, ::-1].astype(x.dtype),
            (1, 1),
            ((2, 2), (2, 2)),
            lhs_dilation=(2, 2),
            dimension_numbers=("NHWC", "HWIO", "NHWC"),
        )
        if self.use_bias:
            y = y + self.param("bias", nn.initializers.zeros, (self.features,))
        return y


def _steps(config, x):
    """Compiled GLF steps `{"subpixel": ..., "dilated": ...}` and their start state."""
    from jaxgen.nn import autoencoder

    state = glf.init(config, {"x": x}, key=jax.random.PRNGKey(0))
    own = jax.jit(lambda s, b: glf.train_step(s, b, config=config))
    compiled = {"subpixel": own.lower(state, {"x": x}).compile()}
    original, autoencoder.Deconv4x4 = autoencoder.Deconv4x4, Deconv4x4
    try:
        baseline = jax.jit(lambda s, b: glf.train_step(s, b, config=config))
        compiled["dilated"] = baseline.lower(state, {"x": x}).compile()
    finally:
        autoencoder.Deconv4x4 = original
    return compiled, state


def throughput(args) -> None:
    from experiments import cli
    from experiments.configs.glf.fashion_mnist import get_config

    exp = cli.experiment(get_config())
    x = np.asarray(exp.stream().batch(0)["x"])
    compiled, state = _steps(exp.rc, x)
    outs = {k: fn(state, {"x": x}) for k, fn in compiled.items()}  # warm-up, and the same math
    diff = max(
        float(jnp.max(jnp.abs(a - b)))
        for a, b in zip(
            jax.tree.leaves(outs["subpixel"][1]),
            jax.tree.leaves(outs["dilated"][1]),
            strict=True,
        )
    )
    calls = {name: partial(fn, state, {"x": x}) for name, fn in compiled.items()}
    times = interleaved_times(calls, args.repeats)
    sgemm = _sgemm_rate()
    result = {"batch": len(x), "metrics_max_abs_diff": diff, "sgemm_gflops": sgemm}
    for name, fn in compiled.items():
        flops = fn.cost_analysis()["flops"]
        med = float(np.median(times[name]))
        result[name] = {
            "median_s": med,
            "quartiles_s": [float(q) for q in np.percentile(times[name], [25, 75])],
            "gflop_per_step": flops / 1e9,
            "gflops": flops / 1e9 / med,
            "fraction_of_sgemm": flops / 1e9 / med / sgemm,
            "images_per_s": len(x) / med,
        }
        print(f"{name}: {med:.3f} s/step, {len(x) / med:.0f} images/s, {flops / 1e9:.1f} GFLOP")
    print(f"same metrics to {diff:.2g}; sgemm {sgemm:.0f} GFLOP/s")
    if args.out:
        cmd = f"python -m benchmarks.glf_fashion throughput --repeats {args.repeats}"
        print(f"wrote {record('glf_step_throughput', {'command': cmd, **result})}")


def _sgemm_rate(n: int = 2048) -> float:
    a = jnp.ones((n, n), jnp.float32)
    f = jax.jit(lambda a: a @ a)
    jax.block_until_ready(f(a))
    ts = []
    for _ in range(5):
        t = time.perf_counter()
        jax.block_until_ready(f(a))
        ts.append(time.perf_counter() - t)
    return 2 * n**3 / np.median(ts) / 1e9


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="what", required=True)
    rep = sub.add_parser("report")
    rep.add_argument("runs", nargs="+", help="NAME=WORKDIR")
    rep.add_argument("--tag", default="", help="suffix of the figure and record names")
    rep.add_argument("--out", action="store_true")
    thr = sub.add_parser("throughput")
    thr.add_argument("--repeats", type=int, default=7)
    thr.add_argument("--out", action="store_true")
    args = parser.parse_args(argv)
    (report if args.what == "report" else throughput)(args)


if __name__ == "__main__":
    main()

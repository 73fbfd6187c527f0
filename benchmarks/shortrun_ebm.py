"""Short-run EBMs (docs/methods/shortrun_ebm.md): the 2-D likelihood report and the cost of
the generator loss.

    python -m benchmarks.shortrun_ebm toy2d ebm=runs/srl_swiss ml=runs/srl_swiss_ml [--out]
    python -m benchmarks.shortrun_ebm step_cost [--repeats 7] [--out]
    python -m benchmarks.shortrun_ebm unroll_cost [--batch 32 --nf 16] [--out]

`toy2d` reads each run (config, newest checkpoint, `eval/metrics.json` from
`python -m experiments.evaluate`) and reports the flow's test log-likelihood (eq. 1.7, exact
trace, dopri5 at the run's tolerance, 10k held-out points) beside the same points' log-density
under the true data density and under the EBM's own e^{−E} normalised on a 512² grid, and
draws Fig. 5.3/5.5 (samples, normalised e^{−E}, flow density) into
`docs/figures/shortrun_ebm_<data>.png`.

`step_cost` times the Fashion-MNIST config's step (batch 64, K = 40; `--batch`,
`--dynamics-steps`, `--nf` change them) with plain contrastive training, with the generator
loss (unrolled), with it in a rolled loop, and with it under `jax.checkpoint` (rolled): all
compiled and warmed up, repeats interleaved, medians, XLA's FLOP count against this machine's
float32 matmul rate and XLA's temporary-buffer size (the step's peak working memory).

`unroll_cost` times one ∇ₓE of the Fashion-MNIST conv energy (the limit: K of them make the
dynamics) against the K-step noise-free dynamics and the contrastive training step, each with
the K steps in a rolled `lax.scan` (a while loop) and unrolled (`method.unroll`).

VAPO's bits/dim (the same likelihood code) is `benchmarks/vapo_bits_per_dim.py`.
"""

import argparse
import json
import math
import time
from functools import partial
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
from scipy.special import logsumexp

from benchmarks.common import interleaved_times, record, restore
from benchmarks.glf_fashion import _sgemm_rate
from jaxgen.data import mixture_modes, sample_toy2d
from jaxgen.methods import shortrun_ebm as srl
from jaxgen.metrics import gaussian_mixture_log_density, grid_log_likelihood

FIGURES = Path(__file__).resolve().parents[1] / "docs" / "figures"


def swissroll_log_density(x, num_t: int = 20_000) -> np.ndarray:
    """The exact log-density `[N]` of `jaxgen.data.toy2d`'s Swiss roll at `x` `[N, 2]`:
    x = (t cos t, t sin t)/5 + N(0, 0.1² I) with t ~ U[1.5π, 4.5π], by the midpoint rule in t."""
    t = 1.5 * np.pi + 3 * np.pi * (np.arange(num_t) + 0.5) / num_t
    centres = np.stack([t * np.cos(t), t * np.sin(t)], 1) / 5.0
    sq = ((x[:, None, :] - centres[None]) ** 2).sum(-1)
    var = 0.1**2
    log_n = -sq / (2 * var) - math.log(2 * math.pi * var)
    return logsumexp(log_n, axis=1) - math.log(num_t)


def true_log_density(name: str, x) -> np.ndarray:
    if name == "swissroll":
        return np.concatenate([swissroll_log_density(c) for c in np.array_split(x, 20)])
    centres, std = mixture_modes(name)
    return gaussian_mixture_log_density(x, centres, std)


def _grid(lim: float, n: int) -> np.ndarray:
    g = -lim + 2 * lim * (np.arange(n) + 0.5) / n
    return np.stack(np.meshgrid(g, g, indexing="ij"), -1).reshape(-1, 2).astype(np.float32)


def toy2d_run(name: str, workdir: Path) -> dict:
    exp, state = restore(workdir)
    data = exp.c.data.name
    ev = json.loads((workdir / "eval" / "metrics.json").read_text())
    test = np.asarray(
        sample_toy2d(data, 10_000, jax.random.PRNGKey(30_000 + ev["protocol"]["seed"]))
    )
    lim = 1.5 * float(np.abs(test).max())
    neg_e = exp.jitted("energy", use_ema=False)
    ebm = grid_log_likelihood(
        lambda x: np.asarray(neg_e(state, x)), test, bounds=((-lim, lim),) * 2, chunk_size=8192
    )
    flow_ll = ev["log_likelihood"]["mean_log_likelihood"]
    out = {
        "run": name,
        "data": data,
        "objective": exp.rc.method.objective,
        "steps": ev["protocol"]["checkpoint_step"],
        "flow_test_ll": flow_ll,
        "flow_log_z_grid": ev["log_likelihood"]["log_z_grid_128"],
        "ebm_density_test_ll": ebm["mean_log_likelihood"],
        "data_true_ll": float(np.mean(true_log_density(data, test.astype(np.float64)))),
        "mmd_rbf": ev.get("mmd_rbf"),
        "seconds_per_step": _seconds_per_step(workdir),
    }
    return {"summary": out, "exp": exp, "state": state, "lim": lim}


def _seconds_per_step(workdir: Path) -> float | None:
    rows = [json.loads(x) for x in (workdir / "metrics.jsonl").read_text().splitlines()]
    times = [r.get("time") for r in rows if r.get("time") is not None]
    if len(times) < 2:
        return None
    return (times[-1] - times[0]) / (rows[-1]["step"] - rows[0]["step"])


def plot_toy2d(runs: list, path: Path, n: int = 160) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(len(runs), 3, figsize=(10, 3.3 * len(runs)), squeeze=False)
    for row, r in zip(axes, runs, strict=True):
        exp, state, lim = r["exp"], r["state"], r["lim"]
        grid = _grid(lim, n)
        x, _ = exp.draw(state, 4000, seed=0, use_ema=False)
        neg_e = np.asarray(exp.jitted("energy", use_ema=False)(state, grid))
        ebm = np.exp(neg_e - logsumexp(neg_e) - math.log((2 * lim / n) ** 2))
        lp = exp.jitted("log_density", use_ema=False)
        flow = np.exp(np.concatenate([np.asarray(lp(state, g)) for g in np.split(grid, 16)]))
        name = f"{r['summary']['run']} ({r['summary']['objective']})"
        row[0].scatter(x[:, 0], x[:, 1], s=1, alpha=0.3)
        row[0].set(xlim=(-lim, lim), ylim=(-lim, lim), title=f"{name}: samples")
        for ax, img, title in ((row[1], ebm, "e^{-E} normalised"), (row[2], flow, "flow density")):
            ax.imshow(img.reshape(n, n).T, origin="lower", extent=(-lim, lim, -lim, lim))
            ax.set_title(title)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90)


def toy2d(args) -> None:
    runs = []
    for spec in args.runs:
        name, _, folder = spec.partition("=")
        runs.append(toy2d_run(name, Path(folder)))
    data = runs[0]["summary"]["data"]
    figure = FIGURES / f"shortrun_ebm_{data}.png"
    plot_toy2d(runs, figure)
    table = [r["summary"] for r in runs]
    for row in table:
        print(
            ", ".join(
                f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}" for k, v in row.items()
            )
        )
    print(f"figure: {figure}")
    if args.out:
        cmd = "python -m benchmarks.shortrun_ebm toy2d " + " ".join(args.runs)
        print(f"wrote {record(f'shortrun_ebm_{data}', {'command': cmd, 'runs': table})}")


VARIANTS = {
    "contrastive": {},
    "generator_loss": {"generator_loss": True},
    "generator_loss_rolled": {"generator_loss": True, "unroll": False},
    # jax.checkpoint keeps the dynamics rolled (method.unroll is ignored with it)
    "generator_loss_checkpoint": {"generator_loss": True, "checkpoint": True},
}


def _fashion_setup(args) -> tuple[dict, np.ndarray]:
    """The Fashion-MNIST config's model/method/optim/sample fields with `--nf` (and
    `--dynamics-steps` where given) applied, and a batch `[B, 32, 32, 1]` of uniform noise."""
    from experiments.configs.shortrun_ebm.fashion_mnist import get_config

    c = get_config()
    tree = {k: c[k].to_dict() for k in ("model", "method", "optim", "sample")}
    tree["model"]["nf"] = args.nf or tree["model"]["nf"]
    tree["method"]["langevin_steps"] = (
        getattr(args, "dynamics_steps", 0) or tree["method"]["langevin_steps"]
    )
    batch = args.batch or c.data.batch_size
    return tree, np.random.default_rng(0).uniform(-1, 1, (batch, 32, 32, 1)).astype("float32")


def step_cost(args) -> None:
    from jaxgen.methods.common import config_from_dict

    tree, x = _fashion_setup(args)
    compiled, state = {}, None
    for name, change in VARIANTS.items():
        cfg = config_from_dict(srl.Config, {**tree, "method": {**tree["method"], **change}})
        state = srl.init(cfg, {"x": x}, key=jax.random.PRNGKey(0)) if state is None else state
        fn = jax.jit(lambda s, b, cfg=cfg: srl.train_step(s, b, config=cfg))
        t0 = time.perf_counter()
        compiled[name] = fn.lower(state, {"x": x}).compile()
        jax.block_until_ready(compiled[name](state, {"x": x}))
        print(f"{name}: compiled and warmed up in {time.perf_counter() - t0:.0f} s", flush=True)
    calls = {name: partial(fn, state, {"x": x}) for name, fn in compiled.items()}
    times = interleaved_times(calls, args.repeats)
    sgemm = _sgemm_rate()
    result = {"batch": len(x), "K": tree["method"]["langevin_steps"], "nf": tree["model"]["nf"]}
    result["sgemm_gflops"] = sgemm
    for name, fn in compiled.items():
        flops, med = fn.cost_analysis()["flops"], float(np.median(times[name]))
        mem = fn.memory_analysis()
        result[name] = {
            "median_s": med,
            "quartiles_s": [float(q) for q in np.percentile(times[name], [25, 75])],
            "gflop_per_step": flops / 1e9,
            "fraction_of_sgemm": flops / 1e9 / med / sgemm,
            "temp_mib": mem.temp_size_in_bytes / 2**20,
        }
        mib = mem.temp_size_in_bytes / 2**20
        print(f"{name}: {med:.3f} s/step, {flops / 1e9:.1f} GFLOP, temp {mib:.0f} MiB")
    base = result["contrastive"]["median_s"]
    result["generator_loss_time_ratio"] = result["generator_loss"]["median_s"] / base
    print(f"generator loss costs {result['generator_loss_time_ratio']:.2f}x the contrastive step")
    if args.out:
        cmd = f"python -m benchmarks.shortrun_ebm step_cost --repeats {args.repeats}"
        cmd += f" --dynamics-steps {result['K']} --batch {len(x)} --nf {result['nf']}"
        print(f"wrote {record('shortrun_ebm_step_cost', {'command': cmd, **result})}")


def unroll_cost(args) -> None:
    from jaxgen.methods.common import config_from_dict

    tree, x = _fashion_setup(args)
    batch, k = len(x), tree["method"]["langevin_steps"]
    key, calls = jax.random.PRNGKey(1), {}
    for unroll in (False, True):
        cfg = config_from_dict(srl.Config, {**tree, "method": {**tree["method"], "unroll": unroll}})
        state = srl.init(cfg, {"x": x}, key=jax.random.PRNGKey(0))
        name = "unrolled" if unroll else "rolled"
        fns = {
            f"dynamics_{name}": jax.jit(
                lambda s, c=cfg: srl.sample(s, batch, config=c, key=key, shape=x.shape[1:])[0]
            ),
            f"train_step_{name}": jax.jit(lambda s, c=cfg: srl.train_step(s, {"x": x}, config=c)),
        }
        for fname, fn in fns.items():
            jax.block_until_ready(fn(state))
            calls[fname] = partial(fn, state)
    grad_x = jax.jit(jax.grad(lambda x: jnp.sum(srl.energy_fn(state.energy.params, x, config=cfg))))
    jax.block_until_ready(grad_x(x))
    calls = {"one_grad_x": partial(grad_x, x), **calls}
    times = {n: float(np.median(t)) for n, t in interleaved_times(calls, args.repeats).items()}
    result = {"batch": batch, "K": k, "nf": tree["model"]["nf"], "median_s": times}
    bound = k * times["one_grad_x"]  # the dynamics' limit: K gradient evaluations
    for name, t in times.items():
        ratio = f" ({t / bound:.2f}x K grads)" if name.startswith("dynamics") else ""
        print(f"{name}: {t * 1e3:.1f} ms{ratio}")
    if args.out:
        cmd = f"python -m benchmarks.shortrun_ebm unroll_cost --batch {batch} --nf {result['nf']}"
        print(f"wrote {record('shortrun_ebm_unroll_cost', {'command': cmd, **result})}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("toy2d")
    p.add_argument("runs", nargs="+", help="NAME=WORKDIR")
    p.add_argument("--out", action="store_true")
    p = sub.add_parser("step_cost")
    p.add_argument("--repeats", type=int, default=7)
    p.add_argument("--dynamics-steps", type=int, default=0, help="K (0: the config's 40)")
    p.add_argument("--batch", type=int, default=0, help="0: the config's 64")
    p.add_argument("--nf", type=int, default=0, help="0: the config's 32")
    p.add_argument("--out", action="store_true")
    p = sub.add_parser("unroll_cost")
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--batch", type=int, default=0, help="0: the config's 64")
    p.add_argument("--nf", type=int, default=0, help="0: the config's 32")
    p.add_argument("--out", action="store_true")
    args = parser.parse_args()
    commands = {
        "toy2d": toy2d,
        "step_cost": step_cost,
        "unroll_cost": unroll_cost,
    }
    commands[args.cmd](args)


if __name__ == "__main__":
    main()

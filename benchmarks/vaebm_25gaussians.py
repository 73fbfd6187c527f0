"""VAEBM on 25 Gaussians (thesis §4.4.1; docs/methods/vaebm.md §6): test log-likelihoods of the
true mixture (exact), the base VAE (IWAE bound) and VAEBM, per seed, and the fraction of the
VAE-to-true gap that VAEBM closes (the thesis: (−2.97 → −1.50) of −1.10, 0.79).

    python -m benchmarks.vaebm_25gaussians RUNS_DIR --seeds 0    # one seed's record
    python -m benchmarks.vaebm_25gaussians RUNS_DIR --combine    # the table over the seeds
    python -m benchmarks.vaebm_25gaussians --checkpoints VAE_RUN VAEBM_RUN  # every checkpoint
    python -m benchmarks.vaebm_25gaussians RUNS_DIR --chain-table --seeds 0 # test-time steps

`RUNS_DIR` holds `vae_s<seed>` and `vaebm_s<seed>` (trained by `experiments.train`; commands in
docs/results.md). VAEBM's checkpoint is chosen by its log-likelihood on 20k validation draws
(another key than the test set's; log Z by Monte Carlo over 2·10⁵ VAE draws), as the thesis picks
checkpoints by sample quality because training eventually over-fits; the last checkpoint is
reported beside it. Per seed, on one fixed set of `--num-test` fresh draws of the mixture:

- true: the mixture's exact log density;
- VAE: the IWAE bound log p̂_φ(x) with K = 1000 (and, on the first 1000 points, K = 10,000 beside
  K = 1000: how loose the bound still is);
- VAEBM: log p̂_φ(x) − f(x) − log Z with Z = E_{x ~ p_φ}[e^{−f(x)}] by Monte Carlo over 10⁶ VAE
  draws (unbiased for the VAE's own density; its standard error by the delta method), cross-
  checked by normalising p̂_φ e^{−f} on two grids (K = 100 IWAE; spacings 0.06 and 0.03).

With the Monte-Carlo Z, VAEBM's figure is a lower bound in the same sense as the VAE's (the IWAE
term is shared), so their difference is −E f − log Z, exact up to Monte-Carlo error. The density
figure (`docs/figures/<NAME>_density.png`): true, VAE and VAEBM on the finer grid, seed 0.
"""

import argparse
import json
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from benchmarks.common import RESULTS, record, restore
from jaxgen.data import mixture_modes, sample_toy2d
from jaxgen.methods import vae, vaebm
from jaxgen.metrics.toy2d import gaussian_mixture_log_density

FIGURES = Path(__file__).resolve().parents[1] / "docs" / "figures"
LIM = 6.0  # the grids cover [-LIM, LIM]²: modes at ±4 with std 0.05, VAE σ_x ≈ 0.07


def _iwae(base_exp, base_state, x, num_samples: int, chunk_points: int = 2000):
    cfg = base_exp.rc
    params = base_state.vae.eval_params(True)
    chunk = min(num_samples, 100)
    fn = jax.jit(
        lambda p, v, k: vae.iwae_log_prob(p, v, k, config=cfg, num_samples=num_samples, chunk=chunk)
    )
    out = [
        np.asarray(fn(params, jnp.asarray(x[i : i + chunk_points]), jax.random.PRNGKey(i)))
        for i in range(0, len(x), chunk_points)
    ]
    return np.concatenate(out)


def _f(exp, state, x, chunk: int = 65536):
    fn = jax.jit(lambda s, v: -vaebm.energy(s, v, config=exp.rc))
    return np.concatenate(
        [np.asarray(fn(state, jnp.asarray(x[i : i + chunk]))) for i in range(0, len(x), chunk)]
    )


def log_z_monte_carlo(exp, state, base_exp, base_state, num: int = 1_000_000, key: int = 50):
    """`(log Z, its standard error)`: Z = mean of e^{−f} over `num` VAE draws (keys `key`, `key`
    + 1, ...: checkpoint selection and the test use disjoint draws)."""
    draw = jax.jit(lambda k: vae.sample(base_state, 100_000, config=base_exp.rc, key=k)[0])
    f = np.concatenate(
        [
            _f(exp, state, np.asarray(draw(jax.random.PRNGKey(key + i))))
            for i in range(num // 100_000)
        ]
    )
    m = float(np.max(-f))
    w = np.exp(-f - m)
    log_z = m + float(np.log(w.mean()))
    return log_z, float(w.std() / np.sqrt(len(w)) / w.mean())


def grid(spacing: float):
    ticks = np.arange(-LIM + spacing / 2, LIM, spacing, dtype=np.float32)
    xx, yy = np.meshgrid(ticks, ticks)
    return np.stack([xx.ravel(), yy.ravel()], 1), len(ticks)


def select_checkpoint(run: Path, base_exp, base_state, num: int = 20_000, key: int = 777) -> tuple:
    """`(experiment, state at the best validation log-likelihood, last state, {step: its
    log-likelihood})` on `num` draws of key `key` (log Z by Monte Carlo over 2·10⁵ VAE draws)."""
    from experiments import cli
    from experiments.experiment import load_saved_config

    val = np.asarray(sample_toy2d("25gaussians", num, jax.random.PRNGKey(key)))
    log_q = _iwae(base_exp, base_state, val, 1000)
    exp = cli.experiment(load_saved_config(run / "config.json"))
    steps = sorted(int(p.name) for p in (run / "checkpoints").iterdir() if p.name.isdigit())
    scores, states = {}, {}
    for step in steps:
        state, _ = exp.restore_latest(str(run), step)
        log_z, _ = log_z_monte_carlo(exp, state, base_exp, base_state, num=200_000, key=900)
        scores[step] = float(np.mean(log_q - _f(exp, state, val)) - log_z)
        states[step] = state
    best = max(scores, key=scores.get)
    return exp, states[best], states[steps[-1]], scores


def _vaebm_row(exp, state, base_exp, base_state, test, log_q) -> dict:
    f_test = _f(exp, state, test)
    log_z, se = log_z_monte_carlo(exp, state, base_exp, base_state)
    return {"vaebm": float(np.mean(log_q - f_test) - log_z), "log_z_mc": log_z, "log_z_mc_se": se}


def one_seed(root: Path, seed: int, test: np.ndarray, figure: bool) -> dict:
    base_exp, base_state = restore(root / f"vae_s{seed}")
    t0 = time.perf_counter()
    exp, state, last, val_scores = select_checkpoint(root / f"vaebm_s{seed}", base_exp, base_state)
    log_q = _iwae(base_exp, base_state, test, 1000)
    sub = test[:1000]
    check_k = {
        "k1000": float(np.mean(log_q[:1000])),
        "k10000": float(np.mean(_iwae(base_exp, base_state, sub, 10_000))),
    }
    f_test = _f(exp, state, test)
    selected = _vaebm_row(exp, state, base_exp, base_state, test, log_q)
    grids = {}
    for spacing in (0.06, 0.03):
        pts, n = grid(spacing)
        lq = _iwae(base_exp, base_state, pts, 100, chunk_points=4000)
        lu = lq - _f(exp, state, pts)
        m = lu.max()
        grids[f"log_z_grid_{spacing}"] = float(m + np.log(np.sum(np.exp(lu - m)) * spacing**2))
        grids[f"vae_mass_grid_{spacing}"] = float(np.sum(np.exp(lq)) * spacing**2)
    if figure:
        _plot(root, test, lq.reshape(n, n), (lu - grids["log_z_grid_0.03"]).reshape(n, n), seed)
    row = {
        "vae": float(np.mean(log_q)),
        **selected,
        "vaebm_last": _vaebm_row(exp, last, base_exp, base_state, test, log_q)["vaebm"],
        "vaebm_grid_0.03": float(np.mean(log_q - f_test) - grids["log_z_grid_0.03"]),
        "validation_by_step": val_scores,
        "iwae_check_first_1000": check_k,
        **grids,
        "seconds": time.perf_counter() - t0,
        "vaebm_step": int(state.step),
        "vaebm_last_step": int(last.step),
        "vae_step": int(base_state.step),
    }
    print(json.dumps({"seed": seed, **row}), flush=True)
    return row


def _plot(root: Path, test, log_vae, log_vaebm, seed: int) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    centers, std = mixture_modes("25gaussians")
    pts, n = grid(0.03)
    log_true = gaussian_mixture_log_density(pts, centers, std).reshape(n, n)
    fig, axes = plt.subplots(1, 3, figsize=(12, 4.2))
    for ax, (title, lp) in zip(
        axes, (("true", log_true), ("VAE (IWAE)", log_vae), ("VAEBM", log_vaebm)), strict=True
    ):
        ax.imshow(
            np.exp(lp),
            origin="lower",
            extent=(-LIM, LIM, -LIM, LIM),
            cmap="viridis",
            vmax=np.exp(log_true).max() / 4,
        )
        ax.set_title(f"{title} density")
        ax.set_xticks([-4, 0, 4]), ax.set_yticks([-4, 0, 4])
    fig.suptitle(
        f"25 Gaussians, densities on a 0.03 grid (seed {seed}; colour clipped at 1/4 of true peak)"
    )
    fig.tight_layout()
    fig.savefig(FIGURES / "vaebm_25gaussians_density.png", dpi=90)
    plt.close(fig)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("runs", type=Path)
    p.add_argument("--seeds", type=int, nargs="+", default=[0])
    p.add_argument("--num-test", type=int, default=100_000)
    p.add_argument("--record-as", default="vaebm_25gaussians")
    p.add_argument("--combine", action="store_true", help="the table from the per-seed records")
    p.add_argument("--checkpoints", action="store_true", help="RUNS = VAE_RUN VAEBM_RUN: each step")
    p.add_argument("--chain-table", action="store_true", help="test-time steps 0..200")
    p.add_argument("vaebm_run", type=Path, nargs="?")
    a = p.parse_args()
    if a.combine:
        return combine(a.record_as)
    if a.chain_table:
        return [chain_table(a.runs, s, a.record_as) for s in a.seeds] and None
    if a.checkpoints:  # test draws (key 2026), 5000 of them unless --num-test says otherwise
        base_exp, base_state = restore(a.runs)
        num = min(a.num_test, 5000)
        *_, scores = select_checkpoint(a.vaebm_run, base_exp, base_state, num=num, key=2026)
        return print(json.dumps({"run": str(a.vaebm_run), "num_test": num, "by_step": scores}))
    test = np.asarray(sample_toy2d("25gaussians", a.num_test, jax.random.PRNGKey(2026)))
    centers, std = mixture_modes("25gaussians")
    true = float(np.mean(gaussian_mixture_log_density(test, centers, std)))
    for s in a.seeds:
        row = one_seed(a.runs, s, test, figure=s == 0)
        row["gap_closed"] = (row["vaebm"] - row["vae"]) / (true - row["vae"])
        row["gap_closed_last"] = (row["vaebm_last"] - row["vae"]) / (true - row["vae"])
        record(f"{a.record_as}_s{s}", {"num_test": a.num_test, "true": true, "seed": s, **row})


def chain_table(root: Path, seed: int, name: str, num: int = 10_000) -> dict:
    """Samples of one chain after 0, 20, 60, 100, 200 test-time steps (from fresh ε, η the
    training step, the selected checkpoint): mode statistics, MMD² and energy distance against
    as many fresh data draws; the draws x = T(ε), not decoder means."""
    from experiments import cli
    from experiments.experiment import load_saved_config
    from jaxgen.metrics import energy_distance, mmd_rbf, mode_coverage

    run = root / f"vaebm_s{seed}"
    chosen = json.loads((RESULTS / f"{name}_s{seed}.json").read_text())["vaebm_step"]
    exp = cli.experiment(load_saved_config(run / "config.json"))
    state, _ = exp.restore_latest(str(run), chosen)
    cfg, base = exp.rc, vaebm.tilt_base(exp.rc, (2,))
    eps = vaebm.fresh_eps(jax.random.PRNGKey(11), num, base, cfg)
    data = np.asarray(sample_toy2d("25gaussians", num, jax.random.PRNGKey(12)))
    centers, std = mixture_modes("25gaussians")
    segment = jax.jit(
        lambda e, k, n: vaebm.run_chain(
            state.energy.params,
            state.base,
            e,
            k,
            config=cfg,
            base=base,
            steps=n,
            eta=cfg.method.step_size,
        )[0],
        static_argnums=2,
    )
    rows, done = {}, 0
    for k_test in (0, 20, 60, 100, 200):
        if k_test > done:
            eps = segment(eps, jax.random.PRNGKey(100 + k_test), k_test - done)
            done = k_test
        x = np.asarray(base.generate(state.base, eps, mean=False)[0])
        cov = mode_coverage(x, centers, std)
        share = sum(f >= 0.5 / len(centers) for f in cov["mode_fractions"])
        rows[k_test] = {
            "within_3sd": cov["high_quality_fraction"],
            "modes_at_half_share": int(share),
            "kl_to_uniform": cov["kl_to_uniform"],
            "mmd_rbf": mmd_rbf(x, data),
            "energy_distance": energy_distance(x, data),
        }
        print(json.dumps({"k_test": k_test, **rows[k_test]}), flush=True)
    out = {"seed": seed, "checkpoint_step": chosen, "num": num, "by_k_test": rows}
    record(f"{name}_chain_s{seed}", out)
    return out


def combine(name: str) -> None:
    """`docs/bench/<name>.json`: mean ± sd over the per-seed records `<name>_s*.json`."""
    rows = [json.loads(p.read_text()) for p in sorted(RESULTS.glob(f"{name}_s*.json"))]
    keys = ("vae", "vaebm", "vaebm_last", "vaebm_grid_0.03", "gap_closed", "gap_closed_last")
    summary = {
        k: [float(np.mean([r[k] for r in rows])), float(np.std([r[k] for r in rows], ddof=1))]
        for k in keys
    }
    out = {"seeds": [r["seed"] for r in rows], "true": rows[0]["true"], "mean_sd": summary}
    print(json.dumps(out, indent=1))
    record(name, out)


if __name__ == "__main__":
    main()

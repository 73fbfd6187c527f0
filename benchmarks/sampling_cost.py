"""Sampling cost per 1000 Fashion-MNIST images (32×32) on this machine, method against method,
each beside its limit: NFE × one network evaluation at the same batch.

    python -m benchmarks.sampling_cost [--num 1000] [--repeats 3] [--ddgan RUN] [--out]

Every method's Fashion-MNIST config, its sampler and one evaluation of the network the sampler
calls (DDGAN: one generator pass; the short-run EBM: one ∇E; VAPO: one ∇Φ; GLF: the flow's
inverse and the decoder, its whole sampler) are compiled once and warmed up, the calls are
timed with repeats interleaved, medians. The fixed-step samplers (DDGAN's T passes, the
short-run EBM's K steps, GLF's one pass) cost the same for any weights, so freshly initialised
states are timed unless `--ddgan RUN` names a trained run. VAPO's Dopri5 is adaptive: its NFE
depends on the trained field, so its row is the measured NFE of the trained Fashion-MNIST run
(49 per sample at T = 2, docs/results.md "VAPO on Fashion-MNIST at CPU scale") × one ∇Φ here.
FDRL's sampler is fixed-step too: K + κ Euler–Maruyama steps, each one gradient of the ratio
network (its CPU config's 40; the paper's 120 would cost three times as much).
"""

import argparse
from functools import partial
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from benchmarks.common import interleaved_times, record
from experiments import cli
from tools.tpu_compile import load_config

CONFIGS = Path(__file__).resolve().parents[1] / "experiments" / "configs"
VAPO_FASHION_NFE = 49  # trained run, T = 2, rtol = atol = 1e-3 (docs/results.md)


def _config(method: str):
    return load_config(str(CONFIGS / method / "fashion_mnist.py"), [])


def _one_eval(method: str, exp, state, x):
    """One evaluation of the network `method`'s sampler calls, at the images `x` `[B, H, W, C]`."""
    mod, rc = exp.recipe, exp.rc
    if method == "ddgan":
        b = x.shape[0]
        z = jnp.zeros((b, rc.model.latent_dim))
        t = jnp.full((b,), rc.method.diffusion_steps, jnp.int32)
        sched = mod.schedule(rc)
        return mod.denoise(state.gen.eval_params(True), x, z, t, config=rc, sched=sched)
    if method == "shortrun_ebm":
        return mod.velocity(state.energy.eval_params(True), x, config=rc)
    if method == "vapo":
        return mod.velocity(state.potential.eval_params(True), x, config=rc)
    if method == "fdrl":  # one Euler–Maruyama step: one gradient of the ratio network
        return mod.flow_from(state, x, config=rc, key=jax.random.PRNGKey(0), num_steps=1)[0]
    raise ValueError(method)


def _state(exp, workdir: str | None):
    if workdir:
        state, _ = exp.restore_latest(workdir)
        return state
    example = exp.example_batch()
    fit = exp.caps.data_fit  # FDRL's DDP prior: fitted to the (zero) example, jitter only
    fitted = fit.fit(exp.rc, example["x"]) if fit is not None and fit.needed(exp.rc) else None
    return exp.init(example, fitted=fitted)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--num", type=int, default=1000)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--ddgan", default="", help="a trained DDGAN Fashion-MNIST workdir")
    p.add_argument("--out", action="store_true")
    args = p.parse_args()
    calls, nfe, rows = {}, {}, {}
    for method in ("ddgan", "shortrun_ebm", "glf", "vapo", "fdrl"):
        c = _config(method)
        c.eval.batch_size = args.num
        exp = cli.experiment(c)
        state = _state(exp, args.ddgan if method == "ddgan" else None)
        x = jax.random.normal(jax.random.PRNGKey(0), (args.num, *exp.shape))
        key = jax.random.PRNGKey(1)
        if method != "vapo":
            sampler = exp.jitted("sample", shape=exp.shape)
            jax.block_until_ready(sampler(state, args.num, key=key))
            calls[f"{method}/sampler"] = partial(sampler, state, args.num, key=key)
            print(f"{method}: sampler compiled", flush=True)
        if method != "glf":
            one = jax.jit(partial(_one_eval, method, exp))
            jax.block_until_ready(one(state, x))
            calls[f"{method}/one_eval"] = partial(one, state, x)
        # DDGAN: T generator passes; the short-run EBM: K gradient steps
        fixed = {"glf": 1, "vapo": VAPO_FASHION_NFE}
        if method == "fdrl":
            fixed["fdrl"] = exp.rc.method.flow_steps + exp.rc.sample.refine_steps
        nfe[method] = fixed[method] if method in fixed else exp.rc.method.diffusion_steps
    times = interleaved_times(calls, args.repeats)
    med = {k: float(np.median(v)) for k, v in times.items()}
    scale = 1000 / args.num
    print("| method | NFE (what) | sampler s / 1000 images | one eval s / 1000 | NFE × one eval |")
    what = {"ddgan": "G passes", "shortrun_ebm": "∇E", "glf": "flow + decoder", "vapo": "∇Φ"}
    what["fdrl"] = "ratio gradients"
    for method, n in nfe.items():
        one = med.get(f"{method}/one_eval", med.get(f"{method}/sampler"))
        sampler = med.get(f"{method}/sampler")
        rows[method] = {
            "nfe": n,
            "sampler_s_per_1000": None if sampler is None else sampler * scale,
            "one_eval_s_per_1000": one * scale,
            "nfe_times_one_eval_s_per_1000": n * one * scale,
        }
        shown = "—" if sampler is None else f"{sampler * scale:.2f}"
        print(
            f"| {method} | {n} ({what[method]}) | {shown} | {one * scale:.3f} "
            f"| {n * one * scale:.2f} |"
        )
    if args.out:
        cmd = f"python -m benchmarks.sampling_cost --num {args.num} --repeats {args.repeats}"
        cmd += f" --ddgan {args.ddgan}" if args.ddgan else ""
        payload = {"command": cmd, "num": args.num, "rows": rows, "times": times}
        print(f"wrote {record('sampling_cost_fashion', payload)}")


if __name__ == "__main__":
    main()

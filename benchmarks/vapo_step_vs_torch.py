"""The VAPO training step, jaxgen vs the PyTorch reference, side by side in one process
(`shared/design/performance.md`).

    python -m benchmarks.vapo_step_vs_torch [--repeats 5] [--block 3] [--variant split2 ...]
        [--malloc reuse|default] [--torch-script PATH] [--name NAME]

Network and step of the target: WN ResNet ch=32, 2 blocks per level, mult (1,2,2,2), 32×32×3,
batch 16, Adam 1e-4, the VAPO loss with ∇ₓΦ (double backward). The jaxgen step is
`vapo.train_step` on a `vapo.Config(model=vapo.Model(network="resnet", ...))`; each `--variant`
overrides network fields (`EnergyResNet.batch_splits` / `gelu_impl` / `conv_impl`) or XLA
options. The PyTorch step is built from the model classes of `--torch-script` (default
`../shared/bench/torch_vapo_step.py`, beside the repository; loaded with importlib; nothing in
jaxgen imports torch) with the same loss and optimizer as that script, `torch.set_num_threads(2)`.

Each of `--repeats` rounds runs, for each jax variant and then torch, one untimed step and
`--block` timed steps back to back; the medians over all timed steps are reported (a pause
before each step would slow torch's OpenMP pool by ~10%, so steps are consecutive). Also
reported: XLA's FLOP count of the step, achieved GFLOP/s, and a jitted 2048² float32 matmul as
the machine's practical limit.

`--malloc reuse` (default) makes glibc keep freed memory for reuse (`reuse_host_memory`): XLA's
CPU client allocates the step's ~100 MB temporary buffer afresh each call, and by default glibc
serves it with a new mmap, so every step pays ~27k page faults (≈40 ms of kernel time). It
applies to the whole process, so the torch step gets it too. `--malloc default` measures glibc
as configured by the environment.
"""

import argparse
import importlib.util
import math
import os
import sys
import time
from functools import partial
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from benchmarks.common import record
from jaxgen.methods import vapo
from jaxgen.methods.common import Optim
from jaxgen.runtime import reuse_host_memory

# the reference script lives beside the repository: <parent of the repo>/shared/bench/
TORCH_SCRIPT = Path(__file__).resolve().parents[2] / "shared" / "bench" / "torch_vapo_step.py"
CH, MULT, BLOCKS, RES, CIN = 32, (1, 2, 2, 2), 2, 32, 3

# name -> (EnergyResNet fields to override, XLA compiler options, description)
VARIANTS = {
    "split2": ({"batch_splits": 2}, {}, "erf GELU, XLA conv, batch in 2 concurrent slices"),
    "split4": ({"batch_splits": 4}, {}, "as split2 with 4 slices"),
    "erf_gelu": ({"batch_splits": 1}, {}, "erf GELU (hand-written derivatives), XLA conv"),
    "reference": ({"batch_splits": 1, "gelu_impl": "flax"}, {}, "nn.gelu (erfc), XLA conv"),
    "im2col": ({"batch_splits": 1, "conv_impl": "im2col"}, {}, "erf GELU, im2col convs"),
    "fast_math": ({"batch_splits": 2}, {"xla_cpu_enable_fast_math": True}, "split2 + fast math"),
}


def jax_config() -> vapo.Config:
    model = vapo.Model(
        network="resnet", ch=CH, ch_mult=MULT, num_res_blocks=BLOCKS, channels=CIN, batch_splits=2
    )
    return vapo.Config(model=model, optim=vapo.Optims(potential=Optim(optimizer="adam", lr=1e-4)))


def build_jax_step(variant: str, x: np.ndarray):
    """Compile `vapo.train_step` for `variant`; returns `(step_fn, flops, first_metrics)`.

    `step_fn()` runs one step on `x` `[B, 32, 32, 3]`, updates the state and blocks.
    """
    fields, xla_options, _ = VARIANTS[variant]
    config = jax_config()
    make_network = vapo.make_network
    vapo.make_network = lambda c: make_network(c).clone(**fields)  # trace-time override
    try:
        state = vapo.init(config, {"x": x}, key=jax.random.PRNGKey(0))
        step = jax.jit(partial(vapo.train_step, config=config), donate_argnums=0)
        batch = {"x": jnp.asarray(x)}
        compiled = step.lower(state, batch).compile(compiler_options=xla_options or None)
    finally:
        vapo.make_network = make_network
    cost = compiled.cost_analysis()
    cost = cost[0] if isinstance(cost, list | tuple) else cost
    box = {"state": state}

    def step_fn():
        box["state"], metrics = compiled(box["state"], batch)
        return jax.block_until_ready(metrics)

    first = {k: float(v) for k, v in step_fn().items()}
    return step_fn, float(cost["flops"]), first


def build_torch_step(script: str, x: np.ndarray, threads: int):
    """The reference step (same math as `script`'s `step()`), on `x` as `[B, C, H, W]`."""
    import torch

    spec = importlib.util.spec_from_file_location("torch_vapo_step", script)
    ref = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(ref)
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    net = ref.Energy(CH, list(MULT), BLOCKS, CIN)
    opt = torch.optim.Adam(net.parameters(), 1e-4)
    eps, sig, sig0, lam = 1e-4, 0.01, 1.0, 1e-4
    ell, dim = math.log((1 + eps) / eps), CIN * RES * RES
    xbar = torch.from_numpy(np.ascontiguousarray(x.transpose(0, 3, 1, 2)))

    def step_fn():
        t = torch.rand(xbar.shape[0])
        tau = eps ** (1 - t) * (1 + eps) ** t - eps
        den = sig**2 + tau * sig0**2
        m, s = tau * sig0**2 / den, (sig0**2 * sig**2 / den).sqrt()
        kap, dtau = sig0**2 / den, (tau + eps) * ell
        xi = torch.randn_like(xbar)
        xt = (m[:, None, None, None] * xbar + s[:, None, None, None] * xi).requires_grad_(True)
        inner = (xi**2).sum((1, 2, 3)) - dim - 2 * s / sig0**2 * (xbar * xi).sum((1, 2, 3))
        w = 0.5 * dtau * kap * inner
        phi = net(xt)
        (g,) = torch.autograd.grad(phi.sum(), xt, create_graph=True)
        loss = (w * phi + 0.5 * (g**2).sum((1, 2, 3)) + 0.5 * lam * phi**2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        return float(loss.detach())

    return step_fn, sum(p.numel() for p in net.parameters())


def sgemm_gflops(n: int = 2048, repeats: int = 10) -> float:
    """GFLOP/s of a jitted n×n float32 matmul (median)."""
    a = jax.random.normal(jax.random.PRNGKey(0), (n, n), jnp.float32)
    f = jax.jit(lambda a, b: jnp.dot(a, b, precision="highest"))
    jax.block_until_ready(f(a, a))
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        jax.block_until_ready(f(a, a))
        times.append(time.perf_counter() - t)
    return 2 * n**3 / float(np.median(times)) / 1e9


def interleaved(fns: dict, repeats: int, warmup: int, block: int):
    """Per repeat, each `fns[name]` in turn runs one untimed step (re-warming caches and thread
    pools after the other framework) then `block` timed steps back to back.
    Returns `(medians, samples)` in seconds per step."""
    for fn in fns.values():
        for _ in range(warmup):
            fn()
    times = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            fn()
            for _ in range(block):
                t = time.perf_counter()
                fn()
                times[name].append(time.perf_counter() - t)
    return {name: float(np.median(ts)) for name, ts in times.items()}, times


def parse_args():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--variant", nargs="+", default=["split2", "reference"], choices=VARIANTS)
    ap.add_argument("--repeats", type=int, default=5, help="interleaved rounds")
    ap.add_argument("--block", type=int, default=3, help="timed steps per round and framework")
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--threads", type=int, default=2, help="torch.set_num_threads")
    ap.add_argument("--malloc", choices=("reuse", "default"), default="reuse")
    ap.add_argument("--torch-script", type=Path, default=TORCH_SCRIPT)
    ap.add_argument("--no-torch", action="store_true")
    ap.add_argument("--name", default=None, help="docs/bench/<name>.json")
    return ap.parse_args()


def main():
    args = parse_args()
    if args.malloc == "reuse" and not reuse_host_memory():
        raise RuntimeError("mallopt failed (not glibc?): run with --malloc default")
    if not args.no_torch and not args.torch_script.is_file():
        sys.exit(
            f"error: no torch reference script at {args.torch_script}: pass --torch-script "
            "PATH or --no-torch"
        )
    load_before = os.getloadavg()
    x = np.random.default_rng(0).uniform(-1, 1, (args.batch, RES, RES, CIN)).astype(np.float32)
    fns, flops, first = {}, {}, {}
    for v in args.variant:
        fns[v], flops[v], first[v] = build_jax_step(v, x)
    torch_params = None
    if not args.no_torch:
        fns["torch"], torch_params = build_torch_step(args.torch_script, x, args.threads)
    limit = sgemm_gflops()
    med, samples = interleaved(fns, args.repeats, args.warmup, args.block)
    rows = [variant_row(v, med, flops[v], limit, first[v]) for v in args.variant]
    for r in rows:
        print(
            " | ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in r.items())
        )
    payload = {
        "command": "python -m benchmarks.vapo_step_vs_torch " + " ".join(sys.argv[1:]),
        "network": {"ch": CH, "ch_mult": MULT, "num_res_blocks": BLOCKS, "res": RES},
        "batch": args.batch,
        "malloc": args.malloc,
        "torch_threads": args.threads,
        "torch_params": torch_params,
        "sgemm_2048_gflops": limit,
        "torch_s_per_step": med.get("torch"),
        "rows": rows,
        "samples_s": samples,
        "load_avg_before": load_before,
        "load_avg_after": os.getloadavg(),
        "finished_utc": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
    }
    path = record(args.name or f"vapo_step_vs_torch_{args.malloc}", payload)
    print(f"torch {med.get('torch')} s/step; sgemm {limit:.1f} GFLOP/s; wrote {path}")


def variant_row(v: str, med: dict, flops: float, limit: float, first: dict) -> dict:
    jax_s, torch_s = med[v], med.get("torch")
    gflops = flops / 1e9 / jax_s
    return {
        "variant": v,
        "what": VARIANTS[v][2],
        "jax_s": jax_s,
        "torch_s": torch_s,
        "speedup_vs_torch": torch_s / jax_s if torch_s else None,
        "gflop_per_step": flops / 1e9,
        "gflops": gflops,
        "fraction_of_sgemm": gflops / limit,
        "first_loss": first["loss"],
        "first_grad_norm": first["grad_norm"],
    }


if __name__ == "__main__":
    main()

"""VAPO's sampling flow as a likelihood model (docs/methods/shortrun_ebm.md, eq. 1.7 with VAPO's
sign; `jaxgen.samplers.likelihood`).

    python -m benchmarks.vapo_bits_per_dim runs/vapo_fmnist [--num 1000] [--exact 4] [--out]

Gives a trained VAPO run's flow dx/dt = +∇Φ from N(0, σ0² I) over [0, T] a likelihood: bits per
dimension of the first `--num` test images, uniformly dequantised (x = 2(k + u)/256 − 1), with
Hutchinson's estimate (`--probes` Rademacher probes), and on the first `--exact` images also with
the exact trace, as a check of the estimate. `--out` writes `docs/bench/vapo_bits_per_dim.json`
(first after the estimate, then after each exact image, so a cut-short check keeps what it has).
"""

import argparse
import json
import time
from functools import partial
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from benchmarks.common import record, restore


def _vapo_test_images(exp, num: int) -> np.ndarray:
    """The first `num` test images, uniformly dequantised: x = 2(k + u)/256 − 1, `[N, H, W, C]`."""
    from jaxgen.data import load_images

    c = exp.c
    src = load_images(
        c.data.name, "test", pad_to_32=c.data.pad_to_32, data_dir=c.data.data_dir or None
    )
    if src.max_value != 255:
        raise SystemExit(f"vapo_bits_per_dim: expects 8-bit images, got max_value={src.max_value}")
    k = np.asarray(src.images[:num], np.float64)
    u = np.random.default_rng(0).uniform(size=k.shape)
    return (2 * (k + u) / 256 - 1).astype(np.float32)


def _gaussian_log_prob(z, sigma0: float):
    """log N(z; 0, σ0² I) per example, `[B, ...]` -> `[B]` (VAPO's p0)."""
    flat = z.reshape(z.shape[0], -1)
    norm = flat.shape[1] * jnp.log(sigma0 * jnp.sqrt(2 * jnp.pi))
    return -0.5 * jnp.sum(flat**2, 1) / sigma0**2 - norm


def _vapo_bpd_fn(exp, state, args):
    """`bpd(x, key, trace, num_probes) -> (bits/dim [B], nfe, success)` of the run's flow."""
    from jaxgen.methods import vapo
    from jaxgen.samplers.likelihood import bits_per_dim, flow_log_likelihood

    rc, params = exp.rc, state.potential.eval_params(exp.c.eval.ema)
    log_p0 = partial(_gaussian_log_prob, sigma0=rc.method.sigma0)

    def bpd(xb, key, trace, num_probes=args.probes):
        v = lambda t, z: vapo.velocity(params, z, config=rc)
        kw = dict(trace=trace, key=key, num_probes=num_probes, rtol=args.rtol, atol=args.atol)
        with jax.default_matmul_precision("float32"):
            lp, st = flow_log_likelihood(v, xb, t1=rc.sample.t_end, log_p0=log_p0, **kw)
        return bits_per_dim(lp, xb[0].size), st["nfe"], st["success"]

    return bpd


def _prior_bpd(exp, x) -> float:
    """Mean bits/dim of images `x` `[N, H, W, C]` under VAPO's p0 = N(0, σ0² I) alone."""
    from jaxgen.samplers.likelihood import bits_per_dim

    lp = _gaussian_log_prob(jnp.asarray(x), exp.rc.method.sigma0)
    return float(jnp.mean(bits_per_dim(lp, x[0].size)))


def _pixel_bpd(exp, num: int) -> float:
    """Mean bits/dim of the first `num` test images under the independent-pixel control (a
    256-level histogram per pixel counted on the train split; `benchmarks.pixel_baseline`)."""
    from jaxgen.data import load_images
    from jaxgen.metrics.pixel_baseline import fit_pixel_histogram, pixel_bits_per_dim

    c = exp.c
    kw = dict(pad_to_32=c.data.pad_to_32, data_dir=c.data.data_dir or None)
    train, test = (load_images(c.data.name, split, **kw) for split in ("train", "test"))
    probs = fit_pixel_histogram(np.asarray(train.images))
    return float(pixel_bits_per_dim(probs, np.asarray(test.images[:num])).mean())


def vapo_bits_per_dim(args) -> None:
    """Bits/dim of a VAPO run's flow on test images (Hutchinson; exact trace on a few)."""
    exp, state = restore(Path(args.workdir))
    x = _vapo_test_images(exp, args.num)
    bpd_fn = _vapo_bpd_fn(exp, state, args)
    hutch = jax.jit(partial(bpd_fn, trace="hutchinson"))
    bpd, nfe, t = [], [], time.perf_counter()
    for i, start in enumerate(range(0, len(x), args.batch)):
        b, n, ok = hutch(x[start : start + args.batch], jax.random.PRNGKey(i))
        if not bool(ok):
            raise SystemExit(f"vapo_bits_per_dim: the solver ran out of steps on batch {i}")
        bpd.append(np.asarray(b)), nfe.append(int(n))
        print(f"images {start + len(b)}/{len(x)}: {np.mean(np.concatenate(bpd)):.4f} bits/dim")
    bpd = np.concatenate(bpd)
    result = {
        "checkpoint_step": int(state.step),
        "num": len(x),
        "probes": args.probes,
        "rtol": args.rtol,
        "atol": args.atol,
        "ema": exp.c.eval.ema,
        "bits_per_dim": float(bpd.mean()),
        "standard_error": float(bpd.std(ddof=1) / np.sqrt(len(bpd))),
        "nfe_median": float(np.median(nfe)),
        "seconds": time.perf_counter() - t,
        # for scale: the same images under p0 alone (the flow at T = 0); uniform pixels: 8
        "prior_bits_per_dim": _prior_bpd(exp, x),
        # the control a likelihood model must beat: independent pixels, counted
        "independent_pixels_bits_per_dim": _pixel_bpd(exp, len(x)),
    }
    cmd = f"python -m benchmarks.vapo_bits_per_dim {args.workdir} --num {args.num}"
    cmd += f" --exact {args.exact}"
    save = lambda: print(f"wrote {record('vapo_bits_per_dim', {'command': cmd, **result})}")
    print(json.dumps(result, indent=1))
    if args.out:  # before the (slow) exact check, so the estimate is kept if it is cut short
        save()
    if args.exact:
        result["exact_check"] = {"images": []}
        for row in _exact_check(x, bpd_fn, args):
            result["exact_check"]["images"].append(row)
            print(
                ", ".join(
                    f"{k} {v:.4f}" if isinstance(v, float) else f"{k} {v}" for k, v in row.items()
                )
            )
            if args.out:
                save()


def _exact_check(x, bpd_fn, args, repeats: int = 4, probes: int = 16):
    """Per image `i < args.exact`: bits/dim with the exact trace, and `repeats` independent
    Hutchinson estimates with `probes` probes each (their mean and standard error), on the same
    solve; yields one row per image (the exact trace is D JVPs per evaluation: slow)."""
    t = time.perf_counter()
    exact_fn = jax.jit(partial(bpd_fn, trace="exact")).lower(x[:1], None).compile()
    compile_seconds = time.perf_counter() - t
    hutch_fn = jax.jit(partial(bpd_fn, trace="hutchinson", num_probes=probes))
    for i in range(args.exact):
        t = time.perf_counter()  # the solve alone: compiled above, and waited for
        b, n, ok = jax.block_until_ready(exact_fn(x[i : i + 1], None))
        seconds = time.perf_counter() - t
        h, _, h_ok = hutch_fn(np.repeat(x[i : i + 1], repeats, 0), jax.random.PRNGKey(10_000 + i))
        h = np.asarray(h)
        yield {
            "image": i,
            "exact_bits_per_dim": float(b[0]) if bool(ok) else None,
            "hutchinson_mean": float(h.mean()) if bool(h_ok) else None,
            "hutchinson_standard_error": float(h.std(ddof=1) / np.sqrt(repeats)),
            "hutchinson_probes": f"{repeats}x{probes}",
            "nfe": int(n),
            "exact_seconds": seconds,
            "exact_compile_seconds": compile_seconds,
        }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("workdir")
    parser.add_argument("--num", type=int, default=1000)
    parser.add_argument("--batch", type=int, default=100)
    parser.add_argument("--probes", type=int, default=1)
    parser.add_argument("--exact", type=int, default=4)
    parser.add_argument("--rtol", type=float, default=1e-5)
    parser.add_argument("--atol", type=float, default=1e-5)
    parser.add_argument("--out", action="store_true")
    vapo_bits_per_dim(parser.parse_args())


if __name__ == "__main__":
    main()

"""Does DDGAN's discriminator reach chance because it cannot tell, or because the generator
outpaces it? From a fresh init of a config, the recipe's own `train_step` for N steps with the
two networks' rates as given (G's rate ≈ 0 freezes G: D alone against G's init), then D's view
of each denoising step t on held-out images (`benchmarks.ddgan_disc_by_t.step_row`: D(real),
D(fake), accuracy at 0.5) and D's mean logit at t = 1 on real, generated, all-black, all-white
and noise images (does D still depend on its input?).

    python -m benchmarks.ddgan_balance_probe --config experiments/configs/ddgan/digits.py \
        --lr-gen 1.6e-4 --lr-disc 1.25e-4 [--steps 300] [--out NAME]

No decay (the rates stay as given); every 50 steps the training metrics are printed.
"""

import argparse

import jax
import jax.numpy as jnp

from benchmarks.common import record
from benchmarks.ddgan_disc_by_t import pairs_at_step, step_row
from experiments import cli
from jaxgen.methods import ddgan
from tools.tpu_compile import load_config


def probe(c, steps: int) -> dict:
    exp = cli.experiment(c)
    config, stream = exp.rc, exp.stream("train")
    batch = lambda i: {"x": jnp.asarray(stream.batch(i)["x"], jnp.float32)}
    state = ddgan.init(config, batch(0), key=jax.random.PRNGKey(0))
    sched = ddgan.schedule(config)
    step = jax.jit(lambda s, b: ddgan.train_step(s, b, config=config))
    keys = ("loss_d", "d_real", "d_fake", "loss_g", "grad_norm_disc", "grad_norm_gen")
    curve = []
    for i in range(1, steps + 1):
        state, m = step(state, batch(i))
        if i % 50 == 0 or i == steps:
            curve.append({"step": i, **{k: round(float(m[k]), 4) for k in keys}})
            print(curve[-1], flush=True)
    x0 = batch(10_000)["x"]  # a batch the run has not trained on
    rows = [
        step_row(state, x0, t, config, sched, jax.random.PRNGKey(7 + t))
        for t in range(1, config.method.diffusion_steps + 1)
    ]
    return {"curve": curve, "by_t": rows, "logits_t1": _logits_at_t1(state, x0, config, sched)}


def _logits_at_t1(state, x0, config, sched) -> dict:
    """D's mean (sd) logit at t = 1 for the real x₀, G's x₀ and three fixed images."""
    keys = jax.random.PRNGKey(4), jax.random.PRNGKey(3)  # the draw's, the pair's
    _, x_prev, fake, d = pairs_at_step(state, x0, 1, config, sched, *keys)
    inputs = {
        "real": x_prev,
        "generated": fake,
        "black": -jnp.ones_like(x_prev),
        "white": jnp.ones_like(x_prev),
        "noise": jax.random.normal(jax.random.PRNGKey(5), x_prev.shape),
    }
    out = {}
    for name, x in inputs.items():
        logits = d(x)
        out[name] = {"mean": round(float(logits.mean()), 4), "sd": round(float(logits.std()), 4)}
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", default="experiments/configs/ddgan/digits.py")
    ap.add_argument("--lr-gen", type=float, required=True)
    ap.add_argument("--lr-disc", type=float, required=True)
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--out", default="", help="record as docs/bench/<OUT>.json")
    args = ap.parse_args()
    c = load_config(args.config, [])
    c.optim.gen.update(dict(lr=args.lr_gen, decay="constant"))
    c.optim.disc.update(dict(lr=args.lr_disc, decay="constant"))
    result = {"config": args.config, "lr_gen": args.lr_gen, "lr_disc": args.lr_disc,
              "steps": args.steps, **probe(c, args.steps)}  # fmt: skip
    for r in result["by_t"]:
        print({k: round(v, 3) if isinstance(v, float) else v for k, v in r.items()})
    print(result["logits_t1"])
    if args.out:
        record(args.out, result)


if __name__ == "__main__":
    main()

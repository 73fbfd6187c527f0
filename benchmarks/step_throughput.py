"""Throughput of the generic training step, and the trainer's overhead over a bare jitted step.

    python -m benchmarks.step_throughput [--repeats 5]

Models: the VAPO 2-D MLP potential (3×128 GELU, double backward) on 8gaussians, and a small
conv classifier (4 × conv3×3 + GroupNorm + SiLU, Adam, cross-entropy) on Fashion-MNIST 28×28;
two batch sizes each.
- "bare": `jax.jit(step, donate)` on distinct batches already on the device, blocking each step;
- "trainer": `jaxgen.train.loop.fit` (data stream, prefetch, non-finite guard, host check of
  each call, metric logging), timed by its own examples/s log, with 1 and K = 10 steps per call.
All three run interleaved in one process; medians of the repeats.
"""

import argparse
import tempfile
import time
from functools import partial

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import struct

from benchmarks.common import record
from jaxgen.data import make_stream
from jaxgen.methods import vapo
from jaxgen.parallel import global_batch, make_mesh
from jaxgen.train.logging import MetricsWriter, read_metrics
from jaxgen.train.loop import Schedule, fit
from jaxgen.train.state import ModelState, apply_gradients, init_model_state


@struct.dataclass
class ConvState:
    step: jax.Array
    model: ModelState


class ConvClassifier(nn.Module):
    @nn.compact
    def __call__(self, x):
        for ch, stride in ((32, 1), (64, 2), (128, 2), (128, 2)):
            x = nn.Conv(ch, (3, 3), strides=stride)(x)
            x = nn.silu(nn.GroupNorm(8)(x))
        return nn.Dense(10)(x.mean((1, 2)))


def conv_recipe():
    tx = optax.adam(1e-3)
    net = ConvClassifier()

    def init(batch, key):
        params = net.init(key, batch["x"][:1])["params"]
        return ConvState(jnp.zeros((), jnp.int32), init_model_state(params, tx))

    def step(state, batch):
        def loss(p):
            logits = net.apply({"params": p}, batch["x"])
            return optax.softmax_cross_entropy_with_integer_labels(logits, batch["label"]).mean()

        value, grads = jax.value_and_grad(loss)(state.model.params)
        ms, gnorm = apply_gradients(state.model, grads, tx, step=state.step, ema_rate=0.999)
        return ConvState(state.step + 1, ms), {"loss": value, "grad_norm": gnorm}

    return init, step


def vapo_recipe():
    cfg = vapo.Config()
    return (lambda batch, key: vapo.init(cfg, batch, key=key)), partial(vapo.train_step, config=cfg)


def bare_seconds_per_step(init, step, stream, n: int) -> float:
    """A bare `jax.jit(step, donate)` loop over `n` distinct batches placed on the device
    beforehand (no data work, no guard, no logging), blocking on every step."""
    mesh = make_mesh(1)
    batches = [global_batch(stream.batch(i), mesh) for i in range(n + 2)]
    state = init(stream.batch(0), jax.random.PRNGKey(0))
    f = jax.jit(step, donate_argnums=0)
    for b in batches[:2]:
        state, m = f(state, b)
    jax.block_until_ready(state)
    t = time.perf_counter()
    for b in batches[2:]:
        state, m = f(state, b)
        jax.block_until_ready(m)
    return (time.perf_counter() - t) / n


def trainer_seconds_per_step(
    init, step, stream, n: int, log_every: int, k: int = 1, tensorboard: bool = True
) -> float:
    state = init(stream.batch(0), jax.random.PRNGKey(0))
    with tempfile.TemporaryDirectory() as d:
        writer = MetricsWriter(d, tensorboard=tensorboard)
        fit(
            step,
            state,
            stream,
            make_mesh(1),
            Schedule(n + log_every, log_every, 0),
            writer=writer,
            progress=False,
        )
        writer.close()
        rates = [r["examples_per_s"] for r in read_metrics(d)][1:]  # first interval has compile
    return stream.batch_size / float(np.median(rates))


K = 10  # steps per call for the scanned trainer variant


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--only", default="", help="run only the models whose name contains this")
    ap.add_argument("--no-tensorboard", action="store_true", help="trainer logs to jsonl only")
    args = ap.parse_args()
    cases = [("vapo_mlp_8gaussians", vapo_recipe, "8gaussians", b, 1000, 100) for b in (256, 2048)]
    cases += [("conv_fashion_mnist", conv_recipe, "fashion_mnist", b, 60, 20) for b in (32, 128)]
    rows = []
    cases = [case for case in cases if args.only in case[0]]
    tb = not args.no_tensorboard
    for name, recipe, data, batch, n, log_every in cases:
        init, step = recipe()
        stream = make_stream(data, batch, seed=0)
        bare, trainer, trainer_k = [], [], []
        for _ in range(args.repeats):  # interleaved, so all see the same machine load
            bare.append(bare_seconds_per_step(init, step, stream, n))
            trainer.append(trainer_seconds_per_step(init, step, stream, n, log_every, 1, tb))
            trainer_k.append(trainer_seconds_per_step(init, step, stream, n, log_every, K, tb))
        b, t, tk = (float(np.median(v)) for v in (bare, trainer, trainer_k))
        row = {
            "model": name,
            "batch": batch,
            "bare_ms_per_step": 1e3 * b,
            "trainer_ms_per_step": 1e3 * t,
            f"trainer_k{K}_ms_per_step": 1e3 * tk,
            "bare_steps_per_s": 1 / b,
            "trainer_steps_per_s": 1 / t,
            "examples_per_s": batch / t,
            "overhead_pct": 100 * (t / b - 1),
            f"overhead_k{K}_pct": 100 * (tk / b - 1),
            "repeats": args.repeats,
        }
        rows.append(row)
        print({k: round(v, 3) if isinstance(v, float) else v for k, v in row.items()}, flush=True)
    name = "step_throughput" + (f"_{args.only}" if args.only else "") + ("" if tb else "_no_tb")
    print("wrote", record(name, {"rows": rows, "tensorboard": tb}))


if __name__ == "__main__":
    main()

"""Throughput of the generic training step, and the trainer's overhead over a bare jitted step.

    python -m benchmarks.step_throughput [--repeats 9] [--only conv]

Models: a no-op step (its time per step is the loop's own host cost); the VAPO 2-D MLP
potential (3×128 GELU, double backward) on 8gaussians and a small conv classifier
(4 × conv3×3 + GroupNorm + SiLU, Adam, cross-entropy) on Fashion-MNIST 28×28, two batch sizes each.
- "bare": `jax.jit(step, donate)` on distinct batches already on the device, blocking each
  step or only at the end (dispatch runs ahead); overheads are over the faster of the two;
- "trainer": `jaxgen.train.loop.fit` (data stream, non-finite guard, host check of each call,
  metric logging), timed by its own examples/s log (the first interval, with the compile, is
  dropped), with 1 and K = 10 steps per call.
All variants run interleaved in one process; overheads are paired per repeat, then the median
(and quartiles) over the repeats.
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
from jaxgen.optim import ModelState, init_model_state
from jaxgen.parallel import global_batch, make_mesh
from jaxgen.train.logging import MetricsWriter, read_metrics
from jaxgen.train.loop import TrainPlan, fit


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
        ms, gnorm = state.model.apply_gradients(grads, step=state.step)
        return ConvState(state.step + 1, ms), {"loss": value, "grad_norm": gnorm}

    return init, step


@struct.dataclass
class NoopState:
    step: jax.Array
    w: jax.Array


def noop_recipe():
    """A step with (almost) no device work: its time per step is the loop's own host cost."""

    def init(batch, key):
        return NoopState(jnp.zeros((), jnp.int32), jnp.zeros(()))

    def step(state, batch):
        w = state.w + batch["x"].mean()
        return NoopState(state.step + 1, w), {"loss": w, "grad_norm": w}

    return init, step


def vapo_recipe():
    cfg = vapo.Config()
    return (lambda batch, key: vapo.init(cfg, batch, key=key)), partial(vapo.train_step, config=cfg)


def bare_seconds_per_step(init, step, stream, n: int, block_each: bool = True) -> float:
    """A bare `jax.jit(step, donate)` loop over `n` distinct batches placed on the device
    beforehand (no data work, no guard, no logging), blocking on every step's metrics, or
    (`block_each=False`) only at the end, letting dispatch run ahead of the device."""
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
        if block_each:
            jax.block_until_ready(m)
    jax.block_until_ready((state, m))
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
            TrainPlan(n + log_every, log_every, 0, steps_per_call=k),
            writer=writer,
            progress=False,
        )
        writer.close()
        rates = [r["examples_per_s"] for r in read_metrics(d)][1:]  # first interval has compile
    return stream.batch_size / float(np.median(rates))


K = 10  # steps per call for the scanned trainer variant
# (name, recipe, data, batch, timed steps, log interval): about 2-3 s of timed steps per variant
CASES = [
    ("noop_8gaussians", noop_recipe, "8gaussians", 256, 10000, 2000),
    ("vapo_mlp_8gaussians", vapo_recipe, "8gaussians", 256, 2000, 400),
    ("vapo_mlp_8gaussians", vapo_recipe, "8gaussians", 2048, 500, 100),
    ("conv_fashion_mnist", conv_recipe, "fashion_mnist", 32, 150, 30),
    ("conv_fashion_mnist", conv_recipe, "fashion_mnist", 128, 30, 10),
]


def measure_case(recipe, data, batch, n, log_every, repeats, tb) -> dict:
    """Seconds per step of each variant, interleaved repeat by repeat (so all see the same
    machine load); the overheads are paired: each repeat's trainer time over the faster bare
    loop of the same repeat."""
    init, step = recipe()
    stream = make_stream(data, batch, seed=0)
    variants = {
        "bare_blocking": lambda: bare_seconds_per_step(init, step, stream, n),
        "bare_async": lambda: bare_seconds_per_step(init, step, stream, n, block_each=False),
        "trainer_k1": lambda: trainer_seconds_per_step(init, step, stream, n, log_every, 1, tb),
        f"trainer_k{K}": lambda: trainer_seconds_per_step(init, step, stream, n, log_every, K, tb),
    }
    times = {v: [] for v in variants}
    for _ in range(repeats):
        for v, fn in variants.items():
            times[v].append(fn())
    times = {v: np.asarray(t) for v, t in times.items()}
    bare = np.minimum(times["bare_blocking"], times["bare_async"])
    row = {f"{v}_ms_per_step": 1e3 * float(np.median(t)) for v, t in times.items()}
    for v in ("trainer_k1", f"trainer_k{K}"):
        paired = 100 * (times[v] / bare - 1)
        row[f"overhead_{v}_pct_median"] = float(np.median(paired))
        row[f"overhead_{v}_pct_quartiles"] = np.percentile(paired, [25, 75]).tolist()
    row["trainer_k1_steps_per_s"] = 1e3 / row["trainer_k1_ms_per_step"]
    row["examples_per_s"] = batch * row["trainer_k1_steps_per_s"]
    row["raw_seconds_per_step"] = {v: t.tolist() for v, t in times.items()}
    return row


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeats", type=int, default=9)
    ap.add_argument("--only", default="", help="run only the models whose name contains this")
    ap.add_argument("--no-tensorboard", action="store_true", help="trainer logs to jsonl only")
    args = ap.parse_args()
    tb = not args.no_tensorboard
    rows = []
    for name, recipe, data, batch, n, log_every in CASES:
        if args.only not in name:
            continue
        row = {"model": name, "batch": batch, "steps_timed": n, "repeats": args.repeats}
        row.update(measure_case(recipe, data, batch, n, log_every, args.repeats, tb))
        rows.append(row)
        shown = {k: v for k, v in row.items() if k != "raw_seconds_per_step"}
        print(jax.tree.map(lambda v: round(v, 3) if isinstance(v, float) else v, shown), flush=True)
    name = "step_throughput" + (f"_{args.only}" if args.only else "") + ("" if tb else "_no_tb")
    print("wrote", record(name, {"rows": rows, "tensorboard": tb}))


if __name__ == "__main__":
    main()

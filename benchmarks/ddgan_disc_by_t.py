"""How much can a trained DDGAN's discriminator tell, at each denoising step? On the run's
weights and one fixed batch of training images, for every t = 1..T: the real pairs
(x_{t−1}, x_t) of q and the generator's (x'_{t−1}, x_t) on the same x_t, D's mean probability
on each, its accuracy at 0.5, D on real x_{t−1} paired with *another* image's x_t (does D use
the condition?), and how far G's x'_{t−1} lies from the real x_{t−1} and how noisy the real
x_{t−1} is (its standard deviation; 1 is pure noise).

    python -m benchmarks.ddgan_disc_by_t --workdir runs/ddgan_fmnist [--step N] [--batch 256] \
        [--out NAME]

A D "at chance" in the training curves averages over t; this shows which steps carry signal.
"""

import argparse

import jax
import jax.numpy as jnp
import numpy as np

from benchmarks.vapo_gradient_noise import record_result, restore_with_batch, run_arguments
from jaxgen.methods import ddgan


def pairs_at_step(state, x0, t_value: int, config, sched, k_draw, k_pair):
    """`(draw, x_prev, fake, d)` at step `t_value` for the images `x0` `[B, ...]`: the draw with
    the real pair (x_{t−1}, x_t) of q, G's x'_{t−1} on the same x_t, and D's logit function."""
    draw = ddgan._draw(k_draw, x0, config, sched)
    t = jnp.full((x0.shape[0],), t_value)
    x_prev, x_t = ddgan.q_pair(sched, x0, t, k_pair)
    draw.update(t=t, x_t=x_t, real=x_prev, cond=x_t, d_step=t - 1)
    fake = ddgan._fake(state.gen.params, draw, config=config, sched=sched)
    return draw, x_prev, fake, ddgan._logit_fn(state.disc.params, draw, config)


def step_row(state, x0, t_value: int, config, sched, key) -> dict:
    """D's view of real and generated pairs at step `t_value` for the images `x0` `[B, ...]`."""
    k_draw, k_pair = jax.random.split(key)
    draw, x_prev, fake, d = pairs_at_step(state, x0, t_value, config, sched, k_draw, k_pair)
    x_t = draw["x_t"]
    p_real, p_fake = jax.nn.sigmoid(d(x_prev)), jax.nn.sigmoid(d(fake))
    other = dict(draw, cond=jnp.roll(x_t, 1, axis=0))
    p_mismatch = jax.nn.sigmoid(ddgan._logit_fn(state.disc.params, other, config)(x_prev))
    return {
        "t": t_value,
        "d_real": float(p_real.mean()),
        "d_fake": float(p_fake.mean()),
        "accuracy": float(0.5 * (np.mean(p_real > 0.5) + np.mean(p_fake < 0.5))),
        "d_real_mismatched_condition": float(p_mismatch.mean()),
        "mean_abs_fake_minus_real": float(jnp.abs(x_prev - fake).mean()),
        "std_real_prev": float(x_prev.std()),
    }


def main():
    ap = run_arguments(argparse.ArgumentParser(), draws=1)
    ap.set_defaults(batch=256)
    args = ap.parse_args()
    c, exp, state, x0 = restore_with_batch(args)
    config, key = exp.rc, jax.random.PRNGKey(5)
    sched = ddgan.schedule(config)
    rows = [
        step_row(state, x0, t, config, sched, jax.random.fold_in(key, t))
        for t in range(1, config.method.diffusion_steps + 1)
    ]
    for r in rows:
        print(
            "  ".join(f"{k} {v:.3f}" if isinstance(v, float) else f"{k} {v}" for k, v in r.items())
        )
    record_result(args, c, state, x0, steps=rows)


if __name__ == "__main__":
    main()

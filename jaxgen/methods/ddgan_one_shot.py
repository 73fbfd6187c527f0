"""The one-shot GAN with diffusion augmentation, DDGAN's T = 1 baseline in the thesis's Table 6.2
(docs/methods/ddgan.md §7): G maps x_1 ~ N(0, I) to an image in one pass, and D sees real and
generated images alike diffused to a step s ~ U{1..A−1} of an A-step VP process (eq. 7.1), never
clean and never the last step. `method.one_shot_aug_steps = A` in the `ddgan` recipe turns it on;
these are its draws and its perturbation, kept apart from the DDGAN chain."""

import jax
import jax.numpy as jnp

from jaxgen.methods.common import batch_draw
from jaxgen.parallel import shard_over_batch
from jaxgen.samplers.diffusion import VPSchedule, q_sample, vp_schedule


def augmentation_schedule(method) -> VPSchedule:
    """The A-step perturbation process of `method` (ddgan's `Method` section): its β range and
    offset over A = `one_shot_aug_steps` steps."""
    m = method
    return vp_schedule(
        m.one_shot_aug_steps, beta_min=m.beta_min, beta_max=m.beta_max, offset=m.offset
    )


def one_shot_draw(k_step, k_pair, x0, method) -> dict:
    """G's input and D's real side for data `x0` `[B, ...]`: `t` = 1 `[B]`, `x_t` = x_1 ~ N(0, I),
    `real` = x0 diffused to `d_step` = s ~ U{1..A−1} `[B]`, and `cond` = 0 (D's conditioning
    slot, which DDGAN fills with x_t)."""
    b = x0.shape[0]
    s = batch_draw(jax.random.randint, k_step, (b,), minval=1, maxval=method.one_shot_aug_steps)
    eps_real, x_1 = jax.random.normal(k_pair, (2, *x0.shape))
    real = shard_over_batch(q_sample(augmentation_schedule(method), x0, s, eps_real))
    t = jnp.ones((b,), jnp.int32)
    return dict(t=t, x_t=shard_over_batch(x_1), real=real, cond=jnp.zeros_like(x0), d_step=s)


def augment(fake, draw: dict, method):
    """G's image `[B, ...]` diffused to the draw's step s with the draw's `noise`, differentiably
    (the G step's gradient flows through the perturbation)."""
    return q_sample(augmentation_schedule(method), fake, draw["d_step"], draw["noise"])

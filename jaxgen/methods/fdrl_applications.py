"""FDRL's applications as library calls (docs/methods/fdrl.md §4): class-conditional sampling
through any classifier passed in as a function, and unpaired translation of given source images.

    x, stats = guided_sample(state, 64, 3, classifier, config=cfg, key=key, shape=(32, 32, 1))

`classifier(x [B, H, W, C] in [-1, 1]) -> [B, N]` log-probabilities (logits work too: the rows
are normalised with `log_softmax`, which leaves log-probabilities unchanged).
"""

import jax
import jax.numpy as jnp

from jaxgen.methods import fdrl
from jaxgen.methods.common import check_count, sample_shape
from jaxgen.methods.fdrl import translate  # noqa: F401  (its home is the recipe, checked)


def class_log_prob(classifier, label: int, num: int, shape: tuple):
    """`(x -> [B] log p(label | x), N)` for `classifier` as in the module docstring, after one
    clear error when its output for `num` examples of `shape` is not `[num, N]` or `label` is not
    one of its N classes (checked on shapes only, nothing is run)."""
    out = jax.eval_shape(classifier, jax.ShapeDtypeStruct((num, *shape), jnp.float32))
    out_shape = getattr(out, "shape", None)
    if out_shape is None or len(out_shape) != 2 or out_shape[0] != num or out_shape[1] < 2:
        raise ValueError(
            f"fdrl guidance: the classifier returned {out_shape or type(out).__name__} for "
            f"{num} images of shape {shape}; it must return [B, N] log-probabilities (one row "
            "per image, one column per class, N >= 2)"
        )
    num_classes = int(out_shape[1])
    if isinstance(label, bool) or not isinstance(label, int) or not 0 <= label < num_classes:
        raise ValueError(
            f"fdrl guidance: label={label!r}, the classifier has classes 0..{num_classes - 1}"
        )
    return (lambda x: jax.nn.log_softmax(classifier(x), axis=-1)[:, label]), num_classes


def guided_sample(
    state,
    num: int,
    label: int,
    classifier,
    *,
    config: fdrl.Config,
    key,
    shape,
    phi: float = 1.0,
    num_steps=None,
    use_ema: bool = True,
):
    """`num` samples of class `label` `[num, *shape]`: prior draws flowed `num_steps` (default
    K + κ) steps of the class-conditional ratio r(x|y) = r(x) / (N p(y|x)^φ) (eqs. 12-13).

    `phi` scales the classifier's gradient against the ratio's: φ = 1 is the paper's eq. (29);
    the reference code uses 0.1; a separate classifier step η′ (the paper's "2η" question,
    docs/methods/fdrl.md §4.1) is φ = η′/η. Returns `(x, stats)` as `fdrl.sample`."""
    num = check_count(num, "fdrl.guided_sample")
    shape = sample_shape(state, shape, "fdrl.guided_sample")
    if not phi > 0:
        raise ValueError(f"fdrl.guided_sample: phi must be > 0, got {phi!r}")
    log_prob, num_classes = class_log_prob(classifier, label, num, shape)
    k_prior, k_flow = jax.random.split(key)
    x0 = fdrl.sample_prior(state, num, shape, k_prior, config=config)
    guide = (log_prob, num_classes, float(phi))
    return fdrl.flow_from(
        state, x0, config=config, key=k_flow, num_steps=num_steps, use_ema=use_ema, guide=guide
    )

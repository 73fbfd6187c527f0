"""VAEBM configs (docs/methods/vaebm.md). `IMAGE_SMOKE`: the image configs' smoke settings (a
4-channel energy on a 16-wide, 4-d base, 2-step chains)."""

IMAGE_SMOKE = (
    ("model.nf", 4),
    ("model.base.hidden", (16,)),
    ("model.base.latent", 4),
    ("method.langevin_steps", 2),
    ("sample.langevin_steps", 2),
)

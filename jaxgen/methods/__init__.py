"""Method recipes (`Config`, `init`, `train_step`, `sample`, `CAPABILITIES`) and their registry."""

from jaxgen.methods import ddgan, fdrl, gan2d, glf, shortrun_ebm, vae, vaebm, vapo

RECIPES = {
    "ddgan": ddgan,
    "fdrl": fdrl,
    "gan2d": gan2d,
    "glf": glf,
    "shortrun_ebm": shortrun_ebm,
    "vae": vae,
    "vaebm": vaebm,
    "vapo": vapo,
}


def get_recipe(name: str):
    if name not in RECIPES:
        raise ValueError(f"unknown method {name!r}; choose one of {sorted(RECIPES)}")
    return RECIPES[name]

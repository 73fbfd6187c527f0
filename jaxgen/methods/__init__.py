"""Method recipes (`Config`, `init`, `train_step`, `sample`) and their registry."""

from jaxgen.methods import fdrl, vapo

RECIPES = {"fdrl": fdrl, "vapo": vapo}


def get_recipe(name: str):
    if name not in RECIPES:
        raise ValueError(f"unknown method {name!r}; choose one of {sorted(RECIPES)}")
    return RECIPES[name]

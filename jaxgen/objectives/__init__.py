"""Pure loss functions returning per-example terms `[B]`."""

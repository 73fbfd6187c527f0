"""Pure, key-explicit, jittable samplers (ODE, SDE, Langevin)."""

from jaxgen.samplers.ode import solve_adaptive, solve_adaptive_per_sample, solve_fixed
from jaxgen.samplers.sde import euler_maruyama, noise_scale

__all__ = [
    "euler_maruyama",
    "noise_scale",
    "solve_adaptive",
    "solve_adaptive_per_sample",
    "solve_fixed",
]

"""Pure, key-explicit, jittable samplers (ODE, SDE, Langevin)."""

from jaxgen.samplers.ode import solve_adaptive, solve_adaptive_per_sample, solve_fixed

__all__ = ["solve_adaptive", "solve_adaptive_per_sample", "solve_fixed"]

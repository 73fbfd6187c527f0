"""Pure, key-explicit, jittable samplers (ODE, SDE, Langevin) and flow likelihoods."""

from jaxgen.samplers.langevin import langevin, thesis_setting
from jaxgen.samplers.likelihood import bits_per_dim, flow_log_likelihood
from jaxgen.samplers.ode import solve_adaptive, solve_adaptive_per_sample, solve_fixed
from jaxgen.samplers.sde import euler_maruyama, noise_scale

__all__ = [
    "bits_per_dim",
    "euler_maruyama",
    "flow_log_likelihood",
    "langevin",
    "noise_scale",
    "solve_adaptive",
    "solve_adaptive_per_sample",
    "solve_fixed",
    "thesis_setting",
]

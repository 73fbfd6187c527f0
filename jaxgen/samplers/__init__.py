"""Pure, key-explicit, jittable samplers (ODE, SDE, Langevin, the DDGAN diffusion chain) and
flow likelihoods."""

from jaxgen.samplers.diffusion import (
    VPSchedule,
    ddgan_chain,
    posterior_sample,
    q_pair,
    q_sample,
    vp_schedule,
)
from jaxgen.samplers.langevin import langevin, thesis_setting
from jaxgen.samplers.likelihood import bits_per_dim, flow_log_likelihood
from jaxgen.samplers.ode import solve_adaptive, solve_adaptive_per_sample, solve_fixed
from jaxgen.samplers.sde import euler_maruyama, noise_scale

__all__ = [
    "VPSchedule",
    "ddgan_chain",
    "bits_per_dim",
    "euler_maruyama",
    "flow_log_likelihood",
    "langevin",
    "noise_scale",
    "posterior_sample",
    "q_pair",
    "q_sample",
    "solve_adaptive",
    "solve_adaptive_per_sample",
    "solve_fixed",
    "thesis_setting",
    "vp_schedule",
]

"""jaxgen: energy-, flow- and adversarial generative models as pure, jitted JAX functions."""

__version__ = "0.1.0"

"""Training state, optimizers, the sharded step, checkpoints and logging."""

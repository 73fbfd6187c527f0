"""Applying a module that keeps BatchNorm running statistics, as a pure function."""


def apply_with_batch_stats(module, params, batch_stats, *args, train: bool):
    """`(output, batch_stats)` of `module(*args, train=train)`: in training the BatchNorm layers
    use the batch's statistics and return their updated running averages; otherwise they use
    `batch_stats` and return them unchanged."""
    variables = {"params": params, "batch_stats": batch_stats}
    if not train:
        return module.apply(variables, *args, train=False), batch_stats
    out, new = module.apply(variables, *args, train=True, mutable=["batch_stats"])
    return out, new["batch_stats"]

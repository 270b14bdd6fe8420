"""The engine: state, steps, loop, parallelism, checkpoints, optimizers, losses, metrics."""

"""The train state: everything a step reads and writes, and everything a checkpoint holds."""

from typing import Any, Callable

import jax
import optax
from flax import struct


class TrainState(struct.PyTreeNode):
  """step, params, optimizer state, mutable collections (batch-norm statistics), RNG.

  The RNG is a typed key that never changes: step t uses fold_in(rng, t), so the
  randomness of a step depends only on (seed, t) and a resumed run replays it exactly.
  """
  step: jax.Array
  params: Any
  opt_state: Any
  model_state: Any
  rng: jax.Array
  apply_fn: Callable = struct.field(pytree_node=False)
  tx: optax.GradientTransformation = struct.field(pytree_node=False)

  def step_rng(self) -> jax.Array:
    return jax.random.fold_in(self.rng, self.step)

  def variables(self, params=None) -> dict:
    """The `variables` dict for `apply_fn`: params plus the mutable collections."""
    return {'params': self.params if params is None else params, **self.model_state}


def create(model, tx: optax.GradientTransformation, example_batch: dict, seed: int):
  """Initialises the model on `example_batch['inputs']` and the optimizer on its params."""
  init_rng, dropout_rng, train_rng = jax.random.split(jax.random.key(seed), 3)
  variables = model.init({'params': init_rng, 'dropout': dropout_rng},
                         example_batch['inputs'], train=False)
  params = variables.pop('params')
  return TrainState(step=jax.numpy.zeros([], jax.numpy.int32), params=params,
                    opt_state=tx.init(params), model_state=dict(variables), rng=train_rng,
                    apply_fn=model.apply, tx=tx)


def parameter_count(params) -> int:
  return sum(x.size for x in jax.tree.leaves(params))

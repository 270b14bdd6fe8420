"""The train state: everything a step reads and writes, and everything a checkpoint holds."""

from typing import Any, Callable, Sequence

import flax.linen as nn
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


def initializer(model, tx: optax.GradientTransformation, seed: int,
                state_collections: Sequence[str],
                init_params: Callable[[Any], Any] = lambda params: params
                ) -> Callable[..., TrainState]:
  """A pure `init(*model_inputs) -> TrainState`, to run under `jit` (or `eval_shape`).

  Only `state_collections` of what `model.init` creates are kept as model state; any
  other collection (a decoding cache, say) is not training state. `init_params` replaces
  parts of the fresh parameters (pretrained embeddings) before the optimizer state is
  built from them.
  """
  def init(*model_inputs) -> TrainState:
    init_rng, dropout_rng, train_rng = jax.random.split(jax.random.key(seed), 3)
    variables = nn.meta.unbox(model.init({'params': init_rng, 'dropout': dropout_rng},
                                         *model_inputs, train=False))
    params = init_params(variables['params'])
    model_state = {k: v for k, v in variables.items() if k in state_collections}
    return TrainState(step=jax.numpy.zeros([], jax.numpy.int32), params=params,
                      opt_state=tx.init(params), model_state=model_state, rng=train_rng,
                      apply_fn=model.apply, tx=tx)
  return init


def param_axes(model, *input_structs) -> dict[str, tuple[str | None, ...]]:
  """{parameter path: logical axis names} of the parameters the model names (those it
  creates in `nn.LogicallyPartitioned` boxes, nets/scale.py), from shapes alone."""
  rngs = {'params': jax.random.key(0), 'dropout': jax.random.key(0)}
  boxed = jax.eval_shape(lambda *xs: model.init(rngs, *xs, train=False), *input_structs)
  is_box = lambda x: isinstance(x, nn.LogicallyPartitioned)
  leaves = jax.tree_util.tree_leaves_with_path(boxed['params'], is_leaf=is_box)
  return {'/'.join(str(k.key) for k in path): box.names for path, box in leaves if is_box(box)}


def parameter_count(params) -> int:
  return sum(x.size for x in jax.tree.leaves(params))

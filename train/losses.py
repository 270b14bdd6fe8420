"""Per-example losses, written from their equations in numerically stable form.

Each returns one loss per example (leading axes kept, the class axis reduced) so tasks can
weight by the padding mask before averaging.
"""

import jax
import jax.numpy as jnp


def smooth_labels(one_hot_BxK: jax.Array, smoothing: float) -> jax.Array:
  """(1 - eps) * y + eps / K: spreads eps of the target mass over all K classes."""
  num_classes = one_hot_BxK.shape[-1]
  return one_hot_BxK * (1.0 - smoothing) + smoothing / num_classes


def softmax_cross_entropy(logits_BxK, labels_B, label_smoothing: float = 0.0):
  """-sum_k y_k log softmax(z)_k, with log softmax(z) = z - logsumexp(z).

  Subtracting max(z) inside logsumexp keeps exp() from overflowing; computing the log
  probability directly (not log of a softmax) keeps it from underflowing to log 0.
  """
  targets = smooth_labels(jax.nn.one_hot(labels_B, logits_BxK.shape[-1]), label_smoothing)
  log_probs = jax.nn.log_softmax(logits_BxK.astype(jnp.float32))
  return -jnp.sum(targets * log_probs, axis=-1)


def sigmoid_cross_entropy(logits_BxK, targets_BxK, label_smoothing: float = 0.0):
  """-[y log s(z) + (1 - y) log(1 - s(z))], summed over the K independent outputs.

  Since log s(z) = -softplus(-z) and log(1 - s(z)) = -softplus(z), this is
  softplus(z) - z*y, with softplus(z) = log(1 + e^z) = max(z, 0) + log1p(e^-|z|) evaluated
  stably by jax.nn.softplus. (Writing the max/abs form out by hand gives the wrong
  gradient at exactly z = 0, where zero-initialised output layers start.)
  """
  z = logits_BxK.astype(jnp.float32)
  y = targets_BxK * (1.0 - label_smoothing) + 0.5 * label_smoothing
  per_output = jax.nn.softplus(z) - z * y
  return jnp.sum(per_output, axis=-1)


def mean_squared_error(predictions_BxK, targets_BxK):
  """mean_k (y_hat_k - y_k)^2."""
  return jnp.mean(jnp.square(predictions_BxK.astype(jnp.float32) - targets_BxK), axis=-1)


# The parameter names Flax gives to weight matrices, filters and embedding tables, and
# the graph attention vectors a of nets/gat.py (a learned projection, like a kernel).
WEIGHT_NAMES = ('kernel', 'embedding', 'attention')


def is_weight(path, leaf) -> bool:
  """Weights are the leaves named in WEIGHT_NAMES: matrices, filters, tables.

  Decided by name, not rank: a multi-head projection's bias is [heads, head_dim] and
  `nn.scan` stacks every bias and norm scale into a matrix, yet none of them is a
  weight. Biases and the scale/offset of normalisation layers only move where a unit's
  response is centred, not the model's capacity, so L2 and weight decay leave them.
  """
  del leaf
  last = path[-1] if path else None
  return str(getattr(last, 'key', getattr(last, 'name', last))) in WEIGHT_NAMES


def l2_penalty(params) -> jax.Array:
  """(1/2) sum_W ||W||^2 over weights only; the engine multiplies it by config.l2."""
  leaves = jax.tree_util.tree_leaves_with_path(params)
  return 0.5 * sum(jnp.sum(jnp.square(w)) for path, w in leaves if is_weight(path, w))


LOSSES = {
    'softmax_cross_entropy': softmax_cross_entropy,
    'sigmoid_cross_entropy': sigmoid_cross_entropy,
    'mse': mean_squared_error,
}

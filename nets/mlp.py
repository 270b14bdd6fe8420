"""Neurons and multi-layer perceptrons.

A single neuron (logistic regression) is `MLP(hidden=(), num_outputs=1, output='sigmoid')`:

    p(y=1 | x) = sigmoid(w . x + b),        sigmoid(z) = 1 / (1 + exp(-z))

An MLP stacks affine layers and nonlinearities, h_{l+1} = f(W_l h_l + b_l), and ends in an
output layer chosen by the task:

    linear   y = W h + b                  (regression, trained with squared error)
    sigmoid  p = sigmoid(W h + b)         (independent binary outputs, binary cross-entropy)
    softmax  p_k = exp(z_k) / sum_j exp(z_j),  z = W h + b   (one of K classes)

The module returns the output layer's *pre-activation* z ("logits"): the losses fold the
sigmoid/softmax into a numerically stable log-sum-exp, and `probabilities` applies it
when a caller wants p.
"""

from typing import Callable, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp


def hard_sigmoid(x):
  """Piecewise-linear sigmoid from two ReLUs: (relu(x+1) - relu(x-1)) / 2.

  It is 0 for x <= -1, (x+1)/2 in between and 1 for x >= 1: a ReLU network can
  represent it exactly, and its gradient is 1/2 or 0 (never a vanishing tail).
  """
  return (nn.relu(x + 1.0) - nn.relu(x - 1.0)) / 2.0


ACTIVATIONS: dict[str, Callable] = {
    'sigmoid': nn.sigmoid,
    'tanh': jnp.tanh,
    'relu': nn.relu,
    'hard_sigmoid': hard_sigmoid,
}

# Glorot keeps the activation variance constant for tanh/sigmoid (Var W = 2/(fan_in+fan_out));
# He doubles it for ReLU, which zeroes half its inputs (Var W = 2/fan_in); LeCun keeps the
# pre-activation variance of unit-variance inputs (Var W = 1/fan_in); small normal is the
# classic N(0, 0.01^2); zeros makes every unit of a layer the same function of its inputs,
# with the same gradient, so they stay identical (the symmetry that random init breaks).
INITIALIZERS: dict[str, Callable] = {
    'glorot': nn.initializers.glorot_uniform(),
    'he': nn.initializers.he_normal(),
    'lecun': nn.initializers.lecun_normal(),
    'small_normal': nn.initializers.normal(stddev=0.01),
    'zeros': nn.initializers.zeros,
}

OUTPUTS: dict[str, Callable] = {
    'linear': lambda z: z,
    'sigmoid': nn.sigmoid,
    'softmax': nn.softmax,
}


class ModelConfigError(ValueError):
  """A model field holds a value the model cannot use; the message names the field."""


def check_choice(field: str, value: str, table: dict) -> None:
  if value not in table:
    raise ModelConfigError(f'config.model.{field}={value!r} is not one of {sorted(table)}.')


class MLP(nn.Module):
  """Affine layers of widths `hidden`, then an output layer of `num_outputs` units."""
  hidden: Sequence[int] = (128,)
  num_outputs: int = 10
  activation: str = 'relu'
  output: str = 'softmax'
  initializer: str = 'glorot'
  dropout_rate: float = 0.0

  @nn.compact
  def __call__(self, x, *, train: bool = False):
    check_choice('activation', self.activation, ACTIVATIONS)
    check_choice('output', self.output, OUTPUTS)
    check_choice('initializer', self.initializer, INITIALIZERS)
    act, kernel_init = ACTIVATIONS[self.activation], INITIALIZERS[self.initializer]
    h_BxD = x.reshape(x.shape[0], -1)
    for width in self.hidden:
      h_BxD = act(nn.Dense(width, kernel_init=kernel_init)(h_BxD))
      h_BxD = nn.Dropout(self.dropout_rate, deterministic=not train)(h_BxD)
    return nn.Dense(self.num_outputs, kernel_init=kernel_init)(h_BxD)

  def probabilities(self, logits: jax.Array) -> jax.Array:
    return OUTPUTS[self.output](logits)

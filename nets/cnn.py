"""Convolutional networks: convolution, pooling, batch norm, a fully connected head.

A convolution slides a K x K x C_in filter bank over the image:

    y[i, j, c] = b_c + sum_{u, v, k} W[u, v, k, c] * x[s*i + u, s*j + v, k]

with stride s and zero padding ('SAME' keeps the size at s=1, 'VALID' shrinks it by K-1).
Pooling takes the max (or mean) of each non-overlapping P x P window. Batch norm normalises each channel
with the statistics of the batch during training and with their running averages in
evaluation:

    y = gamma * (x - mu) / sqrt(var + eps) + beta,
    running_mu <- momentum * running_mu + (1 - momentum) * mu_batch     (and var likewise)

Under `jit` with a sharded batch the batch mean is already global; under `pmap` each device
sees a slice, so `batch_axis_name` names the pmapped axis and the statistics are averaged
across devices, which keeps training identical on 1 or N devices.
"""

from typing import Sequence

import flax.linen as nn
import jax.numpy as jnp
from jax import lax

from nets.conv import Conv
from nets.mlp import ACTIVATIONS, INITIALIZERS, check_choice

POOLS = {'max': jnp.max, 'avg': jnp.mean, 'none': None}


def pool_windows(x_BxHxWxC, reduce, size: int):
  """`reduce` over non-overlapping size x size windows (a ragged edge is dropped).

  The values of nn.max_pool / nn.avg_pool with strides equal to the window and VALID
  padding, computed as a reduction over a reshape: XLA:CPU differentiates that far faster
  than max pooling's select_and_scatter (experiments/benchmarks/train_throughput.py).
  Under ties the max's gradient is shared among the tied entries instead of given to one.
  """
  b, h, w, c = x_BxHxWxC.shape
  x = x_BxHxWxC[:, :h // size * size, :w // size * size]
  return reduce(x.reshape(b, h // size, size, w // size, size, c), axis=(2, 4))


class BatchNorm(nn.Module):
  """nn.BatchNorm over all axes but the last: same parameters, statistics and values.

  The batch variance is E[x^2] - E[x]^2, as nn.BatchNorm's default computes it, but the
  output is one affine map x * a + c (a = gamma / sqrt(var + eps), c = beta - mu * a)
  instead of (x - mu) * a + beta: XLA:CPU then keeps no centred copy of x for the
  backward pass, which made the MNIST CNN's train step about 13% faster.
  """
  use_running_average: bool
  momentum: float = 0.99
  epsilon: float = 1e-5
  axis_name: str | None = None

  @nn.compact
  def __call__(self, x):
    c = x.shape[-1]
    scale = self.param('scale', nn.initializers.ones, (c,))
    bias = self.param('bias', nn.initializers.zeros, (c,))
    running_mean = self.variable('batch_stats', 'mean', jnp.zeros, (c,))
    running_var = self.variable('batch_stats', 'var', jnp.ones, (c,))
    if self.use_running_average:
      mean, var = running_mean.value, running_var.value
    else:
      axes = tuple(range(x.ndim - 1))
      moments = jnp.stack([jnp.mean(x, axes), jnp.mean(x * x, axes)])
      if self.axis_name is not None and not self.is_initializing():
        moments = lax.pmean(moments, self.axis_name)
      mean, var = moments[0], jnp.maximum(0.0, moments[1] - moments[0] * moments[0])
      if not self.is_initializing():
        running_mean.value = self.momentum * running_mean.value + (1 - self.momentum) * mean
        running_var.value = self.momentum * running_var.value + (1 - self.momentum) * var
    a = scale * lax.rsqrt(var + self.epsilon)
    per_channel = (1,) * (x.ndim - 1) + (c,)
    return x * a.reshape(per_channel) + (bias - mean * a).reshape(per_channel)


class ConvBlock(nn.Module):
  """conv -> [batch norm] -> activation -> [pool]."""
  features: int
  kernel_size: int = 3
  stride: int = 1
  padding: str = 'SAME'
  batch_norm: bool = True
  pool: str = 'max'
  pool_size: int = 2
  activation: str = 'relu'
  initializer: str = 'he'
  batch_axis_name: str | None = None

  @nn.compact
  def __call__(self, x_BxHxWxC, *, train: bool):
    check_choice('pool', self.pool, POOLS)
    x = Conv(self.features, (self.kernel_size,) * 2, strides=self.stride,
             padding=self.padding, use_bias=not self.batch_norm,  # BN's beta is the bias
             kernel_init=INITIALIZERS[self.initializer])(x_BxHxWxC)
    if self.batch_norm:
      x = BatchNorm(not train, momentum=0.9, axis_name=self.batch_axis_name)(x)
    x = ACTIVATIONS[self.activation](x)
    if POOLS[self.pool] is not None:
      x = pool_windows(x, POOLS[self.pool], self.pool_size)
    return x


class CNN(nn.Module):
  """Conv blocks of widths `features`, flatten, dense layers `hidden`, logits."""
  features: Sequence[int] = (32, 64)
  kernel_size: int = 3
  stride: int = 1
  padding: str = 'SAME'
  batch_norm: bool = True
  pool: str = 'max'
  pool_size: int = 2
  hidden: Sequence[int] = (128,)
  num_outputs: int = 10
  activation: str = 'relu'
  initializer: str = 'he'
  dropout_rate: float = 0.0
  batch_axis_name: str | None = None

  @nn.compact
  def __call__(self, x_BxHxWxC, *, train: bool = False):
    check_choice('activation', self.activation, ACTIVATIONS)
    check_choice('initializer', self.initializer, INITIALIZERS)
    x = x_BxHxWxC
    for width in self.features:
      x = ConvBlock(width, self.kernel_size, self.stride, self.padding, self.batch_norm,
                    self.pool, self.pool_size, self.activation, self.initializer,
                    self.batch_axis_name)(x, train=train)
    h_BxD = x.reshape(x.shape[0], -1)
    for width in self.hidden:
      h_BxD = ACTIVATIONS[self.activation](
          nn.Dense(width, kernel_init=INITIALIZERS[self.initializer])(h_BxD))
      h_BxD = nn.Dropout(self.dropout_rate, deterministic=not train)(h_BxD)
    return nn.Dense(self.num_outputs)(h_BxD)

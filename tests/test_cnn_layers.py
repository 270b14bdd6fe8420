"""The CNN layers against flax.linen's: nets/conv.Conv against nn.Conv, nets/cnn.BatchNorm
against nn.BatchNorm; same parameters, outputs, gradients (and batch statistics)."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from nets.cnn import BatchNorm
from nets.conv import Conv


@pytest.mark.parametrize('shape,kernel,stride,padding,use_bias', [
    ((2, 9, 7, 3), (3, 3), 1, 'SAME', True),
    ((2, 9, 7, 3), (3, 3), 2, 'SAME', False),   # SAME pads an even total unevenly
    ((2, 8, 8, 1), (3, 3), 2, 'SAME', True),
    ((2, 9, 7, 3), (5, 3), 1, 'VALID', True),   # not square
    ((2, 9, 7, 3), (3, 3), 3, 'VALID', False),
    ((2, 8, 6, 4), (3, 3), 2, 1, False),        # ResNet's k // 2 zeros
    ((2, 8, 6, 4), (1, 1), 2, 0, False),        # ResNet's 1x1 projection
    ((2, 6, 6, 2), (3, 3), 1, ((2, 0), (1, 1)), True),
])
def test_conv_equals_flax_conv(shape, kernel, stride, padding, use_bias):
  ours = Conv(5, kernel, strides=stride, padding=padding, use_bias=use_bias)
  flax_conv = nn.Conv(5, kernel, strides=stride, padding=padding, use_bias=use_bias)
  x = jax.random.normal(jax.random.key(0), shape)
  params = ours.init(jax.random.key(1), x)
  assert jax.tree.map(jnp.shape, params) == jax.tree.map(
      jnp.shape, flax_conv.init(jax.random.key(1), x))  # checkpoints are interchangeable
  if use_bias:
    params = jax.tree.map(lambda p: p + 0.1 if p.ndim == 1 else p, params)

  def loss(module, params, x):
    y = module.apply(params, x)
    return jnp.sum(y * jnp.cos(jnp.arange(y.size, dtype=y.dtype).reshape(y.shape))), y

  (_, y), grads = jax.value_and_grad(lambda p, x: loss(ours, p, x), (0, 1), True)(params, x)
  (_, y_ref), grads_ref = jax.value_and_grad(
      lambda p, x: loss(flax_conv, p, x), (0, 1), True)(params, x)
  np.testing.assert_allclose(y, y_ref, rtol=1e-5, atol=1e-5)
  jax.tree.map(lambda g, r: np.testing.assert_allclose(g, r, rtol=1e-5, atol=1e-5),
               grads, grads_ref)


@pytest.mark.parametrize('train', [True, False])
def test_batch_norm_equals_flax_batch_norm(train):
  ours = BatchNorm(not train, momentum=0.9)
  flax_bn = nn.BatchNorm(use_running_average=not train, momentum=0.9)
  x = 3 + 2 * jax.random.normal(jax.random.key(0), (4, 5, 6, 3))
  variables = ours.init(jax.random.key(1), x)
  assert jax.tree.map(jnp.shape, variables) == jax.tree.map(
      jnp.shape, flax_bn.init(jax.random.key(1), x))
  variables = {'params': {'scale': jnp.asarray([0.5, -1.0, 2.0]),
                          'bias': jnp.asarray([0.1, 0.0, -0.3])},
               'batch_stats': {'mean': jnp.asarray([2.9, 3.1, 3.0]),
                               'var': jnp.asarray([4.2, 3.8, 4.0])}}

  def loss(module, params, x):
    y, stats = module.apply({**variables, 'params': params}, x, mutable=['batch_stats'])
    return jnp.sum(y * jnp.cos(jnp.arange(y.size, dtype=y.dtype).reshape(y.shape))), (y, stats)

  (_, (y, stats)), grads = jax.value_and_grad(
      lambda p, x: loss(ours, p, x), (0, 1), True)(variables['params'], x)
  (_, (y_ref, stats_ref)), grads_ref = jax.value_and_grad(
      lambda p, x: loss(flax_bn, p, x), (0, 1), True)(variables['params'], x)
  for got, want in ((y, y_ref), (stats, stats_ref), (grads, grads_ref)):
    jax.tree.map(lambda g, r: np.testing.assert_allclose(g, r, rtol=1e-5, atol=1e-5), got, want)

"""MLP and CNN modules: activations, choices, parameter counts, shapes, batch norm, dropout."""

import inspect

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import nets
from nets import cnn, mlp

KEY = jax.random.key(0)


def count_params(params):
  return sum(np.size(x) for x in jax.tree.leaves(params))


def test_hard_sigmoid_is_a_clipped_line_made_of_two_relus(monkeypatch):
  x = jnp.linspace(-3.0, 3.0, 61)
  np.testing.assert_allclose(mlp.hard_sigmoid(x), np.clip((np.asarray(x) + 1) / 2, 0, 1),
                             atol=1e-7)
  calls = []
  relu = nn.relu
  monkeypatch.setattr(mlp.nn, 'relu', lambda v: calls.append(1) or relu(v))
  mlp.hard_sigmoid(x)
  assert len(calls) == 2
  # Its slope is exactly 1/2 inside (-1, 1) and 0 outside: no vanishing tail.
  slope = jax.vmap(jax.grad(mlp.hard_sigmoid))(jnp.array([-2.0, -0.5, 0.0, 0.7, 1.5]))
  np.testing.assert_array_equal(slope, [0.0, 0.5, 0.5, 0.5, 0.0])


def output_shape(model, x):
  """Traces init and apply (no compilation) and returns the logits' shape and dtype."""
  return jax.eval_shape(lambda x: model.init_with_output(KEY, x)[0], x)


@pytest.mark.parametrize('field,table', [('activation', mlp.ACTIVATIONS),
                                         ('initializer', mlp.INITIALIZERS),
                                         ('output', mlp.OUTPUTS)])
def test_every_mlp_choice_builds(field, table):
  x = jnp.zeros((4, 6))
  for choice in table:
    model = mlp.MLP(hidden=(5,), num_outputs=3, **{field: choice})
    logits = output_shape(model, x)
    assert (logits.shape, logits.dtype) == ((4, 3), jnp.float32), choice
    assert jax.eval_shape(model.probabilities, logits).shape == (4, 3), choice


@pytest.mark.parametrize('name,variance', [
    ('glorot', 2 / (400 + 300)),  # Var W = 2 / (fan_in + fan_out)
    ('he', 2 / 400),  # 2 / fan_in
    ('lecun', 1 / 400),  # 1 / fan_in
    ('small_normal', 0.01 ** 2),
    ('zeros', 0.0),
])
def test_initializer_variance(name, variance):
  model = mlp.MLP(hidden=(300,), num_outputs=2, initializer=name)
  kernel = jax.jit(model.init)(KEY, jnp.zeros((1, 400)))['params']['Dense_0']['kernel']
  assert float(jnp.var(kernel)) == pytest.approx(variance, rel=0.03)


@pytest.mark.parametrize('field,table', [('activation', mlp.ACTIVATIONS),
                                         ('initializer', mlp.INITIALIZERS),
                                         ('pool', cnn.POOLS)])
def test_every_cnn_choice_builds(field, table):
  x = jnp.zeros((2, 8, 8, 1))
  for choice in table:
    model = cnn.CNN(features=(3,), hidden=(4,), num_outputs=5, **{field: choice})
    logits = output_shape(model, x)
    assert (logits.shape, logits.dtype) == ((2, 5), jnp.float32), choice


@pytest.mark.parametrize('module,field', [
    (mlp.MLP, 'activation'), (mlp.MLP, 'initializer'), (mlp.MLP, 'output'),
    (cnn.CNN, 'activation'), (cnn.CNN, 'initializer'), (cnn.CNN, 'pool'),
])
def test_unknown_choice_names_the_field(module, field):
  x = jnp.zeros((1, 4, 4, 1))
  with pytest.raises(ValueError, match=rf"{field}='bogus'"):
    module(**{field: 'bogus'}).init(KEY, x)


def test_mnist_mlp_parameter_count():
  # 784*512 + 512 = 401,920;  512*256 + 256 = 131,328;  256*10 + 10 = 2,570
  # 401,920 + 131,328 + 2,570 = 535,818
  model = mlp.MLP(hidden=(512, 256), num_outputs=10)
  shapes = jax.eval_shape(model.init, KEY, jnp.zeros((1, 28, 28, 1)))
  assert count_params(shapes['params']) == 535_818


def test_single_neuron_is_logistic_regression():
  model = mlp.MLP(hidden=(), num_outputs=1, output='sigmoid')
  x = jax.random.normal(KEY, (7, 3))
  (layer,) = model.init(KEY, x)['params'].values()
  layer = {**layer, 'bias': layer['bias'] + 0.3}  # a nonzero bias, to see it is added
  w, b = np.asarray(layer['kernel'])[:, 0], float(layer['bias'][0])
  variables = {'params': {'Dense_0': layer}}
  p = model.apply(variables, model.apply(variables, x), method='probabilities')
  expected = 1 / (1 + np.exp(-(np.asarray(x) @ w + b)))
  np.testing.assert_allclose(p[:, 0], expected, rtol=1e-6)


def conv_out(size, kernel, stride, padding):
  """'SAME': ceil(n / s). 'VALID': floor((n - k) / s) + 1."""
  return -(-size // stride) if padding == 'SAME' else (size - kernel) // stride + 1


@pytest.mark.parametrize('padding', ['SAME', 'VALID'])
@pytest.mark.parametrize('stride,kernel,pool', [(1, 3, 'none'), (2, 3, 'none'), (2, 5, 'none'),
                                                (1, 5, 'max'), (2, 3, 'avg')])
def test_conv_block_output_shape(padding, stride, kernel, pool):
  block = cnn.ConvBlock(features=6, kernel_size=kernel, stride=stride, padding=padding,
                        pool=pool, batch_norm=False)
  x = jnp.zeros((2, 15, 12, 3))
  out = jax.eval_shape(lambda: block.init_with_output(KEY, x, train=False)[0])
  h, w = (conv_out(n, kernel, stride, padding) for n in (15, 12))
  if pool != 'none':
    h, w = h // 2, w // 2
  assert out.shape == (2, h, w, 6)


@pytest.mark.parametrize('kind', ['max', 'avg'])
def test_pooling_matches_numpy_windows_and_their_gradient(kind):
  """Values: the max/mean of each 2x2 window (ragged 7th row and column dropped), as a
  loop over windows computes them; gradient of sum(pool * w): w at each window's argmax
  (max) or w / 4 on all four entries (mean), zero on the dropped edge."""
  x = np.asarray(jax.random.normal(KEY, (2, 7, 7, 3)), np.float64)  # no ties
  weights = np.asarray(jax.random.normal(jax.random.key(1), (2, 3, 3, 3)), np.float64)
  want, want_grad = np.zeros((2, 3, 3, 3)), np.zeros_like(x)
  for b, i, j, c in np.ndindex(want.shape):
    window = x[b, 2 * i:2 * i + 2, 2 * j:2 * j + 2, c]
    if kind == 'max':
      want[b, i, j, c] = window.max()
      u, v = np.unravel_index(window.argmax(), (2, 2))
      want_grad[b, 2 * i + u, 2 * j + v, c] = weights[b, i, j, c]
    else:
      want[b, i, j, c] = window.mean()
      want_grad[b, 2 * i:2 * i + 2, 2 * j:2 * j + 2, c] = weights[b, i, j, c] / 4
  pool = lambda x: cnn.pool_windows(x, cnn.POOLS[kind], 2)
  got, grad = jax.value_and_grad(lambda x: jnp.sum(pool(x) * weights))(jnp.asarray(x))
  np.testing.assert_allclose(pool(jnp.asarray(x)), want, rtol=1e-6, atol=1e-6)
  np.testing.assert_allclose(grad, want_grad, rtol=1e-6, atol=1e-7)
  flax_pool = nn.max_pool if kind == 'max' else nn.avg_pool
  np.testing.assert_allclose(pool(jnp.asarray(x)), flax_pool(jnp.asarray(x), (2, 2), (2, 2)),
                             rtol=1e-6, atol=1e-6)


def test_cnn_flattens_into_its_head():
  model = cnn.CNN(features=(8, 16), hidden=(32,), num_outputs=10)
  shapes = jax.eval_shape(model.init, KEY, jnp.zeros((1, 28, 28, 1)))['params']
  # 28 -> conv SAME -> 28 -> pool -> 14 -> conv -> 14 -> pool -> 7; 7*7*16 = 784 inputs.
  assert shapes['Dense_0']['kernel'].shape == (784, 32)
  assert 'bias' not in shapes['ConvBlock_0']['Conv_0']  # batch norm's offset replaces it


STATS = {'BatchNorm_0': {'mean': jnp.array([0.5, -1.0, 2.0, 0.0]),
                         'var': jnp.array([4.0, 0.25, 1.0, 9.0])}}


def batch_norm_run(train):
  """Conv + batch norm from running stats STATS: (conv output, BN output, new stats)."""
  block = cnn.ConvBlock(features=4, pool='none')
  x = 3.0 + 2.0 * jax.random.normal(jax.random.key(1), (8, 6, 6, 2))

  @jax.jit
  def run():
    variables = {**block.init(KEY, x, train=False), 'batch_stats': STATS}
    return block.apply(variables, x, train=train, capture_intermediates=True,
                       mutable=['batch_stats', 'intermediates'])[1]
  state = run()
  inter = state['intermediates']
  return (np.asarray(inter['Conv_0']['__call__'][0], np.float64),
          np.asarray(inter['BatchNorm_0']['__call__'][0], np.float64), state['batch_stats'])


def test_batch_norm_uses_batch_statistics_in_training():
  conv, normed, stats = batch_norm_run(train=True)
  # Scale 1 and offset 0 at init, so BN's output is the normalised conv output.
  np.testing.assert_allclose(normed.mean(axis=(0, 1, 2)), 0.0, atol=1e-5)
  mean, var = conv.mean(axis=(0, 1, 2)), conv.var(axis=(0, 1, 2))
  np.testing.assert_allclose(normed.var(axis=(0, 1, 2)), var / (var + 1e-5), rtol=1e-4)
  # running <- momentum * running + (1 - momentum) * batch, with momentum 0.9.
  old = STATS['BatchNorm_0']
  np.testing.assert_allclose(stats['BatchNorm_0']['mean'], 0.9 * old['mean'] + 0.1 * mean,
                             rtol=1e-4, atol=1e-6)
  np.testing.assert_allclose(stats['BatchNorm_0']['var'], 0.9 * old['var'] + 0.1 * var,
                             rtol=1e-4)


def test_batch_norm_uses_running_averages_in_eval():
  conv, normed, new_stats = batch_norm_run(train=False)
  mean, var = (np.asarray(STATS['BatchNorm_0'][k]) for k in ('mean', 'var'))
  np.testing.assert_allclose(normed, (conv - mean) / np.sqrt(var + 1e-5), rtol=1e-4, atol=1e-5)
  jax.tree.map(np.testing.assert_array_equal, new_stats, STATS)  # eval leaves them alone


@pytest.mark.parametrize('make', [
    lambda rate: mlp.MLP(hidden=(256,), num_outputs=3, dropout_rate=rate),
    lambda rate: cnn.CNN(features=(2,), hidden=(256,), num_outputs=3, dropout_rate=rate,
                         batch_norm=False),
], ids=['mlp', 'cnn'])
def test_dropout_only_in_training(make):
  x = jax.random.normal(KEY, (4, 6, 6, 1))
  model, plain = make(0.5), make(0.0)
  variables = jax.jit(model.init)(KEY, x)
  runner = lambda module, train: jax.jit(lambda key: module.apply(
      variables, x, train=train, rngs={'dropout': key}, capture_intermediates=True,
      mutable=['intermediates']))
  hidden = lambda state: np.asarray(state['intermediates']['Dropout_0']['__call__'][0])
  reference, _ = runner(plain, True)(KEY)
  evaluated, eval_state = runner(model, False)(KEY)
  np.testing.assert_array_equal(evaluated, reference)  # the mask is off in evaluation
  assert inspect.signature(model.__call__).parameters['train'].default is False
  train_step = runner(model, True)
  (out_1, state_1), (_, state_2) = train_step(jax.random.key(1)), train_step(jax.random.key(2))
  assert not np.allclose(out_1, reference)
  active = hidden(eval_state) != 0
  ratio = hidden(state_1)[active] / hidden(eval_state)[active]
  # Each active unit is dropped (0) or kept and scaled by 1 / (1 - rate) = 2.
  np.testing.assert_allclose(ratio, np.where(ratio == 0, 0.0, 2.0), rtol=1e-5)
  assert 0.4 < np.mean(ratio == 0) < 0.6
  assert not np.array_equal(hidden(state_1), hidden(state_2))  # a fresh mask per rng


def test_create_builds_registered_models():
  assert isinstance(nets.create('mlp', hidden=(3,), activation='tanh'), mlp.MLP)
  assert nets.create('cnn', features=(4,)).features == (4,)


@pytest.mark.parametrize('name,kwargs,pattern', [
    ('resnet9000', {}, r"config\.model\.name='resnet9000'"),
    ('mlp', {'hidden': (3,), 'widht': 4}, r"config\.model has fields \['widht'\]"),
    ('cnn', {'hidden_sizes': (3,)}, r"config\.model has fields \['hidden_sizes'\]"),
])
def test_create_rejects_bad_config(name, kwargs, pattern):
  with pytest.raises(ValueError, match=pattern):
    nets.create(name, **kwargs)

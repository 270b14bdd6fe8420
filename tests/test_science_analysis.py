"""The analysis experiments' pieces: hard sigmoids from ReLUs, training on chosen rows,
the regression task, the patch Transformer, nested subsets and the minimum ratio's loss."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import nets
from experiments.configs import default
from experiments.science import attention_vs_cnn, minimum_ratio, sigmoid_fit
from nets import mlp, patch_transformer
from train import data, loop, reporting
from train.errors import UserError


# ------------------------------------------------------------------ hard sigmoids

def test_two_relus_make_exactly_the_hard_sigmoid():
  x = np.arange(-64, 65) / 16.0  # dyadic grid: every product and sum below is exact
  x0, x1, c = -1.5, 2.5, 0.75  # w = 1/4
  expected = c * np.clip((x - x0) / (x1 - x0), 0.0, 1.0)
  np.testing.assert_array_equal(sigmoid_fit.hard_sigmoid(x, x0, x1, c), expected)
  # The model's own activation is the case x0 = -1, x1 = 1.
  np.testing.assert_array_equal(sigmoid_fit.hard_sigmoid(x, -1.0, 1.0),
                                np.asarray(mlp.hard_sigmoid(jnp.asarray(x))))


def test_a_sum_of_hard_sigmoids_is_the_piecewise_linear_interpolation():
  knots = np.sort(np.random.default_rng(0).uniform(-3, 3, 9))
  values = np.sin(3 * knots)
  x = np.linspace(-4, 4, 1001)  # beyond the ends: flat, like np.interp
  np.testing.assert_allclose(sigmoid_fit.hard_sigmoid_sum(x, knots, values),
                             np.interp(x, knots, values), atol=1e-12)


# ------------------------------------------------------------- training on chosen rows

def spirals(**data_fields):
  c = default.get_config()
  c.data.update(num_train=60, num_test=30, **data_fields)
  return c


def test_chosen_rows_are_exactly_what_trains_and_evaluates():
  full = data.build(spirals()).train.arrays
  train_rows, eval_rows = np.array([3, 7, 11, 20, 41, 59]), np.array([0, 5, 33])
  splits = data.build(spirals(train_indices=tuple(train_rows.tolist()),
                              eval_indices=tuple(eval_rows.tolist())))
  # One epoch of the training iterator visits the chosen rows, each once, and no other.
  batches = splits.train.train_iterator(2, seed=0)
  seen = np.concatenate([next(batches)['inputs'] for _ in range(3)])
  key = lambda rows: sorted(map(tuple, rows.tolist()))
  assert key(seen) == key(full['inputs'][train_rows])
  np.testing.assert_array_equal(splits.eval.arrays['inputs'], full['inputs'][eval_rows])
  np.testing.assert_array_equal(splits.test.arrays['inputs'],
                                data.build(spirals()).test.arrays['inputs'])


@pytest.mark.parametrize('rows', [(), (0, 0), (60,), (-1,), (1.0, 2.0)],
                         ids=['empty', 'repeated', 'past_end', 'negative', 'floats'])
def test_bad_rows_are_named(rows):
  with pytest.raises(UserError, match='config.data.train_indices'):
    data.build(spirals(train_indices=rows))


def test_the_engine_learns_only_from_the_chosen_rows(tmp_path):
  """Trained on class-0 points only, the model calls (almost) everything class 0."""
  labels = data.build(spirals()).train.arrays['label']
  only_zero = tuple(np.flatnonzero(labels == 0).tolist())
  c = spirals(train_indices=only_zero, eval_indices=only_zero)
  c.model.hidden = (8,)
  c.optimizer.update(learning_rate=0.1, schedule='constant')
  c.update(num_steps=30, batch_size=8, log_every=30, eval_every=30, checkpoint_every=30,
           progress_bar=False)
  state, test = loop.train_and_evaluate(c, tmp_path / 'run', devices=jax.devices()[:1])
  evaluation = [r for r in reporting.read_metrics(tmp_path / 'run') if r['split'] == 'eval']
  assert evaluation[-1]['accuracy'] == 1.0  # evaluated on the chosen rows, all class 0
  test_split = data.build(c).test.arrays
  predicted = np.argmax(state.apply_fn({'params': state.params}, test_split['inputs']), -1)
  assert np.mean(predicted == 0) >= 0.9 > np.mean(test_split['label'] == 0) + 0.4
  np.testing.assert_allclose(float(test['accuracy']),
                             np.mean(predicted == test_split['label']), atol=1e-6)


# --------------------------------------------------------------------- regression

def test_regression_reports_the_mean_squared_error_of_its_predictions(tmp_path):
  c = default.get_config()
  c.update(dataset='curve', task='regression', loss='mse', num_steps=40, batch_size=32,
           log_every=40, eval_every=40, checkpoint_every=40, progress_bar=False)
  c.data = c.data.__class__({'num_train': 64, 'num_test': 50, 'noise': 0.05})
  c.model.update(hidden=(3,), activation='sigmoid', output='linear')
  state, test = loop.train_and_evaluate(c, tmp_path / 'run', devices=jax.devices()[:1])
  grid = np.linspace(-3, 3, 50)
  # The trained net is b + sum_i c_i sigmoid(w_i x + b_i), and the test split is f on a grid.
  predicted = sigmoid_fit.sigmoid_sum(state.params, grid)
  np.testing.assert_allclose(
      predicted, np.asarray(state.apply_fn({'params': state.params}, grid[:, None]))[:, 0],
      rtol=1e-5, atol=1e-6)
  from train.data import curves
  np.testing.assert_allclose(float(test['loss']), np.mean((predicted - curves.curve(grid)) ** 2),
                             rtol=1e-4)


# ---------------------------------------------------------------- patch Transformer

def test_patches_are_the_image_blocks_row_by_row():
  images = np.random.default_rng(0).normal(size=(2, 8, 12, 3)).astype(np.float32)
  patches = np.asarray(patch_transformer.patchify(jnp.asarray(images), 4))
  assert patches.shape == (2, 6, 48)
  for n, (i, j) in enumerate((i, j) for i in range(2) for j in range(3)):
    np.testing.assert_array_equal(patches[:, n], images[:, 4 * i:4 * i + 4,
                                                        4 * j:4 * j + 4].reshape(2, -1))
  with pytest.raises(nets.ModelConfigError, match='patch_size'):
    patch_transformer.patchify(jnp.asarray(images), 5)


def swap_patches(images, patch):
  """The images with their first and last patch exchanged."""
  out = images.copy()
  out[:, :patch, :patch], out[:, -patch:, -patch:] = (images[:, -patch:, -patch:],
                                                      images[:, :patch, :patch])
  return out


@pytest.mark.parametrize('positional,pool', [('none', 'cls'), ('learned', 'mean')])
def test_only_positions_tell_attention_where_a_patch_is(positional, pool):
  model = nets.create('patch_transformer', patch_size=7, num_layers=1, num_heads=2,
                      model_dim=16, mlp_dim=32, positional=positional, pool=pool,
                      num_outputs=10)
  images = np.random.default_rng(1).uniform(size=(3, 28, 28, 1)).astype(np.float32)
  variables = nn.meta.unbox(model.init(jax.random.key(0), images))
  if positional == 'learned':  # initialised near zero; make the positions matter
    table = variables['params']['positions']['embedding']
    variables['params']['positions']['embedding'] = jax.random.normal(
        jax.random.key(2), table.shape)
  logits = np.asarray(model.apply(variables, images))
  swapped = np.asarray(model.apply(variables, swap_patches(images, 7)))
  assert logits.shape == (3, 10)
  if positional == 'none':
    np.testing.assert_allclose(swapped, logits, rtol=1e-4, atol=1e-5)
  else:
    assert np.max(np.abs(swapped - logits)) > 1e-2


# ---------------------------------------------------------------- the experiments' helpers

def test_nested_subsets_are_class_balanced_and_grow_by_inclusion():
  labels = np.repeat(np.arange(4), [30, 25, 20, 5])
  small, large = (attention_vs_cnn.nested_subset(labels, n, seed=3) for n in (12, 40))
  assert set(small) <= set(large) and len(set(large)) == 40
  np.testing.assert_array_equal(np.bincount(labels[small], minlength=4), [3, 3, 3, 3])
  # The 5 examples of class 3 run out in round 5; the other classes share the rest evenly.
  counts = np.bincount(labels[large], minlength=4)
  assert counts[3] == 5 and sorted(counts[:3]) == [11, 12, 12]


def test_the_hessians_loss_is_the_engines_squared_error_in_float64():
  c = minimum_ratio.run_config(width=3, steps=10, seed=0)
  model = nets.create('mlp', **{k: v for k, v in c.model.items() if k != 'name'},
                      num_outputs=3)
  train = data.build(c).train.arrays
  params = model.init(jax.random.key(0), train['inputs'])['params']
  with jax.enable_x64(True):
    params64 = jax.tree.map(lambda p: jnp.asarray(p, jnp.float64), params)
    value = minimum_ratio.training_loss(c, model.apply)(params64)
    assert value.dtype == jnp.float64
  logits = np.asarray(model.apply({'params': params}, train['inputs']), np.float64)
  expected = np.mean((logits - np.eye(3)[train['label']]) ** 2)  # mean over examples, classes
  np.testing.assert_allclose(float(value), expected, rtol=1e-6)

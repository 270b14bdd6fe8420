"""Same global batch, same parameters: 1 device vs 8 (mesh), and pmap vs mesh."""

import jax
import numpy as np
import pytest
import tensorflow_datasets as tfds

from experiments.configs import default, mnist_cnn
from train import loop, reporting


def cnn_config(mode='mesh'):
  """A CNN with batch norm (its statistics must be global) on mock MNIST from the catalog."""
  c = mnist_cnn.get_config()
  c.model.update(features=(8, 16), hidden=(32,), dropout_rate=0.0)
  c.data.augment = False
  c.optimizer.warmup_steps = 0  # full-size updates, so equal parameters mean something
  c.update(num_steps=6, num_epochs=-1, batch_size=32, eval_batch_size=32, log_every=3,
           eval_every=3, checkpoint_every=100, progress_bar=False, parallel_mode=mode)
  return c


def train(config, workdir, devices):
  with tfds.testing.mock_data(num_examples=96):
    state, test = loop.train_and_evaluate(config, workdir, devices=devices)
  return jax.device_get(state), test


def assert_trees_close(a, b, atol):
  leaves_a, leaves_b = jax.tree.leaves(a), jax.tree.leaves(b)
  assert len(leaves_a) == len(leaves_b)
  for x, y in zip(leaves_a, leaves_b):
    np.testing.assert_allclose(np.asarray(x), np.asarray(y), atol=atol, rtol=1e-4)


@pytest.fixture(scope='module')
def mesh8(tmp_path_factory):
  assert len(jax.devices()) == 8, 'conftest must simulate 8 devices'
  return train(cnn_config(), tmp_path_factory.mktemp('mesh8'), jax.devices())


def test_eight_devices_match_one(mesh8, tmp_path):
  one_state, one_test = train(cnn_config(), tmp_path, jax.devices()[:1])
  eight_state, eight_test = mesh8
  assert int(eight_state.step) == 6
  assert_trees_close(one_state.params, eight_state.params, atol=2e-5)
  assert_trees_close(one_state.model_state, eight_state.model_state, atol=2e-5)
  assert one_test['confusion_matrix'] == eight_test['confusion_matrix']


def test_pmap_matches_mesh(mesh8, tmp_path):
  pmap_state, pmap_test = train(cnn_config('pmap'), tmp_path, jax.devices())
  mesh_state, mesh_test = mesh8
  assert_trees_close(pmap_state.params, mesh_state.params, atol=2e-5)
  # Batch-norm running statistics: pmap averages per-device statistics over the axis.
  assert_trees_close(pmap_state.model_state, mesh_state.model_state, atol=2e-5)
  assert pmap_test['confusion_matrix'] == mesh_test['confusion_matrix']


def test_training_changed_the_parameters(mesh8, tmp_path):
  """Guards the two tests above against passing because nothing was trained."""
  c = cnn_config()
  c.num_steps = 1
  one_step, _ = train(c, tmp_path, jax.devices())
  moved = [np.abs(np.asarray(a) - np.asarray(b)).max()
           for a, b in zip(jax.tree.leaves(one_step.params), jax.tree.leaves(mesh8[0].params))]
  assert max(moved) > 1e-3


@pytest.mark.parametrize('optimizer', ['sgd'])  # Adam: test_pmap_matches_mesh above
def test_pmap_matches_mesh_with_sgd_and_the_same_metric_sums(optimizer, tmp_path):
  """SGD shows a gradient summed instead of averaged (Adam's normalisation hides it)."""
  def run(mode, workdir):
    c = cnn_config(mode)
    c.optimizer.update(name=optimizer, learning_rate=0.05 if optimizer == 'sgd' else 1e-3,
                       schedule='constant')
    c.log_every = 2
    state, _ = train(c, workdir, jax.devices())
    return state, [r for r in reporting.read_metrics(workdir) if r['split'] == 'train']
  (mesh_state, mesh_logs), (pmap_state, pmap_logs) = run('mesh', tmp_path / 'm'), run(
      'pmap', tmp_path / 'p')
  assert_trees_close(pmap_state.params, mesh_state.params, atol=2e-5)
  for a, b in zip(mesh_logs, pmap_logs, strict=True):
    assert (a['accuracy'], a['f1']) == (b['accuracy'], b['f1'])  # same confusion counts
    np.testing.assert_allclose(a['loss'], b['loss'], rtol=1e-5)
    np.testing.assert_allclose(a['grad_norm'], b['grad_norm'], rtol=1e-4)


@pytest.mark.parametrize('mode', ['mesh', 'pmap'])
def test_resume_on_eight_devices_matches_an_uninterrupted_run(mode, tmp_path):
  """Spirals MLP with dropout (so the restored RNG matters), 8 devices, a constant
  schedule so that the run to step 10 is the first part of the run to 20."""
  c = default.get_config()
  c.model.dropout_rate = 0.2
  c.optimizer.schedule = 'constant'
  c.data.update(num_train=512, num_test=200)
  c.update(parallel_mode=mode, num_steps=10, checkpoint_every=10, log_every=5,
           eval_every=1000, eval_batch_size=200, progress_bar=False)
  loop.train_and_evaluate(c, tmp_path / 'resumed', devices=jax.devices())
  c.num_steps = 20
  resumed, _ = loop.train_and_evaluate(c, tmp_path / 'resumed', devices=jax.devices())
  whole, _ = loop.train_and_evaluate(c, tmp_path / 'whole', devices=jax.devices())
  assert int(resumed.step) == 20
  for a, b in zip(jax.tree.leaves(resumed), jax.tree.leaves(whole)):
    if jax.dtypes.issubdtype(a.dtype, jax.dtypes.prng_key):
      a, b = jax.random.key_data(a), jax.random.key_data(b)
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))

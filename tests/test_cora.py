"""Node classification: GAT on the real Cora graph through the loop, and the masked loss."""

import jax
import numpy as np
import optax
import pytest

import nets
from experiments.configs import cora_gat
from train import loop, reporting, tasks
from train import state as state_lib


def test_cora_gat_trains_and_tests_through_the_loop(shared_data, tmp_path):
  c = cora_gat.get_config()
  c.update(data_dir=str(shared_data / 'cora'), tfds_data_dir=str(tmp_path / 'tfds'),
           num_steps=30, log_every=10, eval_every=30, checkpoint_every=30,
           progress_bar=False)
  _, test = loop.train_and_evaluate(c, tmp_path / 'run', devices=jax.devices()[:1])
  records = reporting.read_metrics(tmp_path / 'run')
  train_losses = [r['loss'] for r in records if r['split'] == 'train']
  assert len(train_losses) == 3 and train_losses[-1] < train_losses[0]
  (record,) = [r for r in records if r['split'] == 'test']
  assert record['step'] == 30 and record['accuracy'] == test['accuracy']
  assert np.sum(record['confusion_matrix']) == 1_000  # the test split's nodes only
  assert test['accuracy'] > 1 / 7


def random_graph_batch(num_nodes=12, num_features=6, num_classes=3, seed=0):
  """One graph as the Cora pipeline batches it; the first 4 nodes are the split's."""
  rng = np.random.default_rng(seed)
  upper = np.triu(rng.random((num_nodes, num_nodes)) < 0.3, k=1)
  receivers, senders = np.nonzero(upper | upper.T)
  mask = np.zeros(num_nodes, np.float32)
  mask[:4] = 1.0
  return {'inputs': rng.integers(0, 2, (1, num_nodes, num_features)).astype(np.float32),
          'senders': senders[None].astype(np.int32),
          'receivers': receivers[None].astype(np.int32),
          'label': rng.integers(0, num_classes, (1, num_nodes)).astype(np.int32),
          'mask': mask[None]}


def test_node_loss_reads_only_the_masked_nodes():
  batch = random_graph_batch()
  info = {'num_classes': 3}
  c = cora_gat.get_config()
  task = tasks.create(c, info)
  kwargs = task.model_kwargs(c, info, nets.MODELS['gat'].__dataclass_fields__)
  assert kwargs['num_classes'] == 3 and 'num_outputs' not in kwargs
  model = nets.create('gat', **kwargs)
  state = state_lib.initializer(model, optax.adam(1e-3), 0, task.state_collections)(
      *task.model_inputs(batch))
  loss = jax.jit(lambda b: task.loss(state, state.params, b, None, train=False))

  loss_sum, aux = loss(batch)
  assert float(aux.weight) == 4.0 and float(aux.sums['count']) == 4.0
  assert float(np.sum(aux.sums['confusion'])) == 4.0
  logits_NxC = model.apply({'params': state.params}, *task.model_inputs(batch))[0]
  log_p_NxC = np.asarray(jax.nn.log_softmax(logits_NxC))
  expected = -sum(log_p_NxC[i, batch['label'][0, i]] for i in range(4))
  assert float(loss_sum) == pytest.approx(expected, rel=1e-5)

  outside = {**batch, 'label': batch['label'].copy()}
  outside['label'][0, 4:] = (outside['label'][0, 4:] + 1) % 3
  other_sum, other_aux = loss(outside)
  assert float(other_sum) == float(loss_sum)
  np.testing.assert_array_equal(other_aux.sums['confusion'], aux.sums['confusion'])

  inside = {**batch, 'label': batch['label'].copy()}
  inside['label'][0, 0] = (inside['label'][0, 0] + 1) % 3
  assert float(loss(inside)[0]) != pytest.approx(float(loss_sum))


def test_normalized_features_sum_to_one_per_node():
  batch = random_graph_batch()
  batch['inputs'][0, 5] = 0.0  # a node without features stays at zero
  c = cora_gat.get_config()
  x_1xNxF = np.asarray(tasks.create(c, {'num_classes': 3}).model_inputs(batch)[0])
  row_sums = x_1xNxF[0].sum(axis=1)
  expected = np.where(batch['inputs'][0].sum(axis=1) > 0, 1.0, 0.0)
  np.testing.assert_allclose(row_sums, expected, rtol=1e-6)
  c.data.normalize_features = False
  raw = tasks.create(c, {'num_classes': 3}).model_inputs(batch)[0]
  np.testing.assert_array_equal(raw, batch['inputs'])

"""Engine correctness: per-device randomness, loss normalisation by the global weight,
weight decay chosen by parameter name, sharded initialisation, the error policy of the
entry point, and the Task interface end to end."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from absl import flags
from conftest import SHARED_DATA

from experiments.configs import default, sst2_bow
from train import loop, losses, optimizers, reporting, steps, tasks
from train.errors import UserError


def spirals_config(mode='mesh', **fields):
  c = default.get_config()
  c.optimizer.update(name='sgd', learning_rate=0.5, schedule='constant')
  c.update({'num_steps': 1, 'batch_size': 16, 'eval_batch_size': 16, 'progress_bar': False,
            'parallel_mode': mode, **fields})
  return c


def one_step(config, batch, devices):
  """Params after one train step on `batch` (a global batch), and its metric sums."""
  exp = loop.build(config, devices)
  train_step, _ = loop.compile_steps(exp, exp.state)
  local = {k: v for k, v in batch.items()}
  state, sums = train_step(exp.state, exp.par.place_batch(local, len(batch['mask'])))
  return jax.device_get(exp.par.unreplicate(state).params), exp.par.host_sums(sums)


def test_pmap_replicas_draw_different_dropout_masks():
  """8 identical examples through dropout 0.5: 8 different outputs, as under the mesh."""
  c = spirals_config('pmap', eval_batch_size=8)
  c.model.dropout_rate = 0.5
  exp = loop.build(c, jax.devices())
  batch = {'inputs': np.ones((8, 2), np.float32), 'label': np.zeros(8, np.int32),
           'mask': np.ones(8, np.float32)}

  def logits(state, batch):
    rng = steps.device_rng(state.step_rng(), 'data')
    return exp.task.apply(state, state.params, batch, rng, train=True)[0]

  out = jax.pmap(logits, axis_name='data')(exp.state, exp.par.place_batch(batch, 8))
  rows = np.asarray(out).reshape(8, -1)
  assert len({r.tobytes() for r in rows}) == 8


def test_loss_is_normalised_by_the_global_weight_in_pmap():
  """Masks that differ per device: pmap equals the mesh and one device (mean of all
  weighted examples, not a mean of per-device means)."""
  rng = np.random.default_rng(0)
  mask = np.ones(16, np.float32)
  mask[:6] = 0.0  # devices 0-2 hold only padding, device 3 half: per-device weights differ
  batch = {'inputs': rng.normal(size=(16, 2)).astype(np.float32),
           'label': rng.integers(0, 3, 16).astype(np.int32), 'mask': mask}
  one, _ = one_step(spirals_config(), batch, jax.devices()[:1])
  mesh, _ = one_step(spirals_config(), batch, jax.devices())
  pmap, pmap_sums = one_step(spirals_config('pmap'), batch, jax.devices())
  for a, b, c in zip(jax.tree.leaves(one), jax.tree.leaves(mesh), jax.tree.leaves(pmap)):
    np.testing.assert_allclose(a, b, atol=1e-6)
    np.testing.assert_allclose(a, c, atol=1e-6)
  assert pmap_sums['count'] == 10  # the metric sums are global too
  # Guard: the step moved the parameters, so the comparison above means something.
  exp = loop.build(spirals_config(), jax.devices()[:1])
  moved = max(np.abs(np.asarray(a) - np.asarray(b)).max()
              for a, b in zip(jax.tree.leaves(one), jax.tree.leaves(exp.state.params)))
  assert moved > 1e-3


def test_l2_reaches_the_update_once_in_every_mode():
  """SGD with l2 only (zero-loss batch): w <- w - eta * l2 * w for weights, biases kept."""
  batch = {'inputs': np.zeros((16, 2), np.float32), 'label': np.zeros(16, np.int32),
           'mask': np.zeros(16, np.float32)}
  start = loop.build(spirals_config(), jax.devices()[:1]).state.params
  for mode in ('mesh', 'pmap'):
    params, _ = one_step(spirals_config(mode, l2=0.1), batch, jax.devices())
    expected = jax.tree_util.tree_map_with_path(
        lambda p, w: w * (1 - 0.5 * 0.1) if losses.is_weight(p, w) else w, start)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-6), params, expected)


class _Block(nn.Module):
  @nn.compact
  def __call__(self, h, _):
    return nn.LayerNorm()(nn.Dense(6)(h)), None


class MultiHeadAndScan(nn.Module):
  """A multi-head projection (bias [heads, head_dim]) and a stack of 3 blocks made by
  `nn.scan` (every bias and LayerNorm scale stacked into a [3, 6] matrix)."""

  @nn.compact
  def __call__(self, x):
    h = nn.DenseGeneral((2, 3))(x).reshape(x.shape[0], 6)
    stack = nn.scan(_Block, variable_axes={'params': 0}, split_rngs={'params': True},
                    length=3)
    return stack()(h, None)[0]


def test_weight_decay_is_chosen_by_name_not_rank():
  params = MultiHeadAndScan().init(jax.random.key(0), jnp.ones((1, 4)))['params']
  names = lambda tree: ['/'.join(str(k.key) for k in path)
                        for path, _ in jax.tree_util.tree_leaves_with_path(tree)]
  ranks = dict(zip(names(params), (np.ndim(w) for w in jax.tree.leaves(params))))
  decayed = dict(zip(names(params), jax.tree.leaves(optimizers.weights_mask(params))))
  assert ranks['DenseGeneral_0/bias'] == 2 and not decayed['DenseGeneral_0/bias']
  stacked = [n for n in ranks if n.startswith('Scan_Block_0') and not n.endswith('kernel')]
  assert len(stacked) == 3 and all(ranks[n] == 2 and not decayed[n] for n in stacked)
  assert {n for n, d in decayed.items() if d} == {n for n in ranks if n.endswith('kernel')}
  # AdamW with zero gradients moves exactly the kernels; the L2 gradient likewise.
  c = default.get_config().optimizer
  c.update(name='adamw', weight_decay=0.1, schedule='constant')
  tx = optimizers.create(c, total_steps=10)
  updates, _ = tx.update(jax.tree.map(jnp.zeros_like, params), tx.init(params), params)
  l2_grad = jax.grad(losses.l2_penalty)(params)
  for name, u, g in zip(names(params), jax.tree.leaves(updates), jax.tree.leaves(l2_grad)):
    assert bool(np.any(np.asarray(u) != 0)) == name.endswith('kernel'), name
    assert bool(np.any(np.asarray(g) != 0)) == name.endswith('kernel'), name


def test_state_is_created_in_its_shards():
  c = spirals_config(mesh_shape=(2, 4), mesh_axes=('data', 'model'),
                     param_sharding=(('Dense_1/kernel', (None, 'model')), ('.*', ())))
  state = loop.build(c, jax.devices()).state
  kernel = state.params['Dense_1']['kernel']  # 64 x 64
  assert kernel.sharding.spec == jax.sharding.PartitionSpec(None, 'model')
  assert {s.data.shape for s in kernel.addressable_shards} == {(64, 16)}
  # The optimizer state of a kernel follows it (the rules are regexes on the path).
  (momentum,) = [leaf for path, leaf in jax.tree_util.tree_leaves_with_path(state.opt_state)
                 if 'Dense_1' in str(path) and 'kernel' in str(path)] or [None]
  assert momentum is None or momentum.sharding.spec == jax.sharding.PartitionSpec(None, 'model')
  c.param_sharding = (('kernel', (None, 'model')), ('.*', ()))  # also the 64 x 3 output
  with pytest.raises(UserError, match="splits params/Dense_2/kernel of shape .64, 3. 4 ways"):
    loop.build(c, jax.devices())


def test_main_explains_user_errors_and_keeps_tracebacks_of_bugs(monkeypatch, tmp_path):
  from experiments import main
  flags.FLAGS([__file__, f'--workdir={tmp_path}'])

  def raises(error):
    def train_and_evaluate(config, workdir, fresh=False):
      raise error
    return train_and_evaluate

  monkeypatch.setattr(loop, 'train_and_evaluate', raises(UserError('config.x is bad.')))
  with pytest.raises(SystemExit, match='error: config.x is bad.'):
    main.main([])
  bug = ValueError('Incompatible shapes for broadcasting: (3,) and (4,)')
  monkeypatch.setattr(loop, 'train_and_evaluate', raises(bug))
  with pytest.raises(ValueError) as caught:
    main.main([])
  assert caught.value is bug  # not turned into one line: the traceback survives


class PredictionTask(tasks.Classification):
  """Classification whose evaluation returns per-example predictions, scored on the host."""

  def eval_batch(self, state, batch):
    logits, _ = self.apply(state, state.params, batch, None, train=False)
    return tasks.EvalOutput(examples={'prediction': self.predictions(logits),
                                      'label': batch['label'], 'mask': batch['mask']})

  def finalize(self, sums, examples):
    assert sums is None
    real = examples['mask'] > 0
    return {'accuracy': float(np.mean(examples['prediction'][real] == examples['label'][real])),
            'count': int(real.sum())}


tasks.register('test_predictions')(PredictionTask)


@pytest.mark.parametrize('mode', ['mesh', 'pmap'])
def test_host_side_evaluation_equals_on_device_sums(mode, tmp_path):
  """The same trained state scored by confusion sums and by gathered predictions."""
  c = spirals_config(mode, num_steps=50, eval_batch_size=64, eval_every=1000)
  c.data.update(num_test=1000)  # not a multiple of 64: the last batch is padded
  state, test = loop.train_and_evaluate(c, tmp_path / 'sums', devices=jax.devices())
  c.task = 'test_predictions'
  exp = loop.build(c, jax.devices())
  trained = jax.tree.unflatten(jax.tree.structure(exp.par.unreplicate(exp.state)),
                               jax.tree.leaves(state))  # the trained arrays, exp's task
  placed = (jax.device_put(trained, jax.tree.map(lambda x: x.sharding, exp.state))
            if mode == 'mesh' else
            exp.par.place_restored(jax.device_put(trained, exp.par.replicated)))
  _, eval_step = loop.compile_steps(exp, placed)
  gathered = loop.evaluate(exp, eval_step, placed, exp.splits.test)
  assert gathered['count'] == 1000
  assert gathered['accuracy'] == pytest.approx(test['accuracy'], abs=1e-9)
  assert 0.5 < test['accuracy'] < 1.0


def test_a_text_classifier_through_the_same_loop(tmp_path):
  """SST-2 with a bag of words: vocab_size reaches the model from the dataset, eval is
  bucketed, and it learns (a constant classifier scores about 0.5)."""
  if not SHARED_DATA.is_dir():
    pytest.skip(f'{SHARED_DATA} is absent (it only exists on the project machines).')
  c = sst2_bow.get_config()
  c.update(data_dir=str(SHARED_DATA / 'sst2'), tfds_data_dir=str(tmp_path / 'tfds'),
           num_epochs=2, eval_every=10_000, progress_bar=False)
  # One device: XLA:CPU deadlocks when several steps with a large all-reduce are in flight
  # over 8 simulated devices on 2 cores (an XLA thread-pool issue, not this code's).
  state, test = loop.train_and_evaluate(c, tmp_path / 'run', devices=jax.devices()[:1])
  assert state.params['Embed_0']['embedding'].shape[0] > 10_000  # the words of SST-2 train
  assert test['accuracy'] > 0.7
  (record,) = [r for r in reporting.read_metrics(tmp_path / 'run') if r['split'] == 'test']
  assert record['accuracy'] == test['accuracy']


def test_text_evaluation_is_bucketed_with_lengths_of_the_training_split(tmp_path):
  from train.data import registry
  from ml_collections import ConfigDict
  folder = tmp_path / 'sst'
  folder.mkdir()
  (folder / 'stsa.binary.train').write_text('1 good film\n0 bad film\n1 fine\n')
  (folder / 'stsa.binary.dev').write_text('1 ok\n')
  long_test = ' '.join(['word'] * 40)
  (folder / 'stsa.binary.test').write_text(f'1 ok\n0 {long_test}\n1 fine film\n')
  splits = registry.build(ConfigDict({'dataset': 'sst2', 'data_dir': str(folder),
                                      'tfds_data_dir': str(tmp_path / 'tfds'), 'data': {}}))
  assert splits.info['max_len'] == 8  # from the training split's longest sentence (2)
  batches = list(splits.test.eval_batches(2))
  assert all(b['inputs'].shape[1] <= 8 for b in batches)
  seen = sorted(int(i) for b in batches for i, m in zip(b['index'], b['mask']) if m)
  assert seen == [0, 1, 2]  # every example once


def test_a_task_without_labels_is_named():
  c = spirals_config()
  with pytest.raises(UserError, match="config.task='classification' needs a dataset"):
    tasks.create(c, {'vocab_size': 10})

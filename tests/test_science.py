"""The training-science experiments (experiments/science/): each builds the variants it
says it compares, and its plot and report run on a real 3-step MNIST-5k run; the train
split evaluation their generalisation gap rests on matches a NumPy forward pass."""

import json
import math

import jax
import numpy as np
import pytest
from ml_collections import ConfigDict

from experiments.science import (batch_norm, batch_size, common, initialization, optimizers,
                                 regularization, schedules)
from conftest import SHARED_DATA
from train import data
from train import optimizers as optimizers_lib

DATA = str(SHARED_DATA / 'mnist5k')


def flat(config: ConfigDict) -> dict:
  def walk(prefix, value):
    if isinstance(value, dict):
      return {k: v for key, sub in value.items() for k, v in walk(f'{prefix}{key}.', sub).items()}
    return {prefix[:-1]: value}
  return walk('', config.to_dict())


def changed(a: ConfigDict, b: ConfigDict) -> set[str]:
  """The fields whose values differ between two configs."""
  fa, fb = flat(a), flat(b)
  return {k for k in fa.keys() | fb.keys() if fa.get(k) != fb.get(k)}


def test_optimizers_grid_is_each_default_times_each_factor():
  configs = optimizers.variants(DATA, ['sgd', 'adadelta', 'adam'], [0.1, 1.0], num_epochs=10)
  assert sorted(configs) == sorted(['sgd_lr0.01', 'sgd_lr0.1', 'adadelta_lr0.1',
                                    'adadelta_lr1', 'adam_lr0.0001', 'adam_lr0.001'])
  assert configs['adam_lr0.0001'].optimizer.learning_rate == pytest.approx(1e-4)
  assert changed(configs['sgd_lr0.1'], configs['adam_lr0.001']) == {
      'optimizer.name', 'optimizer.learning_rate'}
  base = configs['sgd_lr0.1']
  assert (base.optimizer.schedule, base.model.dropout_rate, base.data.augment,
          base.num_epochs) == ('constant', 0.0, False, 10)


def test_optimizers_choose_the_lowest_final_loss_and_never_a_diverged_run():
  configs = optimizers.variants(DATA, ['sgd'], [0.316, 1.0, 3.16], num_epochs=1)
  logs = {'sgd_lr0.0316': [0.9, 0.5], 'sgd_lr0.1': [0.8, 0.3], 'sgd_lr0.316': [0.1, math.nan]}
  runs = {name: common.Run([{'step': 10 * (i + 1), 'split': 'train', 'loss': loss,
                             'nonfinite_steps': int(not math.isfinite(loss))}
                            for i, loss in enumerate(losses)], {})
          for name, losses in logs.items()}
  assert optimizers.choose(runs, configs) == {'sgd': 'sgd_lr0.1'}
  assert optimizers.final_loss(runs['sgd_lr0.316']) == math.inf


@pytest.mark.parametrize('losses,expected', [
    ({0.01: 0.9, 0.0316: 0.5, 0.1: 0.3}, 0.316),  # best at the top: half a decade up
    ({0.316: 0.2, 1.0: 0.4, 3.16: math.inf}, 0.1),  # best at the bottom: down
    ({0.01: 0.9, 0.0316: 0.2, 0.1: 0.3}, None),  # bracketed
    ({0.1: math.inf, 0.316: math.inf}, None),  # nothing trains
])
def test_optimizers_extend_the_grid_past_a_best_edge(losses, expected):
  assert optimizers.next_rate(losses) == expected


def test_batch_size_variants_keep_the_epochs():
  configs = batch_size.variants(DATA, [16, 1024], 1e-3, num_epochs=10)
  assert list(configs) == ['batch_16', 'batch_1024']
  assert changed(*configs.values()) == {'batch_size', 'eval_every', 'checkpoint_every'}
  assert configs['batch_1024'].num_epochs == 10 and configs['batch_1024'].num_steps == -1
  assert configs['batch_1024'].checkpoint_every == 10 * (4000 // 1024)


@pytest.mark.parametrize('name,rate', [
    ('constant', lambda t, T: 0.1),
    ('step', lambda t, T: 0.1 * 0.1 ** ((t >= T // 2) + (t >= 3 * T // 4))),
    ('exponential', lambda t, T: 0.1 * 0.1 ** (t / T)),
    ('linear', lambda t, T: 0.1 * (1 - t / T)),
    ('cosine', lambda t, T: 0.1 * (1 + math.cos(math.pi * t / T)) / 2),
    ('warmup_cosine', lambda t, T: 0.1 * t / (T // 10) if t < T // 10 else
     0.1 * (1 + math.cos(math.pi * (t - T // 10) / (T - T // 10))) / 2),
])
def test_schedules_give_the_rates_of_their_docstring(name, rate):
  c = schedules.variants(DATA, [name], learning_rate=0.1, num_epochs=20)[name]
  total = 20 * 31
  lr = optimizers_lib.schedule(c.optimizer, total)
  for t in (0, 1, 30, 61, 62, 100, 309, 310, 465, 500, 619):
    assert float(lr(t)) == pytest.approx(rate(t, total), rel=1e-5, abs=1e-8), t
  assert (c.optimizer.name, c.optimizer.momentum) == ('momentum', 0.9)


def test_batch_norm_pairs_differ_in_batch_norm_only():
  configs = batch_norm.variants(DATA, [0.01, 0.1], num_epochs=5)
  assert list(configs) == ['bn_lr0.01', 'plain_lr0.01', 'bn_lr0.1', 'plain_lr0.1']
  assert changed(configs['bn_lr0.1'], configs['plain_lr0.1']) == {'model.batch_norm'}
  assert configs['bn_lr0.1'].model.name == 'cnn'


def test_regularization_changes_one_thing_per_run():
  configs = regularization.variants(DATA, [0.0, 1e-4], [0.0, 0.5], num_epochs=20)
  assert list(configs) == ['none', 'l2_0.0001', 'dropout_0.5']
  assert changed(configs['none'], configs['l2_0.0001']) == {'l2'}
  assert changed(configs['none'], configs['dropout_0.5']) == {'model.dropout_rate'}
  assert (configs['none'].l2, configs['none'].model.dropout_rate) == (0.0, 0.0)


def test_initialization_variants_cover_every_pair():
  configs = initialization.variants(DATA, ['relu', 'tanh'], ['zeros', 'he'], depth=8,
                                    width=64, num_steps=50, learning_rate=0.01)
  assert list(configs) == ['relu_zeros', 'relu_he', 'tanh_zeros', 'tanh_he']
  assert changed(configs['relu_zeros'], configs['tanh_he']) == {
      'model.activation', 'model.initializer'}
  assert configs['tanh_he'].model.hidden == (64,) * 8
  assert (configs['tanh_he'].num_steps, configs['tanh_he'].log_every) == (50, 1)


@pytest.fixture(scope='module')
def tiny_run(tmp_path_factory):
  """Three steps of the regularisation experiment's dropout run on MNIST-5k."""
  if not SHARED_DATA.is_dir():
    pytest.skip(f'{DATA} is absent (it only exists on the project machines).')
  root = tmp_path_factory.mktemp('science')
  config = regularization.variants(DATA, [], [0.5], num_epochs=1)['dropout_0.5']
  config.update(num_steps=3, log_every=1, eval_every=3, checkpoint_every=3)
  return root, config, common.train(config, root / 'dropout_0.5')


def numpy_mlp_accuracy(params: dict, x_NxHxWx1: np.ndarray, labels_N: np.ndarray) -> float:
  """Accuracy of the MLP's evaluation forward pass, ReLU between dense layers, no dropout."""
  h = x_NxHxWx1.reshape(len(x_NxHxWx1), -1).astype(np.float64)
  layers = sorted(params, key=lambda name: int(name.split('_')[1]))
  for i, name in enumerate(layers):
    h = h @ np.asarray(params[name]['kernel'], np.float64) + np.asarray(params[name]['bias'])
    h = np.maximum(h, 0.0) if i < len(layers) - 1 else h
  return float(np.mean(np.argmax(h, axis=1) == labels_N))


def test_train_split_evaluation_is_the_training_examples_without_dropout(tiny_run):
  root, config, run = tiny_run
  record = common.evaluated(root / 'dropout_0.5', 'train')
  assert (record['step'], record['split'], record['source']) == (3, 'train', 'evaluate')
  train = data.build(config).train.arrays
  expected = numpy_mlp_accuracy(jax.device_get(run.state.params), train['inputs'],
                                train['label'])
  assert record['accuracy'] == pytest.approx(expected, abs=1.5 / len(train['label']))
  lines = (root / 'dropout_0.5' / 'metrics.jsonl').read_text()
  assert common.evaluated(root / 'dropout_0.5', 'train') == record  # read back, not redone
  assert (root / 'dropout_0.5' / 'metrics.jsonl').read_text() == lines
  assert run.curve('accuracy') == run.curve('accuracy', 'train')  # the logged lines only
  assert len(run.curve('loss')[0]) == 3


def test_every_plot_and_report_runs_on_a_real_run(tiny_run, capsys):
  root, config, run = tiny_run
  name = 'adam_lr0.001'
  configs = optimizers.variants(DATA, ['adam'], [1.0], 1)
  optimizers.plot({name: run}, configs, {'adam': name}, root / 'optimizers.png')
  batch_size.plot([batch_size.row(config, run)], root / 'batch_size.png', 1)
  schedules.plot({'constant': run}, root / 'schedules.png', 1e-3)
  batch_norm.plot({'bn_lr0.01': run}, batch_norm.variants(DATA, [0.01], 1),
                  root / 'batch_norm.png')
  none = regularization.variants(DATA, [], [], 1)['none']
  rows = [regularization.row(none, run, 0.5), regularization.row(config, run, 0.5)]
  regularization.plot(rows, root / 'regularization.png', 1)
  configs = initialization.variants(DATA, ['relu'], ['he'], 2, 8, 3, 0.01)
  initialization.plot({'relu_he': run}, configs, root / 'initialization.png')
  for png in ('optimizers', 'batch_size', 'schedules', 'batch_norm', 'regularization',
              'initialization'):
    assert (root / f'{png}.png').stat().st_size > 10_000, png
  capsys.readouterr()
  common.report('regularization', rows, num_epochs=1)
  table, line = capsys.readouterr().out.strip().splitlines()[-2:]
  assert json.loads(line) == {'experiment': 'regularization', 'num_epochs': 1, 'runs': rows}
  assert rows[1]['gap'] == pytest.approx(0.5 - run.test['accuracy'])
  assert table.split()[-1] == f'{rows[1]["gap"]:.4g}'

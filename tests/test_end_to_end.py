"""The real train_and_evaluate, briefly, on the default experiment: it learns, and the
workdir holds what DESIGN.md promises."""

import json

import pytest

from experiments.configs import default
from train import loop, reporting, state as state_lib


@pytest.fixture(scope='module')
def run(tmp_path_factory):
  workdir = tmp_path_factory.mktemp('spirals')
  c = default.get_config()
  c.update(num_steps=600, log_every=100, eval_every=300, checkpoint_every=300,
           progress_bar=False)
  state, test = loop.train_and_evaluate(c, workdir)
  return workdir, state, test


def test_spirals_mlp_learns(run):
  _, _, test = run
  assert test['accuracy'] > 0.95  # a linear model is at ~0.5 on three spirals


def test_parameter_count_is_pinned(run):
  _, state, _ = run
  # 2*64+64 + 64*64+64 + 64*3+3 = 192 + 4160 + 195
  assert state_lib.parameter_count(state.params) == 4547


def test_workdir_contents(run):
  workdir, _, test = run
  records = reporting.read_metrics(workdir)
  assert [r['step'] for r in records if r['split'] == 'train'] == list(range(100, 601, 100))
  assert [r['step'] for r in records if r['split'] == 'eval'] == [300, 600]
  (final,) = [r for r in records if r['split'] == 'test']
  assert final['accuracy'] == test['accuracy'] and len(final['confusion_matrix']) == 3
  for name in ('loss', 'accuracy', 'precision', 'recall', 'f1', 'grad_norm',
               'learning_rate', 'examples_per_sec'):
    assert name in records[0], name
  assert json.loads((workdir / 'config.json').read_text())['model']['name'] == 'mlp'
  assert list((workdir / 'tensorboard').glob('events.out.tfevents.*'))
  assert (workdir / 'curves.png').read_bytes()[:4] == b'\x89PNG'
  assert sorted(p.name for p in (workdir / 'checkpoints').iterdir()) == ['300', '600']


def test_finished_run_started_again_does_not_duplicate_logs(run):
  workdir, state, _ = run
  c = default.get_config()
  c.update(num_steps=600, log_every=100, eval_every=300, checkpoint_every=300,
           progress_bar=False)
  again, _ = loop.train_and_evaluate(c, workdir)
  assert int(again.step) == 600
  records = reporting.read_metrics(workdir)
  assert len([r for r in records if r['split'] == 'test']) == 1
  assert len(records) == 6 + 2 + 1

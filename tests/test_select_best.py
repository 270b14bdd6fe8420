"""config.select_best / config.patience: the test evaluates the best evaluation's parameters,
a resumed run keeps them, and early stopping ends the run (train/selection.py)."""

import types

import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp
import pytest

from experiments.configs import default
from train import config_checks, loop, reporting, selection


def tiny_config(num_steps, **fields):
  """48 noisy spiral points, Adam at a constant rate: the validation loss wanders."""
  c = default.get_config()
  c.data.update(num_train=48, num_test=300, noise=0.5)
  c.optimizer.update(learning_rate=0.1, schedule='constant')
  c.update(batch_size=16, eval_batch_size=300, num_steps=num_steps, log_every=3,
           eval_every=3, checkpoint_every=num_steps, keep_checkpoints=3, progress_bar=False,
           select_best='loss', **fields)
  return c


def checkpointed_params(workdir, step):
  return ocp.StandardCheckpointer().restore(
      workdir / 'checkpoints' / str(step) / 'state')['params']


def test_tests_the_best_evaluation_kept_across_a_resume_and_stops_early(tmp_path):
  one = jax.devices()[:1]
  loop.train_and_evaluate(tiny_config(21), tmp_path, devices=one)
  # Resumed at step 21 for 9 more steps, with patience 1: it stops at the first
  # evaluation whose loss is above the best so far.
  state, test = loop.train_and_evaluate(tiny_config(30, patience=1), tmp_path, devices=one)
  evals = [r for r in reporting.read_metrics(tmp_path) if r['split'] == 'eval']
  steps = np.array([r['step'] for r in evals])
  losses = np.array([r['loss'] for r in evals])
  best = int(steps[np.argmin(losses)])
  worse = steps[(steps > best) & (losses > losses.min())]
  assert best == 21 and worse[0] == 24  # the run this seed makes: best before the resume
  assert steps[-1] == 24  # stopped at the first worse evaluation, not at step 30
  (record,) = [r for r in reporting.read_metrics(tmp_path) if r['split'] == 'test']
  assert record['step'] == 24 and record['selected_step'] == test['selected_step'] == best
  for tested, saved in zip(jax.tree.leaves(state.params),
                           jax.tree.leaves(checkpointed_params(tmp_path, best)), strict=True):
    np.testing.assert_array_equal(np.asarray(tested), saved)
  assert not np.array_equal(np.asarray(jax.tree.leaves(state.params)[0]),
                            jax.tree.leaves(checkpointed_params(tmp_path, 24))[0])
  # Run again: finished, it returns the same test and the kept parameters.
  again_state, again = loop.train_and_evaluate(tiny_config(30, patience=1), tmp_path,
                                               devices=one)
  assert again['accuracy'] == test['accuracy'] and again['selected_step'] == best
  for a, b in zip(jax.tree.leaves(again_state.params), jax.tree.leaves(state.params)):
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def feed(chosen, values):
  """Evaluations (accuracy, loss) at steps 1, 2, ...; params = the step, to see which is kept."""
  for step, (accuracy, loss) in enumerate(values, 1):
    chosen.update(step, {'accuracy': accuracy, 'loss': loss},
                  types.SimpleNamespace(params=jnp.array(step), model_state={}))


def test_rule_keeps_evaluations_at_least_as_good_in_every_metric():
  c = default.get_config()
  c.update(select_best='accuracy, loss', patience=2)
  chosen = selection.Selection(c)
  # step 2 improves accuracy only (wait restarts, not kept); step 3 ties accuracy and
  # improves loss (kept); steps 4, 5 improve nothing: the wait reaches 2.
  feed(chosen, [(0.5, 1.0), (0.6, 1.1), (0.6, 0.9), (0.55, 0.95), (0.58, 0.91)])
  assert chosen.record['step'] == 3 and int(chosen.variables['params']) == 3
  assert chosen.record['best'] == {'accuracy': 0.6, 'loss': 0.9}
  assert chosen.record['wait'] == 2 and chosen.stopped

  c.update(select_best='accuracy', patience=0)
  chosen = selection.Selection(c)
  feed(chosen, [(0.5, 1.0), (0.7, 1.1), (0.6, 0.9), (0.7, 0.95), (0.2, 0.5)])
  assert chosen.record['step'] == 4 and not chosen.stopped  # the latest of the ties

  with pytest.raises(loop.UserError, match=r"select_best='f1'.*choose among \['accuracy'"):
    c.select_best = 'f1'
    feed(selection.Selection(c), [(0.5, 1.0)])


def test_patience_without_a_metric_is_refused():
  c = default.get_config()
  c.patience = 5
  with pytest.raises(config_checks.ConfigError, match=r'config.patience=5 .*config.select_best'):
    config_checks.validate(c)

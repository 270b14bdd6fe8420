"""The sequence-to-sequence task: decoding through the model protocol, schedules, metrics."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import nets
import optax
from experiments.configs import reverse_transformer
from train import loop, seq2seq_tasks, state as state_lib
from train.data import tokenizers


def _task(**overrides):
  config = reverse_transformer.get_config()
  config.decoding.update(overrides)
  tokenizer = tokenizers.CharTokenizer(list('abcdef'), {})
  info = {'vocab_size': tokenizer.vocab_size, 'bos_id': tokenizers.BOS,
          'eos_id': tokenizers.EOS, 'tokenizer': tokenizer, 'max_len': 7, 'target_len': 7}
  return seq2seq_tasks.Seq2Seq(config, info), info


def _state(task, info, seed=0):
  model = nets.Transformer(vocab_size=info['vocab_size'], num_layers=2, num_heads=2,
                           model_dim=16, mlp_dim=32, dropout_rate=0.0, max_len=8)
  inputs = jnp.zeros((3, 7), jnp.int32), jnp.zeros((3, 7), jnp.int32)
  init = state_lib.initializer(model, optax.sgd(0.1), seed, ())
  return jax.jit(init)(*inputs), model


def test_greedy_decoding_through_the_cache_equals_recomputation():
  task, info = _task(method='greedy')
  state, model = _state(task, info)
  inputs = jnp.array([[5, 6, 7, 0, 0, 0, 0], [8, 9, 5, 6, 7, 8, 0], [9, 0, 0, 0, 0, 0, 0]])
  decoded = np.asarray(task.decode(state, inputs, 'greedy'))
  # Recompute: run the whole decoder on the prefix every step (zeros after it are hidden
  # by the causal mask) and take the argmax at the prefix's last position.
  apply = jax.jit(model.apply)
  prefix = np.zeros((3, 7), int)
  prefix[:, 0] = tokenizers.BOS
  done = np.zeros(3, bool)
  expected = np.zeros((3, 7), int)
  for t in range(7):
    logits = apply({'params': state.params}, inputs, jnp.asarray(prefix))
    token = np.asarray(jnp.argmax(logits[:, t], -1))
    expected[:, t] = np.where(done, 0, token)
    done |= token == tokenizers.EOS
    if t < 6:
      prefix[:, t + 1] = token
  np.testing.assert_array_equal(decoded, expected)


def test_beam_size_one_without_penalty_is_greedy():
  task, info = _task(method='beam', beam_size=1, length_penalty=0.0)
  state, _ = _state(task, info, seed=3)
  inputs = jnp.array([[5, 6, 7, 0, 0, 0, 0], [8, 9, 5, 6, 7, 8, 0], [9, 0, 0, 0, 0, 0, 0]])
  np.testing.assert_array_equal(task.decode(state, inputs, 'beam'),
                                task.decode(state, inputs, 'greedy'))


@pytest.mark.parametrize('schedule, step, expected', [
    ('none', 500, 1.0), ('linear', 250, 0.75), ('linear', 2000, 0.1),
    ('exponential', 10, 0.9 ** 10), ('inverse_sigmoid', 20, 10 / (10 + np.exp(2.0)))])
def test_teacher_probability_schedules(schedule, step, expected):
  k = 0.9 if schedule == 'exponential' else 10.0
  got = seq2seq_tasks.teacher_probability(schedule, step, decay_steps=1000, k=k,
                                          min_teacher=0.1)
  np.testing.assert_allclose(float(got), expected, rtol=1e-6)


def test_scheduled_sampling_feeds_predictions_when_the_teacher_is_gone():
  """With e_i = 0 every decoder input after BOS is the first pass's argmax."""
  task, info = _task()
  task.sampling = dict(task.sampling, schedule='linear', decay_steps=1, min_teacher=0.0)
  state, model = _state(task, info)
  state = state.replace(step=jnp.asarray(5))
  batch = {'inputs': jnp.array([[5, 6, 7, 0, 0, 0, 0]]),
           'targets': jnp.array([[7, 6, 5, 2, 0, 0, 0]]),
           'mask': jnp.array([[1., 1, 1, 1, 0, 0, 0]])}
  mixed, _, teacher = task._scheduled_inputs(state, state.params, batch, jax.random.key(0))
  logits = model.apply({'params': state.params}, batch['inputs'],
                       seq2seq_tasks.shift_right(batch['targets'], tokenizers.BOS))
  predicted = np.asarray(jnp.argmax(logits, -1))
  assert float(teacher) == 0.0
  np.testing.assert_array_equal(mixed['targets_in'][0, 1:], predicted[0, :-1])
  assert int(mixed['targets_in'][0, 0]) == tokenizers.BOS


def test_exact_match_and_bleu_are_scored_on_real_rows_up_to_eos():
  task, _ = _task(bleu=True)
  eos = tokenizers.EOS
  examples = {'targets': np.array([[5, 6, eos, 0], [7, eos, 0, 0], [5, eos, 0, 0]]),
              'decoded': np.array([[5, 6, eos, 0], [8, eos, 0, 0], [9, 9, 9, 9]]),
              'real': np.array([True, True, False])}
  sums = {'loss': np.float32(3.0), 'count': np.float32(6.0), 'correct': np.float32(3.0)}
  out = task.finalize(sums, examples)
  assert out['exact_match'] == 0.5  # the padded third row is not counted
  assert out['loss'] == 0.5 and out['token_accuracy'] == 0.5


def test_reverse_and_non_autoregressive_copy_train(tmp_path):
  """A few hundred steps through the engine: the decoded outputs are mostly right."""
  config = reverse_transformer.get_config()
  config.data.update(num_train=2000, num_eval=200, num_test=200, max_len=5)
  config.update(num_steps=300, eval_every=300, checkpoint_every=300, progress_bar=False)
  _, result = loop.train_and_evaluate(config, str(tmp_path / 'ar'), devices=jax.devices()[:1])
  assert result['exact_match'] > 0.7, result
  config.dataset = 'copy'
  config.task = 'nat_seq2seq'
  config.model.name = 'nat_transformer'
  _, result = loop.train_and_evaluate(config, str(tmp_path / 'nat'), devices=jax.devices()[:1])
  assert result['length_accuracy'] > 0.9 and result['exact_match'] > 0.5, result

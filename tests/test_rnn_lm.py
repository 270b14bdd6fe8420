"""The recurrent language model: carried state equals one long window (model, engine step,
8-device mesh), row-contiguous batches, tied weights, sampling, the PTB/WikiText folder
layout, and a short Tiny Shakespeare run."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from ml_collections import ConfigDict

from experiments.configs import shakespeare_lstm
from nets import ModelConfigError
from nets.rnn_lm import RNNLM
from train import generate, loop, parallel, reporting, steps, tasks
from train import state as state_lib
from train.data import registry, tokenizers
from train.data.pipeline import Shard
from train.data.text_pipeline import lm_source
from train.errors import UserError

V, B, L, K = 11, 8, 5, 3  # vocabulary, rows, window length, windows per epoch


def _tokens(shape, seed=0):
  return jnp.asarray(np.random.default_rng(seed).integers(0, V, shape), jnp.int32)


def _log_softmax(z):
  z = np.asarray(z, np.float64)
  z = z - z.max(-1, keepdims=True)
  return z - np.log(np.exp(z).sum(-1, keepdims=True))


def _random_params(shapes, seed=0):
  """N(0, 0.5^2) values of the given shapes from NumPy: init would compile every
  initialiser, and only shapes are needed."""
  rng = np.random.default_rng(seed)
  return jax.tree.map(lambda s: (0.5 * rng.standard_normal(s.shape)).astype(np.float32), shapes)


def test_carried_state_equals_the_concatenated_window():
  model = RNNLM(vocab_size=V, embed_dim=6, hidden_size=7, num_layers=2, cell='lstm',
                carry_batch_size=B)
  window = _tokens((B, L))
  tokens = jnp.concatenate([window, window], axis=1)  # the same window twice
  shapes = jax.eval_shape(model.init, jax.random.key(0), window[:1])
  assert jax.tree.leaves(shapes['carry'])[0].shape == (B, 7)  # sized B, whatever the batch
  variables = {'params': _random_params(shapes['params']),
               'carry': jax.tree.map(lambda s: np.zeros(s.shape, s.dtype), shapes['carry'])}

  @jax.jit
  def run(variables):
    params = {'params': variables['params']}
    first, carry = model.apply(variables, window, mutable=['carry'])
    second, _ = model.apply({**params, **carry}, window, mutable=['carry'])
    # Where 'carry' is not mutable (evaluation), the window starts from zeros instead.
    alone = model.apply({**params, **carry}, window)
    return model.apply(params, tokens), jnp.concatenate([first, second], axis=1), alone
  whole, carried, alone = run(variables)
  np.testing.assert_allclose(carried, whole, atol=1e-5)
  np.testing.assert_allclose(alone, whole[:, :L], atol=1e-6)
  assert not np.allclose(whole[:, L:], whole[:, :L], atol=1e-3)  # the state made a difference


def _config():
  return ConfigDict({'task': 'language_model', 'batch_size': B, 'parallel_mode': 'mesh',
                  'mesh_shape': (-1,), 'mesh_axes': ('data',), 'param_sharding': (('.*', ()),),
                  'sharding': 'data', 'logical_axis_rules': (),
                  'seed': 0, 'l2': 0.0, 'data': {'carry_state': True},
                  'model': {'name': 'rnn_lm', 'embed_dim': 6, 'hidden_size': 7}})


def _stream():
  return np.random.default_rng(1).integers(7, V, B * K * L + 1).astype(np.int32)


def _initial_state(config):
  """The engine's train state (carry included) for `config`, with random parameters."""
  task = tasks.create(config, {'vocab_size': V})
  model = loop.create_model(config, task, {'vocab_size': V}, 'mesh')
  init = state_lib.initializer(model, optax.sgd(0.0), 0, task.state_collections)
  shapes = jax.eval_shape(init, jnp.zeros((2, L), jnp.int32))
  params = _random_params(shapes.params)
  return task, model, shapes.replace(
      step=np.zeros((), np.int32), params=params, opt_state=shapes.tx.init(params),
      model_state=jax.tree.map(lambda s: np.zeros(s.shape, s.dtype), shapes.model_state))


def _train_losses(config, task, state, stream, num_steps, devices):
  """Loss sums of `num_steps` standard train steps (at learning rate 0) on `devices`."""
  par = parallel.MeshParallel(config, devices)
  state = state.replace(rng=jax.random.key(0))  # a fresh key array: the step donates its state
  state = jax.device_put(state, par.state_shardings(state))
  step = par.compile(steps.make_train_step(task, config), state, True)
  batches = lm_source(stream, L, 'train', contiguous=True).train_iterator(B, seed=0)
  losses = []
  for _ in range(num_steps):
    state, sums = step(state, par.place_batch(next(batches), B))
    losses.append(float(sums['loss']))
  return np.array(losses), state


def test_train_steps_carry_the_state_reset_it_each_epoch_and_shard_it_on_a_mesh():
  config, stream = _config(), _stream()
  task, model, state = _initial_state(config)
  assert jax.tree.leaves(state.model_state['carry'])[0].shape == (B, 7)
  losses, _ = _train_losses(config, task, state, stream, K + 1, jax.devices()[:1])
  # One long window per row: row b reads stream[b S : (b + 1) S + 1], S = K L.
  rows = np.stack([stream[b * K * L:(b + 1) * K * L + 1] for b in range(B)])
  logits = jax.jit(model.apply)({'params': state.params}, jnp.asarray(rows[:, :-1]))
  nll = -np.take_along_axis(_log_softmax(logits), rows[:, 1:, None], -1)[..., 0]
  want = nll.reshape(B, K, L).sum(axis=(0, 2))  # per window k, summed over rows
  np.testing.assert_allclose(losses[:K], want, rtol=1e-5)
  # Step K is the next epoch's first window: the state starts over from zeros.
  np.testing.assert_allclose(losses[K], want[0], rtol=1e-5)
  # The same steps with the batch split over an 8-device mesh, the carry replicated (the
  # default rule) or split by rows like the batch.
  eight, _ = _train_losses(config, task, state, stream, K, jax.devices()[:8])
  np.testing.assert_allclose(eight, want, rtol=1e-5)
  config.param_sharding = (('carry', ('data',)), ('.*', ()))
  eight, state = _train_losses(config, task, state, stream, K, jax.devices()[:8])
  np.testing.assert_allclose(eight, want, rtol=1e-5)
  assert jax.tree.leaves(state.model_state)[0].sharding.spec == jax.sharding.PartitionSpec('data')


def test_carried_state_config_errors_name_the_field():
  config = _config()
  config.parallel_mode = 'pmap'
  with pytest.raises(UserError, match="parallel_mode='mesh'"):
    tasks.create(config, {})
  config = _config()
  config.model = ConfigDict({'name': 'gpt'})
  task = tasks.create(config, {'vocab_size': V})
  with pytest.raises(UserError, match=r"carry_state=True .*name='gpt'"):
    loop.create_model(config, task, {'vocab_size': V}, 'mesh')


def test_row_contiguous_batches_continue_each_row():
  n, rows, seq = 103, 4, 5
  stream = np.arange(1, n + 1, dtype=np.int32)
  source = lm_source(stream, seq, 'train', contiguous=True)
  it = source.train_iterator(rows, seed=0)
  per_row = (n - 1) // rows  # 25 tokens per row: 5 windows an epoch
  assert it.batches_per_epoch == per_row // seq == 5
  batches = [next(it) for _ in range(7)]
  for k, batch in enumerate(batches):
    start = (k % 5) * seq
    want = np.stack([stream[b * per_row + start:b * per_row + start + seq + 1]
                     for b in range(rows)])
    np.testing.assert_array_equal(batch['inputs'], want[:, :-1])
    np.testing.assert_array_equal(batch['targets'], want[:, 1:])
    np.testing.assert_array_equal(batch['reset'], float(k % 5 == 0))
    assert batch['mask'].shape == (rows, seq) and batch['mask'].min() == 1
  for a, b in zip(batches[:4], batches[1:5]):  # row b of batch k+1 continues row b of k
    np.testing.assert_array_equal(b['inputs'][:, 0], a['targets'][:, -1])
  # Resuming yields the same batches; two processes' rows make up the global batch.
  resumed = source.train_iterator(rows, seed=1)
  resumed.set_state({'epoch': 0, 'position': 3})
  np.testing.assert_array_equal(next(resumed)['inputs'], batches[3]['inputs'])
  halves = [next(source.train_iterator(rows, 0, Shard(i, 2)))['inputs'] for i in range(2)]
  np.testing.assert_array_equal(np.concatenate(halves), batches[0]['inputs'])
  # Evaluation reads the packed windows, as without `contiguous`.
  packed = lm_source(stream, seq, 'eval')
  np.testing.assert_array_equal(next(source.eval_batches(8))['inputs'],
                                next(packed.eval_batches(8))['inputs'])
  with pytest.raises(UserError, match='batch_size=30 rows'):
    source.train_iterator(30, seed=0)


def test_tied_weights_reuse_the_embedding():
  tied = RNNLM(vocab_size=V, embed_dim=8, hidden_size=8, tie_weights=True)
  params = jax.eval_shape(tied.init, jax.random.key(0), _tokens((1, 3)))['params']
  # Embedding V x 8, one LSTM layer (8 x 32 input kernel + bias, 8 x 32 recurrent), bias V.
  assert sum(x.size for x in jax.tree.leaves(params)) == V * 8 + (8 * 32 + 32 + 8 * 32) + V
  assert 'output' not in params
  untied = RNNLM(vocab_size=V, embed_dim=8, hidden_size=8)
  params = jax.eval_shape(untied.init, jax.random.key(0), _tokens((1, 3)))['params']
  assert params['output']['kernel'].shape == (8, V)
  with pytest.raises(ModelConfigError, match='embed_dim=6 must equal hidden_size=8'):
    jax.eval_shape(RNNLM(vocab_size=V, embed_dim=6, hidden_size=8, tie_weights=True).init,
                   jax.random.key(0), _tokens((1, 3)))


def test_evaluation_samples_token_by_token_as_recomputation_would(capsys):
  config = _config()
  config.samples = ConfigDict({'count': 2, 'length': 6, 'temperature': 0.7})
  tokenizer = tokenizers.CharTokenizer.train(['abcd'], {})  # 7 special ids + 4 = V
  task = tasks.create(config, {'vocab_size': V, 'tokenizer': tokenizer})
  model = loop.create_model(config, task, {'vocab_size': V}, 'mesh')
  _, _, state = _initial_state(config)
  inputs = _tokens((B, L))
  mask = np.ones((B, L), np.float32)
  mask[0] = 0  # a padding row: never shown
  batch = {'inputs': inputs, 'targets': inputs, 'mask': mask}
  out = jax.jit(task.eval_batch)(state.replace(rng=jax.random.key(0)), batch)
  # Recomputing the whole window for each new token (no state carried in 'cache').
  want = jax.jit(lambda params: generate.generate(
      model, params, inputs, jax.random.key(config.seed), 6, temperature=0.7,
      use_cache=False))(state.params)
  np.testing.assert_array_equal(out.examples['sample'], want)
  task.finalize(jax.device_get(out.sums), jax.device_get(out.examples))
  printed = capsys.readouterr().out
  assert [tokenizer.decode(list(row)) for row in np.asarray(want)[1:3]] == [
      block.split('---\n', 1)[1].rstrip('\n') for block in printed.split('--- sample ')[1:]]


def _write_ptb(folder, lines):
  folder.mkdir()
  for split, text in zip(('train', 'valid', 'test'), lines):
    (folder / f'ptb.{split}.txt').write_text(text)


def test_text_corpus_reads_the_word_benchmark_folders(tmp_path):
  _write_ptb(tmp_path / 'ptb', (' the cat sat \n the dog sat \n', ' sat cat \n', ' the <unk> \n'))
  wiki = tmp_path / 'wikitext'
  wiki.mkdir()
  for split, text in zip(('train', 'valid', 'test'), ('x y\nx z\n', 'y\n', 'z x\n')):
    (wiki / f'wiki.{split}.tokens').write_text(text)
  base = {'dataset': 'text_corpus', 'tfds_data_dir': str(tmp_path / 'tfds')}
  splits = registry.build(ConfigDict({**base, 'data_dir': str(tmp_path / 'ptb'),
                                      'data': {'seq_len': 2}}))
  tok = splits.info['tokenizer']
  # Each non-empty line, then EOS (3): the train split is 'the cat sat' 'the dog sat'.
  train = np.append(splits.train.arrays['inputs'].ravel(), splits.train.arrays['targets'][-1, -1])
  np.testing.assert_array_equal(train, np.concatenate(
      [tok.encode('the cat sat'), [3], tok.encode('the dog sat'), [3]])[:len(train)])
  assert len(train) == 7  # 8 tokens make 3 windows of 2 (+1 target)
  assert tok.decode(splits.eval.arrays['inputs'][0]) == 'sat cat'
  assert list(splits.test.arrays['inputs'][0]) == [tok.encode('the')[0], 1]  # PTB's <unk> is UNK
  assert splits.info['vocab_size'] == 7 + 4  # the, sat, cat, dog: training words only
  splits = registry.build(ConfigDict({**base, 'data_dir': str(wiki), 'data': {'seq_len': 1}}))
  assert splits.info['tokenizer'].decode(splits.test.arrays['inputs'][0]) == 'z'
  (tmp_path / 'empty').mkdir()
  with pytest.raises(UserError, match='is a folder without ptb.train.txt'):
    registry.build(ConfigDict({**base, 'data_dir': str(tmp_path / 'empty'), 'data': {}}))
  _write_ptb(tmp_path / 'partial', ('a b\n', 'a\n', 'b\n'))
  (tmp_path / 'partial' / 'ptb.test.txt').unlink()
  with pytest.raises(UserError, match='ptb.test.txt is missing'):
    registry.build(ConfigDict({**base, 'data_dir': str(tmp_path / 'partial'), 'data': {}}))


def test_a_short_shakespeare_run_learns(shared_data, tmp_path):
  c = shakespeare_lstm.get_config()
  c.update(data_dir=str(shared_data / 'tinyshakespeare'), tfds_data_dir=str(tmp_path / 'tfds'),
           num_steps=50, log_every=25, eval_every=50, checkpoint_every=50, progress_bar=False,
           batch_size=16)
  c.data.update(seq_len=32, eval_seq_len=128)
  c.model.update(hidden_size=64, num_layers=1)
  c.optimizer.learning_rate = 1e-2
  c.samples.length = 0  # sampling is tested above
  _, test = loop.train_and_evaluate(c, tmp_path / 'run', devices=jax.devices()[:1])
  train = [r for r in reporting.read_metrics(tmp_path / 'run') if r['split'] == 'train']
  assert train[-1]['loss'] < train[0]['loss'] - 0.3
  assert test['bits_per_token'] == pytest.approx(test['loss'] / math.log(2))
  assert test['loss'] < math.log(65) - 1.0  # well below a uniform guess over 65 characters

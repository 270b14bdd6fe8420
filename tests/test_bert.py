"""BERT: pre-training data, the model's heads, and transfer (init_from, freeze)."""

import json

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from experiments.configs import bert_pretrain, sst2_bert
from nets.bert import BERT
from train import loop, optimizers, reporting, transfer
from train.data import tokenizers
from train.data.bert_pretraining import mask_tokens, max_predictions, segment_pairs
from train.errors import UserError

FIRST_PIECE = len(tokenizers.SPECIALS)


def _tokens(rows=4000, length=64, seed=0):
  rng = np.random.default_rng(seed)
  tokens = rng.integers(FIRST_PIECE, 500, (rows, length)).astype(np.int32)
  tokens[:, 0], tokens[:, 20], tokens[:, -1] = tokenizers.CLS, tokenizers.SEP, tokenizers.SEP
  tokens[::2, 50:] = tokenizers.PAD  # every other example is shorter
  return tokens


def test_masking_proportions_hold():
  tokens = _tokens()
  batch = mask_tokens({'inputs': tokens}, np.random.default_rng(1), vocab_size=500)
  chosen = batch['mlm_weights'] > 0
  rows = np.broadcast_to(np.arange(len(tokens))[:, None], chosen.shape)[chosen]
  positions = batch['mlm_positions'][chosen]
  maskable = (tokens >= FIRST_PIECE).sum(1)
  # 15% of each example's pieces that are not special, never a special one.
  np.testing.assert_array_equal(chosen.sum(1), np.rint(0.15 * maskable))
  assert chosen.shape[1] == max_predictions(64, 0.15)
  assert np.all(tokens[rows, positions] >= FIRST_PIECE)
  assert len(set(zip(rows, positions))) == len(rows)  # no position chosen twice
  np.testing.assert_array_equal(batch['mlm_targets'][chosen], tokens[rows, positions])
  # Outside the chosen positions nothing changes.
  changed = batch['inputs'] != tokens
  changed[rows, positions] = False
  assert not changed.any()
  # Of the chosen: 80% [MASK], 10% a random piece, 10% kept (a random piece may equal the
  # original with probability 1/493, counted as kept).
  new = batch['inputs'][rows, positions]
  n = len(new)
  for share, expected in [(np.mean(new == tokenizers.MASK), 0.8),
                          (np.mean(new == tokens[rows, positions]), 0.1 + 0.1 / 493),
                          (np.mean((new != tokenizers.MASK) & (new != tokens[rows, positions])),
                           0.1 * 492 / 493)]:
    assert abs(share - expected) < 4 * np.sqrt(expected * (1 - expected) / n), (share, expected)


@pytest.mark.parametrize('pair_task', ['nsp', 'sop'])
def test_segment_pairs(pair_task):
  stream = np.arange(FIRST_PIECE, FIRST_PIECE + 5000, dtype=np.int32)
  out = segment_pairs([stream], 32, pair_task, np.random.default_rng(0))
  labels = out['pair_label']
  assert 0.4 < labels.mean() < 0.6
  for inputs, segments, label in zip(out['inputs'], out['segments'], labels):
    assert inputs[0] == tokenizers.CLS and inputs[-1] == tokenizers.SEP
    sep = np.flatnonzero(inputs == tokenizers.SEP)
    assert len(sep) == 2
    a, b = inputs[1:sep[0]], inputs[sep[0] + 1:-1]
    assert len(a) and len(b)
    np.testing.assert_array_equal(segments, np.arange(32) > sep[0])  # 0: CLS A SEP; 1: B SEP
    if pair_task == 'sop':
      first, second = (b, a) if label else (a, b)
      np.testing.assert_array_equal(np.diff(np.concatenate([first, second])), 1)
    elif label == 0:  # B follows A in the corpus
      assert b[0] == a[-1] + 1
    else:
      np.testing.assert_array_equal(np.diff(b), 1)  # a real span from elsewhere


def _model(**kwargs):
  return BERT(**{'vocab_size': 60, 'num_layers': 2, 'num_heads': 2, 'model_dim': 16,
                 'max_len': 16, 'dropout_rate': 0.0, **kwargs})


def test_padding_changes_no_real_position():
  tokens = jnp.array([[tokenizers.CLS, 9, 10, 11, tokenizers.SEP]])
  padded = jnp.pad(tokens, ((0, 0), (0, 4)))
  model = _model(head='none')
  params = model.init(jax.random.key(0), padded)
  short, long = model.apply(params, tokens), model.apply(params, padded)
  np.testing.assert_allclose(short, long[:, :5], atol=1e-5)


def test_masked_lm_at_positions_equals_the_full_output_there():
  tokens = jax.random.randint(jax.random.key(1), (3, 12), FIRST_PIECE, 60)
  segments = (jnp.arange(12) > 6).astype(jnp.int32)[None].repeat(3, 0)
  positions = jnp.array([[1, 5, 7], [2, 2, 9], [11, 0, 3]])
  model = _model(head='pretraining')
  params = nn.meta.unbox(model.init(jax.random.key(0), tokens, segments))
  full, pair_full = model.apply(params, tokens, segments)
  picked, pair = model.apply(params, tokens, segments, positions)
  np.testing.assert_allclose(picked, jnp.take_along_axis(full, positions[..., None], 1),
                             atol=1e-5)
  np.testing.assert_allclose(pair, pair_full)
  # The output layer is the input embedding table (tied), plus a bias.
  table = params['params']['encoder']['token_embed']['embedding']
  assert table.shape == (60, 16) and 'mlm_decoder' not in params['params']


def test_frozen_parameters_never_move():
  params = {'encoder': {'w': jnp.ones((3, 3))}, 'classifier': {'kernel': jnp.ones((3, 2))}}
  tx = optimizers.frozen(optax.adamw(0.1, weight_decay=0.1), ('encoder',))
  opt_state = tx.init(params)
  grads = jax.tree.map(jnp.ones_like, params)
  updates, _ = tx.update(grads, opt_state, params)
  moved = optax.apply_updates(params, updates)
  assert np.array_equal(moved['encoder']['w'], params['encoder']['w'])
  assert not np.allclose(moved['classifier']['kernel'], params['classifier']['kernel'])


def test_merge_names_a_shape_mismatch():
  fresh = {'encoder': {'token_embed': {'embedding': jnp.zeros((10, 4))}}}
  saved = {'encoder': {'token_embed': {'embedding': np.zeros((12, 4), np.float32)}}}
  with pytest.raises(UserError, match='encoder/token_embed/embedding is \\[12, 4\\]'):
    transfer.merge(fresh, saved)


def _tiny(config, **overrides):
  config.model.update(num_layers=1, num_heads=2, model_dim=16, max_len=64)
  config.data.vocab_size = 300
  config.update(num_steps=4, num_epochs=-1, log_every=2, eval_every=4, checkpoint_every=4,
                batch_size=8, eval_batch_size=8, progress_bar=False, async_checkpoints=False,
                **overrides)
  return config


def test_fine_tuning_from_a_pretrained_run_with_a_frozen_encoder(tmp_path):
  """bert_pretrain -> sst2_bert with init_from and freeze: the encoder the fine-tuned run
  tests is bit for bit the pre-trained one, and the tokenizer came with it."""
  words = 'the film was good bad fine dull great awful long short plot actors music'.split()
  rng = np.random.default_rng(0)
  corpus = tmp_path / 'corpus.txt'
  corpus.write_text('\n'.join(' '.join(rng.choice(words, 40)) for _ in range(60)))
  pretrain = _tiny(bert_pretrain.get_config(), data_dir=str(tmp_path))
  pretrain.data.update(corpus='corpus.txt', max_len=32)
  pretrain.tfds_data_dir = str(tmp_path / 'tfds')
  pretrained, _ = loop.train_and_evaluate(pretrain, str(tmp_path / 'pretrain'),
                                          devices=jax.devices()[:1])
  assert 'mlm_accuracy' in reporting.read_metrics(tmp_path / 'pretrain')[-1]

  sst = tmp_path / 'sst'
  sst.mkdir()
  for split in ('train', 'dev', 'test'):
    (sst / f'stsa.binary.{split}').write_text(
        '\n'.join(f'{i % 2} {" ".join(rng.choice(words, 6))}' for i in range(24)))
  finetune = _tiny(sst2_bert.get_config(), data_dir=str(sst),
                   init_from=str(tmp_path / 'pretrain'), freeze=('encoder',))
  finetune.tfds_data_dir = str(tmp_path / 'tfds')
  finetuned, _ = loop.train_and_evaluate(finetune, str(tmp_path / 'finetune'),
                                         devices=jax.devices()[:1])
  jax.tree.map(np.testing.assert_array_equal, jax.device_get(finetuned.params['encoder']),
               jax.device_get(pretrained.params['encoder']))
  assert not np.array_equal(finetuned.params['pooler']['kernel'],
                            pretrained.params['pooler']['kernel'])  # trained on
  meta = json.loads((tmp_path / 'finetune' / 'tokenizer' / 'tokenizer.json').read_text())
  assert meta['settings']['corpus'] == 'bert_corpus'


def test_mean_pooling_reads_the_real_tokens_only():
  """pool='mean': the classifier of the mean of h_L over the real tokens, whatever the pad."""
  tokens = jnp.array([[tokenizers.CLS, 9, 10, 11, tokenizers.SEP]])
  model = _model(head='sequence', num_outputs=3, pool='mean')
  params = nn.meta.unbox(model.init(jax.random.key(0), tokens))
  hidden = _model(head='none').apply({'params': params['params']}, tokens)
  kernel, bias = (params['params']['classifier'][k] for k in ('kernel', 'bias'))
  expected = hidden.mean(1) @ kernel + bias[None]
  np.testing.assert_allclose(model.apply(params, tokens), expected, atol=1e-5)
  np.testing.assert_allclose(model.apply(params, jnp.pad(tokens, ((0, 0), (0, 3)))), expected,
                             atol=1e-5)

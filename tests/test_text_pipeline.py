"""Packing, bucketing, masks, sharding, resumption, and the generated sequence tasks."""

import json

import numpy as np
import pytest
from ml_collections import ConfigDict

from train.data import registry, tokenizers
from train.data.pipeline import Shard
from train.data.text_pipeline import (BucketedSource, bucket_bounds, lm_source, lines,
                                      token_stream)

SEQ_LEN = 16


def _stream(n=1000):
  return np.arange(1, n + 1, dtype=np.int32)


def _sentences(n=203):
  """Sentences of 1..40 tokens (ids 7.. are never PAD)."""
  rng = np.random.default_rng(0)
  return [rng.integers(7, 50, k).astype(np.int32) for k in rng.integers(1, 41, n)]


def _ragged_source(max_len=40, **kwargs):
  """`_sentences`, a tag per token, and the sentence's index as its label."""
  tokens = _sentences()
  sequences = {'inputs': tokens, 'tags': [t % 5 for t in tokens],
               'token_mask': [np.ones(len(t), np.float32) for t in tokens]}
  return BucketedSource(sequences, {'label': np.arange(len(tokens), dtype=np.int32)},
                        max_len, **kwargs)


def _take(iterator, n):
  return [next(iterator) for _ in range(n)]


def _assert_same_batches(a, b):
  assert len(a) == len(b)
  for x, y in zip(a, b):
    assert x.keys() == y.keys()
    for k in x:
      np.testing.assert_array_equal(x[k], y[k], err_msg=k)


def test_lm_windows_are_the_stream_shifted_by_one():
  stream = _stream()
  source = lm_source(stream, SEQ_LEN, 'train')
  n = (len(stream) - 1) // SEQ_LEN
  assert len(source) == n
  for i in (0, 7, n - 1):  # independent: window i starts at token i * L
    np.testing.assert_array_equal(source.arrays['inputs'][i], stream[i * SEQ_LEN:][:SEQ_LEN])
    np.testing.assert_array_equal(source.arrays['targets'][i],
                                  stream[i * SEQ_LEN + 1:][:SEQ_LEN])
  batch = next(source.train_iterator(8, seed=0))
  assert batch['mask'].shape == (8, SEQ_LEN) and batch['mask'].dtype == np.float32
  np.testing.assert_array_equal(batch['targets'] - batch['inputs'], 1)  # arange stream


def test_lm_eval_covers_every_window_once_with_padding_masked():
  source = lm_source(_stream(), SEQ_LEN, 'validation')
  batches = list(source.eval_batches(16))
  inputs = np.concatenate([b['inputs'][b['mask'][:, 0] > 0] for b in batches])
  np.testing.assert_array_equal(inputs, source.arrays['inputs'])
  assert all(b['inputs'].shape == (16, SEQ_LEN) for b in batches)
  assert batches[-1]['mask'][len(source) % 16:].sum() == 0


def test_lm_split_shorter_than_a_window_is_named():
  with pytest.raises(ValueError, match='validation split has 10 tokens.*seq_len'):
    lm_source(_stream(10), SEQ_LEN, 'validation')


def test_token_stream_keeps_characters_and_ends_lines_with_eos():
  documents = ['first line\n\nsecond line', 'third']
  char = tokenizers.CharTokenizer.train(documents, {})
  assert char.decode(token_stream(char, documents)) == '\n'.join(documents)
  word = tokenizers.WordTokenizer.train(documents, {'vocab_size': 100, 'min_count': 1})
  stream = token_stream(word, documents)
  assert list(stream == tokenizers.EOS).count(True) == len(lines(documents)) == 3
  assert word.decode(stream) == 'first line second line third'
  assert stream[-1] == tokenizers.EOS


def test_bucket_bounds():
  assert bucket_bounds(128) == [8, 16, 32, 64, 128]
  assert bucket_bounds(40) == [8, 16, 32, 40]
  assert bucket_bounds(8) == [8]


def test_bucketed_batches_pad_to_their_bucket_and_keep_every_token():
  source = _ragged_source()
  it = source.train_iterator(16, seed=3)
  sentences, seen = _sentences(), []
  for _ in range(len(source) // 16):  # one epoch
    batch = next(it)
    width = batch['inputs'].shape[1]
    assert width in source.bounds
    rows = batch['label']
    seen += list(rows)
    for row, label in enumerate(rows):
      original = sentences[label]
      assert len(original) <= width
      np.testing.assert_array_equal(batch['inputs'][row, :len(original)], original)
      assert batch['inputs'][row, len(original):].sum() == 0
      assert batch['mask'][row].sum() == len(original)
  assert len(seen) == len(set(seen)) == len(source) // 16 * 16  # no repeats, < B dropped
  assert it.get_state() == {'epoch': 0, 'position': len(source) // 16}
  widths = {next(it)['inputs'].shape[1] for _ in range(30)}
  assert len(widths) > 1  # buckets are used


def test_without_bucketing_every_batch_has_max_len():
  source = _ragged_source(bucketing=False)
  it = source.train_iterator(16, seed=0)
  assert {next(it)['inputs'].shape for _ in range(20)} == {(16, 40)}


def test_long_examples_are_cut_to_max_len():
  source = _ragged_source(max_len=24)
  batches = list(source.eval_batches(32))
  assert max(b['inputs'].shape[1] for b in batches) == 24
  assert max(b['mask'].sum(1).max() for b in batches) == 24


def test_bucketed_eval_sees_every_example_once_and_masks_padding_rows():
  source = _ragged_source()
  batches = list(source.eval_batches(32))
  # Each batch is padded to its own bucket's bound only.
  assert [b['inputs'].shape[1] for b in batches] == sorted(b['inputs'].shape[1] for b in batches)
  assert len({b['inputs'].shape[1] for b in batches}) > 1
  labels = np.concatenate([b['label'] for b in batches])
  index = np.concatenate([b['index'] for b in batches])
  real = np.concatenate([b['mask'].sum(1) > 0 for b in batches])
  np.testing.assert_array_equal(np.sort(index[real]), np.arange(len(source)))
  np.testing.assert_array_equal(labels[real], index[real])  # label i was given to example i
  total = sum(b['mask'].sum() for b in batches)
  assert total == sum(len(t) for t in _sentences())


def test_sentence_level_mask_without_token_mask():
  source = BucketedSource({'inputs': [np.array([7, 8], np.int32)] * 5},
                          {'label': np.zeros(5, np.int32)}, max_len=8)
  batch = next(source.train_iterator(4, seed=0))
  assert batch['mask'].shape == (4,)
  assert list(next(iter(source.eval_batches(4, Shard(1, 2))))['mask']) == [1, 1]


def test_batch_larger_than_the_split_is_named():
  with pytest.raises(ValueError, match='batch_size=500.*config.batch_size'):
    _ragged_source().train_iterator(500, seed=0)


SOURCES = {
    'lm': lambda: lm_source(_stream(), SEQ_LEN, 'train'),
    'bucketed': _ragged_source,
}


@pytest.mark.parametrize('kind', sorted(SOURCES))
def test_resumed_iterator_yields_the_uninterrupted_batches(kind):
  source = SOURCES[kind]()
  uninterrupted = _take(source.train_iterator(16, seed=5), 40)  # > one epoch
  first = source.train_iterator(16, seed=5)
  _take(first, 17)
  state = json.loads(json.dumps(first.get_state()))  # what the checkpoint stores
  resumed = source.train_iterator(16, seed=5)
  resumed.set_state(state)
  _assert_same_batches(_take(resumed, 23), uninterrupted[17:])


@pytest.mark.parametrize('kind', sorted(SOURCES))
def test_order_depends_on_the_seed(kind):
  source = SOURCES[kind]()
  a, b = (next(source.train_iterator(16, seed=s))['inputs'] for s in (0, 1))
  assert a.shape != b.shape or (a != b).any()


@pytest.mark.parametrize('kind', sorted(SOURCES))
def test_process_shards_make_up_the_global_batch(kind):
  source = SOURCES[kind]()
  whole = _take(source.train_iterator(16, seed=2), 15)
  parts = [_take(source.train_iterator(16, seed=2, shard=Shard(i, 4)), 15) for i in range(4)]
  for step, batch in enumerate(whole):
    for key in batch:
      joined = np.concatenate([p[step][key] for p in parts])
      if kind == 'lm':  # ArrayIterator sorts each shard's rows, so compare as sets of rows
        joined, expected = np.sort(joined, axis=0), np.sort(batch[key], axis=0)
      else:
        expected = batch[key]
      np.testing.assert_array_equal(joined, expected)


# Generated sequence-to-sequence tasks.


def _task(name, **data):
  config = ConfigDict({'dataset': name, 'data_dir': None, 'tfds_data_dir': None,
                       'data': {'num_train': 300, 'num_eval': 50, 'num_test': 50, **data}})
  return registry.build(config)


def _pairs(splits, split='train'):
  tok = splits.info['tokenizer']
  arrays = getattr(splits, split).arrays
  return [(tok.decode(x), tok.decode(y)) for x, y in zip(arrays['inputs'], arrays['targets'])]


@pytest.mark.parametrize('name, answer', [
    ('copy', lambda s: s), ('reverse', lambda s: s[::-1]),
    ('sort', lambda s: ''.join(sorted(s))),
    ('addition', lambda s: str(sum(int(x) for x in s.split('+'))))])
def test_generated_tasks_hold_correct_answers(name, answer):
  splits = _task(name, max_len=7, num_symbols=5, max_digits=3)
  pairs = _pairs(splits)
  assert len(pairs) == 300 and len(splits.test) == 50
  assert all(target == answer(source) for source, target in pairs)
  assert len({s for s, _ in pairs}) > 100  # varied inputs
  batch = next(iter(splits.eval.eval_batches(8)))
  lengths = [len(t) + 1 for _, t in _pairs(splits, 'eval')[:8]]  # + EOS
  np.testing.assert_array_equal(batch['mask'].sum(1), lengths)
  assert (batch['targets'][np.arange(8), np.array(lengths) - 1] == tokenizers.EOS).all()


def test_generated_lengths_and_symbols_follow_the_config():
  pairs = _pairs(_task('copy', min_len=3, max_len=5, num_symbols=4))
  assert {len(s) for s, _ in pairs} == {3, 4, 5}
  assert set(''.join(s for s, _ in pairs)) == set('0123')
  digits = [len(x) for s, _ in _pairs(_task('addition', max_digits=2)) for x in s.split('+')]
  assert set(digits) == {1, 2}


def test_generated_splits_are_distinct_draws():
  splits = _task('reverse')
  assert _pairs(splits, 'eval') != _pairs(splits, 'test')
  assert _pairs(_task('reverse')) == _pairs(splits)  # and reproducible

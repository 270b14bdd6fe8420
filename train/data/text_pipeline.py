"""Batches of token sequences: packing for language models, length buckets for the rest.

What a batch holds (B is this process's share of the global batch):

* `lm_source` (packed language modelling): `inputs`, `targets` int32[B, L], where
  `targets` is `inputs` shifted left by one token, and `mask` float32[B, L]. With
  `contiguous=True` (models that carry state) training batches are row-contiguous
  (`StreamSource`) and also hold `reset` float32[B].
* `TokenMaskedSource` (fixed-shape sequence pairs, e.g. generated tasks): the arrays it
  was given, and `mask` float32[B, L] that is 1 where `targets` is not PAD.
* `BucketedSource` (variable-length examples: tagging, classification, translation):
  every sequence field int32[B, Lb], padded with PAD to Lb, the bound of the batch's
  length bucket; every
  per-example field [B]; `index` int32[B], each example's position in its split; and
  `mask`, float32[B, Lb] if the examples carry a `token_mask` sequence (the positions
  a loss reads), else float32[B]. Evaluation batches are bucketed the same way.

In every case rows added to fill the last evaluation batch have mask 0 throughout.
"""

from __future__ import annotations

from typing import Callable, Iterator, Mapping, Sequence

import numpy as np

from train.data import tokenizers
from train.data.pipeline import (ArraySource, Batch, ResumableIterator, Shard,
                                 epoch_permutation, pad_rows)
from train.errors import UserError


def lines(documents: Sequence[str]) -> list[str]:
  """The non-empty lines of `documents`: the sentences word and sub-word models read."""
  return [line for doc in documents for line in doc.split('\n') if line.strip()]


def tokenizer_info(tokenizer: tokenizers.Tokenizer, **extra) -> dict:
  """The `Splits.info` entries every tokenized dataset shares, and `extra`."""
  return {'vocab_size': tokenizer.vocab_size, 'pad_id': tokenizers.PAD,
          'bos_id': tokenizers.BOS, 'eos_id': tokenizers.EOS, 'tokenizer': tokenizer,
          **extra}


def token_stream(tokenizer: tokenizers.Tokenizer, documents: Sequence[str]) -> np.ndarray:
  """A split as one stream of ids, the input of `lm_source`.

  Characters keep the text exactly (newlines are characters); word and sub-word
  tokenizers drop line breaks, so each non-empty line is followed by EOS instead.
  """
  if isinstance(tokenizer, tokenizers.CharTokenizer):
    return tokenizer.encode('\n'.join(documents))
  ids = tokenizer.encode_batch(lines(documents))
  ends = np.cumsum([len(x) for x in ids], dtype=np.int64)
  flat = np.concatenate([np.zeros(0, np.int32), *ids])  # the empty start: no lines at all
  return np.insert(flat, ends, tokenizers.EOS).astype(np.int32)


def lm_source(stream: np.ndarray, seq_len: int, split: str,
              contiguous: bool = False) -> TokenMaskedSource:
  """Packs a token stream into non-overlapping windows of `seq_len` next-token pairs.

  Window i covers stream[i*L : i*L + L + 1], so no token is lost between windows and
  every position has a real target; the tail shorter than a window is dropped. Training
  batches draw shuffled windows, or with `contiguous` the stream's consecutive windows
  row by row (`StreamSource`); evaluation reads the windows in order either way.
  """
  num_windows = (len(stream) - 1) // seq_len
  if num_windows < 1:
    raise UserError(
        f'The {split} split has {len(stream)} tokens, fewer than config.data.seq_len + 1 '
        f'= {seq_len + 1}; lower config.data.seq_len or use a larger corpus.')
  windows = np.lib.stride_tricks.sliding_window_view(
      stream[:num_windows * seq_len + 1], seq_len + 1)[::seq_len]  # a view: no copy
  arrays = {'inputs': windows[:, :-1], 'targets': windows[:, 1:]}
  return StreamSource(arrays, stream, seq_len) if contiguous else TokenMaskedSource(arrays)


class _MappedIterator:
  """A resumable iterator whose batches pass through `fn`; the state is the inner one's."""

  def __init__(self, inner: ResumableIterator, fn: Callable[[Batch], Batch]):
    self._inner = inner
    self._fn = fn

  def __iter__(self):
    return self

  def __next__(self) -> Batch:
    return self._fn(next(self._inner))

  def get_state(self) -> dict:
    return self._inner.get_state()

  def set_state(self, state: Mapping) -> None:
    self._inner.set_state(state)


def _mask_targets(batch: Batch) -> Batch:
  batch['mask'] = batch['mask'][:, None] * (batch['targets'] != tokenizers.PAD)
  return batch


class TokenMaskedSource(ArraySource):
  """Fixed-shape arrays with a `targets` field; the mask is per target token."""

  def train_iterator(self, batch_size: int, seed: int,
                     shard: Shard = Shard()) -> _MappedIterator:
    return _MappedIterator(super().train_iterator(batch_size, seed, shard), _mask_targets)

  def eval_batches(self, batch_size: int, shard: Shard = Shard()) -> Iterator[Batch]:
    return map(_mask_targets, super().eval_batches(batch_size, shard))


class StreamSource(TokenMaskedSource):
  """A token stream for models that carry their state: row-contiguous training batches.

  The classic batchify (Zaremba et al. 2014): for batches of B rows the stream of n tokens
  is cut into B contiguous streams of S = (n - 1) // B tokens, and batch k holds window k
  of every stream, L = seq_len:

      inputs[k][b] = stream[b S + k L : b S + (k + 1) L],   targets[k][b] = shifted by one

  so row b of batch k + 1 continues row b of batch k, and a state carried from one batch
  to the next is the state of the text that precedes the window. An epoch is the S // L
  windows of every stream, in the same order each epoch (the seed is not used); `reset`
  is 1 on an epoch's first batch, where a carried state must start over. Evaluation reads
  the packed windows, each on its own.
  """

  def __init__(self, arrays: dict[str, np.ndarray], stream: np.ndarray, seq_len: int):
    super().__init__(arrays)
    self.stream = stream
    self.seq_len = seq_len

  def train_iterator(self, batch_size: int, seed: int,
                     shard: Shard = Shard()) -> StreamIterator:
    del seed  # the stream's own order is the point
    return StreamIterator(self.stream, self.seq_len, batch_size, shard)


class StreamIterator:
  """Endless row-contiguous batches of `StreamSource`; state is (epoch, position)."""

  def __init__(self, stream: np.ndarray, seq_len: int, batch_size: int, shard: Shard):
    row_len = (len(stream) - 1) // batch_size  # S
    self.batches_per_epoch = row_len // seq_len
    if self.batches_per_epoch < 1:
      raise UserError(
          f'batch_size={batch_size} rows of config.data.seq_len + 1 = {seq_len + 1} tokens '
          f'do not fit in the {len(stream)} training tokens; lower config.batch_size or '
          'config.data.seq_len.')
    local = shard.local_size(batch_size)
    rows = shard.index * local + np.arange(local)  # this process's rows of the global batch
    self._offsets_BxL1 = (rows * row_len)[:, None] + np.arange(seq_len + 1)
    self._stream = stream
    self._seq_len = seq_len
    self.set_state({'epoch': 0, 'position': 0})

  def __iter__(self):
    return self

  def __next__(self) -> Batch:
    if self._position >= self.batches_per_epoch:
      self.set_state({'epoch': self._epoch + 1, 'position': 0})
    windows = self._stream[self._offsets_BxL1 + self._position * self._seq_len]
    rows = len(windows)
    batch = {'inputs': windows[:, :-1], 'targets': windows[:, 1:],
             'mask': np.ones(rows, np.float32),
             'reset': np.full(rows, self._position == 0, np.float32)}
    self._position += 1
    return _mask_targets(batch)

  def get_state(self) -> dict:
    return {'epoch': self._epoch, 'position': self._position}

  def set_state(self, state: Mapping) -> None:
    self._epoch = int(state['epoch'])
    self._position = int(state['position'])


class Ragged:
  """Variable-length rows stored flat: row i is values[offsets[i]:offsets[i + 1]]."""

  def __init__(self, rows: Sequence[np.ndarray]):
    self.lengths = np.array([len(r) for r in rows], np.int64)
    self.offsets = np.concatenate([[0], np.cumsum(self.lengths)])
    self.values = np.concatenate(rows)

  def padded(self, rows: np.ndarray, length: int) -> np.ndarray:
    """Rows `rows`, cut or zero-padded to `length`: [len(rows), length]."""
    starts = self.offsets[rows]
    cols = np.arange(length)
    valid = cols < np.minimum(self.lengths[rows], length)[:, None]
    out = np.zeros((len(rows), length), self.values.dtype)
    out[valid] = self.values[(starts[:, None] + cols)[valid]]
    return out


def bucket_bounds(max_len: int) -> list[int]:
  """Padded lengths 8, 16, 32, ... below `max_len`, then `max_len`: few shapes to compile."""
  bounds = [8]
  while bounds[-1] < max_len:
    bounds.append(bounds[-1] * 2)
  return bounds[:-1] + [max_len]


def _finish_mask(batch: Batch) -> Batch:
  """Folds a `token_mask` field, if any, into the per-example mask."""
  if 'token_mask' in batch:
    batch['mask'] = batch['mask'][:, None] * batch.pop('token_mask')
  return batch


class BucketedSource:
  """Variable-length examples, batched by length so little of each batch is padding."""

  def __init__(self, sequences: Mapping[str, Sequence[np.ndarray]],
               scalars: Mapping[str, np.ndarray], max_len: int, bucketing: bool = True):
    """Stores the examples flat.

    Args:
      sequences: field -> one 1-D array per example (token ids, tags, `token_mask`).
      scalars: field -> an array with one entry per example (e.g. sentence labels).
      max_len: the longest padded length; longer sequences are cut to it.
      bucketing: False pads every batch to `max_len` (a single shape).
    """
    self._ragged = {k: Ragged(v) for k, v in sequences.items()}
    self._scalars = dict(scalars)
    self.max_len = max_len
    lengths = np.max([r.lengths for r in self._ragged.values()], axis=0)
    self.bounds = bucket_bounds(max_len) if bucketing else [max_len]
    self.bucket_of = np.searchsorted(self.bounds, np.minimum(lengths, max_len))

  def __len__(self) -> int:
    return len(self.bucket_of)

  def batch(self, rows: np.ndarray, length: int, num_rows: int | None = None) -> Batch:
    """Examples `rows` padded to `length`, then with empty rows up to `num_rows`.

    `index` holds each row's position in the split (so per-example outputs of a
    bucketed evaluation can be put back in order) and `mask` is 0 on the empty rows.
    """
    num_rows = len(rows) if num_rows is None else num_rows
    batch = {k: pad_rows(r.padded(rows, length), num_rows) for k, r in self._ragged.items()}
    batch.update({k: pad_rows(v[rows], num_rows) for k, v in self._scalars.items()})
    batch['index'] = pad_rows(rows.astype(np.int32), num_rows)
    batch['mask'] = pad_rows(np.ones(len(rows), np.float32), num_rows)
    return _finish_mask(batch)

  def train_iterator(self, batch_size: int, seed: int,
                     shard: Shard = Shard()) -> BucketIterator:
    return BucketIterator(self, batch_size, seed, shard)

  def eval_batches(self, batch_size: int, shard: Shard = Shard()) -> Iterator[Batch]:
    """Every example once, bucket by bucket (in split order within a bucket).

    Each batch is padded only to its bucket's bound, so evaluation compiles once per
    bucket and pads no more than training does.
    """
    local = shard.local_size(batch_size)
    for bucket in range(len(self.bounds)):
      members = np.flatnonzero(self.bucket_of == bucket)
      for start in range(0, len(members), batch_size):
        rows = members[start + shard.index * local:start + (shard.index + 1) * local]
        yield self.batch(rows, self.bounds[bucket], local)


class BucketIterator:
  """Endless shuffled batches of one length bucket each; state is (epoch, position).

  Epoch e's plan is a pure function of (seed, e): the examples in the order of
  `epoch_permutation`, grouped by bucket into full global batches (the examples left
  over in a bucket move up to the next, longer one), then the batches shuffled.
  Every epoch thus has len(source) // batch_size batches and drops fewer than
  batch_size examples, a different few each epoch.
  """

  def __init__(self, source: BucketedSource, batch_size: int, seed: int, shard: Shard):
    if batch_size > len(source):
      raise UserError(f'batch_size={batch_size} is larger than the {len(source)} training '
                       'examples; lower config.batch_size.')
    self._source = source
    self._batch_size = batch_size
    self._local = shard.local_size(batch_size)
    self._shard = shard
    self._seed = seed
    self.set_state({'epoch': 0, 'position': 0})

  def _plan(self, epoch: int) -> list[tuple[np.ndarray, int]]:
    order = epoch_permutation(len(self._source), self._seed, epoch)
    buckets = self._source.bucket_of[order]
    plan, carry = [], order[:0]
    for b, bound in enumerate(self._source.bounds):
      members = np.concatenate([carry, order[buckets == b]])
      full = len(members) // self._batch_size * self._batch_size
      plan += [(members[i:i + self._batch_size], bound)
               for i in range(0, full, self._batch_size)]
      carry = members[full:]
    shuffle = np.random.default_rng([self._seed, epoch, 1]).permutation(len(plan))
    return [plan[i] for i in shuffle]

  def __iter__(self):
    return self

  def __next__(self) -> Batch:
    if self._position >= len(self._batches):
      self.set_state({'epoch': self._epoch + 1, 'position': 0})
    rows, bound = self._batches[self._position]
    start = self._shard.index * self._local
    self._position += 1
    return self._source.batch(rows[start:start + self._local], bound)

  def get_state(self) -> dict:
    return {'epoch': self._epoch, 'position': self._position}

  def set_state(self, state: Mapping) -> None:
    self._epoch = int(state['epoch'])
    self._position = int(state['position'])
    self._batches = self._plan(self._epoch)

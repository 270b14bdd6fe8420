"""Deterministic, resumable batching of in-memory examples.

Every dataset in the project ends up as a `Source`: something that can hand the engine
a resumable training iterator and a finite, fixed-shape evaluation pass. The contract:

* `source.train_iterator(batch_size, seed, shard)` returns an iterator of batches (dicts
  of NumPy arrays with a leading batch axis of `batch_size // shard.count`) that also has
  `get_state() -> dict` (JSON-serialisable) and `set_state(dict)`. Restoring a saved
  state yields exactly the batches the original iterator would have produced next, so a
  resumed run sees the identical batch sequence.
* `source.eval_batches(batch_size, shard)` yields every example once, in order, in
  batches of the same fixed shape; the last batch is padded and its `mask` is 0 on the
  padding, so jitted steps compile once and padding never reaches a metric.
* Every batch carries a float32 `mask` (1 for real examples) so train and eval batches
  have one pytree structure.

`shard` is this process's slice of the global batch in a multi-host run: process `i` of
`n` takes rows `[i * B/n, (i+1) * B/n)` of every global batch, so the union over
processes is exactly the single-process batch.
"""

from __future__ import annotations

import dataclasses
from typing import Callable, Iterator, Mapping, Protocol

import numpy as np

from train.errors import UserError

Batch = dict[str, np.ndarray]


@dataclasses.dataclass(frozen=True)
class Shard:
  """Which slice of each global batch this process loads."""
  index: int = 0
  count: int = 1

  def local_size(self, global_batch_size: int) -> int:
    if global_batch_size % self.count:
      raise UserError(
          f'batch_size={global_batch_size} is not divisible by the {self.count} '
          'processes; choose a multiple of the process count.')
    return global_batch_size // self.count


class ResumableIterator(Protocol):

  def __iter__(self) -> Iterator[Batch]: ...
  def __next__(self) -> Batch: ...
  def get_state(self) -> dict: ...
  def set_state(self, state: Mapping) -> None: ...


class Source(Protocol):

  def __len__(self) -> int: ...

  def train_iterator(self, batch_size: int, seed: int,
                     shard: Shard = Shard()) -> ResumableIterator: ...

  def eval_batches(self, batch_size: int,
                   shard: Shard = Shard()) -> Iterator[Batch]: ...


# An augmentation maps (batch, numpy Generator) -> batch; it runs on the host.
Augment = Callable[[Batch, np.random.Generator], Batch]


def epoch_permutation(num_examples: int, seed: int, epoch: int) -> np.ndarray:
  """The order of epoch `epoch`: a pure function of (seed, epoch), hence resumable."""
  return np.random.default_rng([seed, epoch]).permutation(num_examples)


class ArrayIterator:
  """Endless shuffled batches over arrays; state is (epoch, position in epoch)."""

  def __init__(self, arrays: Mapping[str, np.ndarray], batch_size: int, seed: int,
               shard: Shard, augment: Augment | None = None):
    self._arrays = arrays
    self._num_examples = len(next(iter(arrays.values())))
    if batch_size > self._num_examples:
      raise UserError(
          f'batch_size={batch_size} is larger than the {self._num_examples} training '
          'examples; lower config.batch_size.')
    self._batch_size = batch_size
    self._local = shard.local_size(batch_size)
    self._shard = shard
    self._seed = seed
    self._augment = augment
    self._epoch = 0
    self._position = 0  # index of the next global batch within the epoch
    self._order = epoch_permutation(self._num_examples, seed, 0)

  @property
  def batches_per_epoch(self) -> int:
    return self._num_examples // self._batch_size  # the ragged tail is dropped

  def __iter__(self):
    return self

  def __next__(self) -> Batch:
    if self._position >= self.batches_per_epoch:
      self._epoch += 1
      self._position = 0
      self._order = epoch_permutation(self._num_examples, self._seed, self._epoch)
    start = self._position * self._batch_size + self._shard.index * self._local
    rows = np.sort(self._order[start:start + self._local])  # sorted: faster gather
    batch = {k: v[rows] for k, v in self._arrays.items()}
    batch['mask'] = np.ones(self._local, np.float32)
    if self._augment is not None:
      rng = np.random.default_rng([self._seed, self._epoch, self._position,
                                   self._shard.index])
      batch = self._augment(batch, rng)
    self._position += 1
    return batch

  def get_state(self) -> dict:
    return {'epoch': self._epoch, 'position': self._position}

  def set_state(self, state: Mapping) -> None:
    self._epoch = int(state['epoch'])
    self._position = int(state['position'])
    self._order = epoch_permutation(self._num_examples, self._seed, self._epoch)


def padded_batches(arrays: Mapping[str, np.ndarray], batch_size: int,
                   shard: Shard = Shard()) -> Iterator[Batch]:
  """All examples once, in order, in fixed-shape batches with a padding mask."""
  num_examples = len(next(iter(arrays.values())))
  local = shard.local_size(batch_size)
  for start in range(0, num_examples, batch_size):
    lo = min(start + shard.index * local, num_examples)
    hi = min(lo + local, num_examples)
    batch = {k: pad_rows(v[lo:hi], local) for k, v in arrays.items()}
    mask = np.zeros(local, np.float32)
    mask[:hi - lo] = 1.0
    batch['mask'] = mask
    yield batch


def pad_rows(x: np.ndarray, rows: int) -> np.ndarray:
  """Pads the leading axis of `x` with zeros up to `rows`."""
  if len(x) == rows:
    return x
  pad = np.zeros((rows - len(x),) + x.shape[1:], x.dtype)
  return np.concatenate([x, pad])


@dataclasses.dataclass
class ArraySource:
  """A split held in memory as equal-length arrays (images, features, labels)."""
  arrays: dict[str, np.ndarray]
  augment: Augment | None = None

  def __post_init__(self):
    lengths = {k: len(v) for k, v in self.arrays.items()}
    if len(set(lengths.values())) != 1:
      raise UserError(f'Arrays of one split differ in length: {lengths}.')
    if not next(iter(lengths.values())):
      raise UserError('The split is empty: check the data files or the split name.')

  def __len__(self) -> int:
    return len(next(iter(self.arrays.values())))

  def train_iterator(self, batch_size: int, seed: int,
                     shard: Shard = Shard()) -> ArrayIterator:
    return ArrayIterator(self.arrays, batch_size, seed, shard, self.augment)

  def eval_batches(self, batch_size: int, shard: Shard = Shard()) -> Iterator[Batch]:
    return padded_batches(self.arrays, batch_size, shard)


@dataclasses.dataclass
class Splits:
  """What a dataset builder returns: the three splits and facts the model needs."""
  train: Source
  eval: Source
  test: Source
  info: dict = dataclasses.field(default_factory=dict)

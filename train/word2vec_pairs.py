"""word2vec's training pairs, generated on the host with NumPy, a whole epoch at a time.

Each epoch, as in word2vec.c:

  sub-sampling   word w (count f_w of the T corpus words, threshold s = `sample`) is kept
                 with probability  p_w = min(1, (sqrt(f_w / (s T)) + 1) s T / f_w),
                 fresh for every occurrence and every epoch; discarded words leave the
                 stream before windows are formed, so windows reach further.
  dynamic window every kept centre draws b ~ Uniform{1..W} and pairs with the words at
                 distance <= b in its own document: a word at distance d is a context
                 with probability (W - d + 1) / W, so near words count more.

The kept stream is cut into *chunks* of G consecutive centres, the examples of a batch.
A chunk carries its centres with W words of context on either side, so a word's row is
gathered once per chunk rather than once per pair:

  inputs       int32 [G + 2W]   stream ids; the centres are inputs[W : W + G]
  pairs        int32 [G]        bit o set: the context at offset (-W..-1, 1..W)[o] of
                                centre j is used; bit 2W set: centre j is real (the last
                                chunk of an epoch is padded). Bits, not a [G, 2W] float
                                mask: each array is a separate transfer per step.
  mask         f32 []           1 for a real chunk (the engine's convention)

and, by output layer:

  negative      negatives int32 [P]: P noise words drawn from f_w^0.75 and shared by the
                chunk's predictions (Ji et al. 2016 share K among one centre's contexts;
                here P among G centres'), each weighing K / P in the loss, so that a
                prediction's noise term has the expectation of word2vec's K draws. Shared
                noise words turn the scores into one matrix product per chunk.
  hierarchical  path int32 [G, L], code f32 [G, L], path_mask f32 [G, L]: each centre's
                Huffman path (train/word2vec_huffman.py).
  softmax       nothing more: the targets are the centres.

Batches are a pure function of (seed, epoch, chunk), so a resumed run sees the same ones.
An epoch's chunks are computed at once (a batch is then a slice of them), the next epoch's
on a thread while the current one trains.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
from typing import Mapping

import numpy as np

from train.data.pipeline import Shard
from train.word2vec_huffman import Paths


def keep_probabilities(counts: np.ndarray, sample: float) -> np.ndarray:
  """word2vec.c's probability of keeping each occurrence of a word (1 if sample <= 0)."""
  counts = np.asarray(counts, np.float64)
  if sample <= 0:
    return np.ones_like(counts)
  threshold = sample * counts.sum()
  return np.minimum(1.0, (np.sqrt(counts / threshold) + 1.0) * threshold / counts)


def noise_cdf(counts: np.ndarray, power: float = 0.75) -> np.ndarray:
  """The cumulative noise distribution P_n(w) ~ count_w^power (float64, last entry 1)."""
  weights = np.asarray(counts, np.float64) ** power
  cdf = np.cumsum(weights / weights.sum())
  cdf[-1] = 1.0
  return cdf


def offsets(window: int) -> np.ndarray:
  """The context offsets -W..-1, 1..W, in the order of pair_mask's last axis."""
  return np.concatenate([np.arange(-window, 0), np.arange(1, window + 1)])


@dataclasses.dataclass(frozen=True)
class PairSettings:
  window: int
  sample: float
  chunk_len: int
  output: str             # 'negative', 'hierarchical' or 'softmax'
  negative_pool: int = 0  # P, for output='negative'


class Epoch:
  """One epoch: its kept stream, its random draws, and the arrays of all its chunks."""

  def __init__(self, tokens: np.ndarray, documents: np.ndarray, keep: np.ndarray,
               noise: np.ndarray, s: PairSettings, seed: int, epoch: int):
    rng = np.random.default_rng([seed, epoch])
    kept = rng.random(len(tokens)) < keep[tokens]
    self.tokens = tokens[kept]
    self.documents = documents[kept]
    self.windows = rng.integers(1, s.window + 1, len(self.tokens)).astype(np.int32)
    n, w, g = len(self.tokens), s.window, s.chunk_len
    self.num_chunks = -(-n // g)
    # Centre t pairs with offsets -lo..-1 and 1..hi: its window, cut at its document's
    # ends. As bits (see `pairs`): -k is bit W - k, +k is bit W + k - 1, realness 2W.
    position = np.arange(n, dtype=np.int32)
    starts = np.flatnonzero(np.diff(self.documents, prepend=-1) != 0).astype(np.int32)
    ends = np.append(starts[1:], n).astype(np.int32)
    document = np.cumsum(np.diff(self.documents, prepend=-1) != 0) - 1
    lo = np.minimum(self.windows, position - starts[document])
    hi = np.minimum(self.windows, ends[document] - 1 - position)
    pairs = (((1 << lo) - 1) << (w - lo)) | (((1 << hi) - 1) << w) | (1 << 2 * w)
    pairs = np.concatenate([pairs, np.zeros(self.num_chunks * g - n, np.int32)])
    stream_NxS = (np.arange(self.num_chunks)[:, None] * g - w
                  + np.arange(g + 2 * w)[None, :])
    self.chunks = {'inputs': self.tokens[np.clip(stream_NxS, 0, n - 1)].astype(np.int32),
                   'pairs': pairs.reshape(self.num_chunks, g).astype(np.int32)}
    if s.output == 'negative':
      draws = rng.random((self.num_chunks, s.negative_pool))
      self.chunks['negatives'] = np.searchsorted(noise, draws, side='right').astype(np.int32)


class ChunkIterator:
  """Endless batches of chunks over the epochs; state is (epoch, next chunk)."""

  def __init__(self, tokens: np.ndarray, documents: np.ndarray, counts: np.ndarray,
               settings: PairSettings, paths: Paths | None, batch_size: int, seed: int,
               shard: Shard = Shard()):
    self._tokens, self._documents = tokens, documents
    self._settings, self._paths = settings, paths
    self._keep = keep_probabilities(counts, settings.sample)
    self._noise = noise_cdf(counts)
    self._batch_size, self._seed, self._shard = batch_size, seed, shard
    self._local = shard.local_size(batch_size)
    self._epochs: dict[int, concurrent.futures.Future] = {}
    self._epoch, self._chunk = 0, 0
    # The next epoch is prepared on a thread while this one trains (NumPy releases the
    # GIL in its array loops), so the host never stalls at an epoch's end.
    self._pool = concurrent.futures.ThreadPoolExecutor(1)

  def epoch(self, epoch: int) -> Epoch:
    for e in (epoch, epoch + 1):
      if e not in self._epochs:
        self._epochs[e] = self._pool.submit(
            Epoch, self._tokens, self._documents, self._keep, self._noise, self._settings,
            self._seed, e)
    self._epochs = {e: f for e, f in self._epochs.items() if e >= epoch - 1}
    return self._epochs[epoch].result()

  def _segments(self, epoch: int, chunk: int, count: int):
    """(epoch, start, stop) ranges of the `count` chunks from (epoch, chunk), and the
    position after them."""
    segments = []
    while count:
      take = min(count, self.epoch(epoch).num_chunks - chunk)
      segments.append((epoch, chunk, chunk + take))
      count, chunk = count - take, chunk + take
      if chunk == self.epoch(epoch).num_chunks:
        epoch, chunk = epoch + 1, 0
    return segments, (epoch, chunk)

  def __iter__(self):
    return self

  def __next__(self) -> dict[str, np.ndarray]:
    # The global batch is the next `batch_size` chunks, across an epoch's end if need
    # be; this process takes its rows of it.
    _, mine = self._segments(self._epoch, self._chunk, self._shard.index * self._local)
    segments, _ = self._segments(*mine, self._local)
    _, (self._epoch, self._chunk) = self._segments(self._epoch, self._chunk,
                                                   self._batch_size)
    batch = {k: np.concatenate([self.epoch(e).chunks[k][start:stop]
                                for e, start, stop in segments])
             for k in self.epoch(segments[0][0]).chunks}
    batch['mask'] = np.ones(self._local, np.float32)
    if self._settings.output == 'hierarchical':
      window = self._settings.window
      words_BxG = batch['inputs'][:, window:window + self._settings.chunk_len]
      real_BxG = (batch['pairs'] >> 2 * window) & 1
      batch['path'] = self._paths.nodes[words_BxG]
      batch['code'] = self._paths.codes[words_BxG]
      batch['path_mask'] = self._paths.mask[words_BxG] * real_BxG[:, :, None].astype(np.float32)
    return batch

  def get_state(self) -> dict:
    return {'epoch': self._epoch, 'chunk': self._chunk}

  def set_state(self, state: Mapping) -> None:
    self._epoch, self._chunk = int(state['epoch']), int(state['chunk'])


def pack_pairs(pair_BxGxC: np.ndarray, real_BxG: np.ndarray) -> np.ndarray:
  """The `pairs` bits of a chunk: bit o for context o, bit C = 2W for a real centre."""
  flags = np.concatenate([pair_BxGxC, real_BxG[..., None]], -1).astype(np.int32)
  return np.sum(flags << np.arange(flags.shape[-1], dtype=np.int32), -1, dtype=np.int32)


def expected_chunks(counts: np.ndarray, settings: PairSettings) -> int:
  """Chunks in an epoch of expected length (the epoch's own length varies a little)."""
  kept = float(np.sum(np.asarray(counts) * keep_probabilities(counts, settings.sample)))
  return max(1, int(np.ceil(kept / settings.chunk_len)))

"""`word2vec_corpus`: a plain-text corpus as word2vec reads it, with its vocabulary.

config.data_dir is the corpus folder (../shared/data/wiki), and config.data holds

  corpus         the text file in it, one document per line, words separated by spaces
                 (enwiki-text.txt: lower-cased, punctuation stripped), or several files
                 separated by commas, read one after the other (absolute paths or in
                 data_dir; experiments/conll_sentences.py writes CoNLL's in this form)
  min_count      words seen fewer times are dropped from the vocabulary and the stream (5)
  sample         the sub-sampling threshold s (1e-3; 0 keeps every word)
  window         the largest window W (5)
  negatives      K, noise words per prediction for negative sampling (5)
  negative_pool  P, noise words drawn per chunk and shared by its predictions (8)
  chunk_len      G, centres per chunk (8; the batch is config.batch_size chunks)
  wordsim353, simlex999, analogy   benchmark files in data_dir (or absolute paths;
                 '' skips one); the word2vec task reads them

and config.model.output ('negative', 'hierarchical', 'softmax') says what the batches
carry besides the chunks (train/word2vec_pairs.py). The vocabulary is sorted by count,
most frequent first (ties alphabetically), as word2vec.c sorts it, so ids are stable
for a given corpus and min_count and a resumed run rebuilds the same one.

Splits: train yields batches of chunks, endlessly over epochs; eval and test are the
vocabulary itself (`word` ids in order), which the task turns into its word vectors.
`info`: vocab_size, words, counts, corpus_words (before min_count), negatives (K) and
chunks_per_epoch (the training split's length).
"""

from __future__ import annotations

import collections

import numpy as np

from train import word2vec_huffman, word2vec_pairs
from train.data import registry
from train.data.pipeline import ArraySource, Shard, Splits
from train.data.text_builders import corpus_paths, numbered_lines
from train.errors import UserError

DEFAULTS = {'min_count': 5, 'sample': 1e-3, 'window': 5, 'negatives': 5,
            'negative_pool': 8, 'chunk_len': 8}


def read_corpus(paths: list[str], min_count: int):
  """(words by count, counts, token ids, document id of each token, corpus word count)."""
  documents = [line.split() for path in paths for _, line in numbered_lines(path)]
  path = ' + '.join(paths)
  counter = collections.Counter(w for doc in documents for w in doc)
  vocab = sorted((w for w, c in counter.items() if c >= min_count),
                 key=lambda w: (-counter[w], w))
  if len(vocab) < 2:
    raise UserError(f'{path} has {len(vocab)} word(s) seen at least config.data.min_count='
                    f'{min_count} times; lower min_count or use a larger corpus.')
  index = {w: i for i, w in enumerate(vocab)}
  ids = [np.array([index[w] for w in doc if w in index], np.int32) for doc in documents]
  tokens = np.concatenate(ids)
  doc_ids = np.repeat(np.arange(len(ids), dtype=np.int32), [len(x) for x in ids])
  counts = np.array([counter[w] for w in vocab], np.int64)
  return vocab, counts, tokens, doc_ids, sum(counter.values())


class CorpusSource:
  """The training split: batches of chunks over the epochs (no evaluation pass)."""

  def __init__(self, tokens, documents, counts, settings: word2vec_pairs.PairSettings,
               paths: word2vec_huffman.Paths | None):
    self.tokens, self.documents, self.counts = tokens, documents, counts
    self.settings, self.paths = settings, paths

  def __len__(self) -> int:
    return word2vec_pairs.expected_chunks(self.counts, self.settings)

  def train_iterator(self, batch_size: int, seed: int, shard: Shard = Shard()):
    return word2vec_pairs.ChunkIterator(self.tokens, self.documents, self.counts,
                                        self.settings, self.paths, batch_size, seed, shard)

  def eval_batches(self, batch_size: int, shard: Shard = Shard()):
    raise UserError('The word2vec corpus is for training; evaluate the eval or test split '
                    '(the vocabulary).')


def _setting(config, field: str, kind, low) -> float:
  value = config.data.get(field, DEFAULTS[field])
  if not isinstance(value, kind) or isinstance(value, bool) or value < low:
    what = 'an integer' if kind is int else 'a number'
    raise UserError(f'config.data.{field}={value!r} must be {what} >= {low}.')
  return value


@registry.register('word2vec_corpus')
def word2vec_corpus(config) -> Splits:
  """A text file of config.data_dir (config.data.corpus), as word2vec reads it."""
  paths = corpus_paths(config, 'enwiki-text.txt')
  output = config.model.get('output', 'negative')
  settings = word2vec_pairs.PairSettings(
      window=_setting(config, 'window', int, 1),
      sample=_setting(config, 'sample', (int, float), 0),
      chunk_len=_setting(config, 'chunk_len', int, 1), output=output,
      negative_pool=_setting(config, 'negative_pool', int, 1))
  negatives = _setting(config, 'negatives', int, 1)
  words, counts, tokens, documents, corpus_words = read_corpus(
      paths, _setting(config, 'min_count', int, 1))
  paths = word2vec_huffman.paths(counts) if output == 'hierarchical' else None
  train = CorpusSource(tokens, documents, counts, settings, paths)
  vocabulary = ArraySource({'word': np.arange(len(words), dtype=np.int32)})
  info = {'vocab_size': len(words), 'words': words, 'counts': counts,
          'corpus_words': corpus_words, 'chunks_per_epoch': len(train),
          'negatives': negatives}
  return Splits(train, vocabulary, vocabulary, info=info)

"""BERT's pre-training data from plain text: segment pairs and masked tokens.

`config.data.corpus` names one or more plain-text files (comma-separated, .gz allowed; each
relative to `config.data_dir` unless absolute); every non-empty line is text. Each file is tokenised into one stream of sub-words (the
tokenizer is trained on all the files, or loaded: `config.data.tokenizer_dir`), cut into
blocks of `max_len - 3` pieces, and each block into two segments at a uniformly drawn
point, so every example is [CLS] A [SEP] B [SEP] and fills the length (the corpus has no
sentence marks to split at: the Wikipedia text has its punctuation stripped). Its pair
label, by `config.data.pair_task`:

  'nsp'  next-sentence prediction (Devlin et al.): with probability 1/2 B is replaced by as
         many pieces from a random place of the corpus, label 1; else B follows A, label 0.
  'sop'  sentence-order prediction (ALBERT): with probability 1/2 A and B swap, label 1.
  'none' label 0 always (masked language modelling only; the task ignores it).

Blocks are dealt to train / eval / test at random (96% / 2% / 2%, at least one each) with
`config.seed`. Masking (`mask_tokens`) chooses each piece that is not special with
fraction `config.data.mask_rate` (0.15) of each example's pieces that are not special,
and replaces a chosen piece by [MASK] with probability 0.8, by a random piece 0.1, or keeps
it 0.1; the model must predict every chosen piece. Training batches are masked afresh each time they are drawn (dynamic masking,
RoBERTa: a pure function of the seed and the batch's position, so resumable); eval and test
are masked once, with fixed seeds, so every evaluation scores the same predictions.

A batch holds `inputs` (masked), `segments` (0 on [CLS] A [SEP], 1 on B [SEP]),
`mlm_positions`, `mlm_targets` and `mlm_weights` (the chosen pieces: `mask_tokens`),
`pair_label`, and `mask` (1 on real examples).
"""

from __future__ import annotations

import numpy as np

from train.data import registry, tokenizers
from train.data.pipeline import ArraySource, Splits
from train.data.text_builders import corpus_paths, numbered_lines
from train.data.text_pipeline import tokenizer_info
from train.errors import UserError

PAIR_TASKS = ('nsp', 'sop', 'none')
_FIRST_PIECE = len(tokenizers.SPECIALS)  # ids below this are special, never masked


def max_predictions(max_len: int, rate: float) -> int:
  """P, the most pieces one example can have chosen: round(rate * (max_len - 3))."""
  return max(1, round(rate * (max_len - 3)))


def mask_tokens(batch: dict, rng: np.random.Generator, vocab_size: int, rate: float = 0.15,
                ) -> dict:
  """The batch with `inputs` masked as BERT does, and the chosen pieces' positions.

  Each example has round(rate * n) of its n pieces that are not special chosen uniformly
  (at least one), listed first in `mlm_positions` [B, P] with `mlm_weights` 1 (0 on the
  unused slots), and their original ids in `mlm_targets` [B, P]; the model predicts only
  there, so the vocabulary-wide output layer costs P positions, not the whole length.
  """
  tokens = batch['inputs']
  rows, length = tokens.shape
  maskable = tokens >= _FIRST_PIECE
  slots = max_predictions(length, rate)
  keys = np.where(maskable, rng.random(tokens.shape), 2.0)  # the unmaskable sort last
  positions = np.argsort(keys, axis=1, kind='stable')[:, :slots].astype(np.int32)
  count = np.minimum(np.maximum(np.rint(rate * maskable.sum(1)), 1), maskable.sum(1))
  weights = (np.arange(slots)[None, :] < count[:, None]).astype(np.float32)
  targets = np.take_along_axis(tokens, positions, axis=1)
  kind = rng.random(positions.shape)  # < 0.8: [MASK]; < 0.9: a random piece; else kept
  random_pieces = rng.integers(_FIRST_PIECE, vocab_size, positions.shape, dtype=tokens.dtype)
  replacement = np.where(kind < 0.8, tokenizers.MASK, np.where(kind < 0.9, random_pieces,
                                                               targets))
  inputs = tokens.copy()
  row_index = np.broadcast_to(np.arange(rows)[:, None], positions.shape)
  chosen = weights > 0
  inputs[row_index[chosen], positions[chosen]] = replacement[chosen]
  return {**batch, 'inputs': inputs, 'mlm_positions': positions,
          'mlm_targets': targets * chosen, 'mlm_weights': weights}


def segment_pairs(streams: list[np.ndarray], max_len: int, pair_task: str,
                  rng: np.random.Generator) -> dict[str, np.ndarray]:
  """Examples [CLS] A [SEP] B [SEP] (module docstring): inputs, segments, pair_label."""
  block = max_len - 3
  blocks = [s[i:i + block] for s in streams for i in range(0, len(s) - block + 1, block)]
  if not blocks:
    raise UserError(f'The corpus has fewer than config.data.max_len - 3 = {block} pieces; '
                    'lower max_len or give more text.')
  everything = np.concatenate(streams)
  n = len(blocks)
  cuts = rng.integers(1, block, n)  # A = block[:cut], B = block[cut:], both non-empty
  changed = rng.random(n) < 0.5 if pair_task != 'none' else np.zeros(n, bool)
  inputs = np.zeros((n, max_len), np.int32)
  segments = np.zeros((n, max_len), np.int32)
  for row, (pieces, cut, change) in enumerate(zip(blocks, cuts, changed)):
    a, b = pieces[:cut], pieces[cut:]
    if change and pair_task == 'sop':
      a, b = b, a
    elif change:  # nsp: as many pieces from a random place of the corpus
      start = rng.integers(0, len(everything) - len(b) + 1)
      b = everything[start:start + len(b)]
    inputs[row] = np.concatenate([[tokenizers.CLS], a, [tokenizers.SEP], b, [tokenizers.SEP]])
    segments[row, len(a) + 2:] = 1
  return {'inputs': inputs, 'segments': segments, 'pair_label': changed.astype(np.int32)}


@registry.register('bert_corpus')
def bert_corpus(config) -> Splits:
  """Pre-training examples from the plain-text files of `config.data_dir` (module doc)."""
  data = config.data
  pair_task = data.get('pair_task', 'nsp')
  if pair_task not in PAIR_TASKS:
    raise UserError(f'config.data.pair_task={pair_task!r} is not one of {PAIR_TASKS}.')
  max_len = data.get('max_len', 128)
  texts = [[line for _, line in numbered_lines(path) if line.strip()]
           for path in corpus_paths(config, 'enwiki-text.txt')]
  tokenizer = tokenizers.load_or_train(
      data.get('tokenizer', 'sentencepiece'), lambda: (t for lines in texts for t in lines),
      data.get('tokenizer_dir'), corpus=config.dataset, vocab_size=data.get('vocab_size', 8000),
      min_count=data.get('min_count', 1), model_type=data.get('model_type', 'bpe'))
  streams = [np.concatenate(tokenizer.encode_batch(lines)) for lines in texts]
  rng = np.random.default_rng(config.seed)
  examples = segment_pairs(streams, max_len, pair_task, rng)
  n = len(examples['inputs'])
  held_out = max(1, round(0.02 * n))
  if n < 2 * held_out + 1:
    raise UserError(f'The corpus gives {n} examples of config.data.max_len={max_len} pieces, '
                    'too few for train, eval and test; give more text or lower max_len.')
  order = rng.permutation(n)
  parts = np.split(order, [held_out, 2 * held_out])  # eval, test, train
  vocab_size, rate = tokenizer.vocab_size, data.get('mask_rate', 0.15)
  arrays = [{k: v[np.sort(rows)] for k, v in examples.items()} for rows in parts]
  eval_split, test_split = (
      mask_tokens(a, np.random.default_rng([config.seed, i]), vocab_size, rate)
      for i, a in enumerate(arrays[:2]))
  train = ArraySource(arrays[2], augment=lambda batch, g: mask_tokens(batch, g, vocab_size,
                                                                       rate))
  return Splits(train, ArraySource(eval_split), ArraySource(test_split),
                info=tokenizer_info(tokenizer, max_len=max_len, pair_task=pair_task))

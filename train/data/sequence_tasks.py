"""Generated sequence-to-sequence tasks: copy, reverse, sort and multi-digit addition.

They need no download and have exact answers, so a sequence-to-sequence model can be
checked in seconds. Examples are strings of symbols, tokenized by a CharTokenizer, so
`info['tokenizer'].decode` prints inputs and predictions:

  copy      'a3c9'      -> 'a3c9'
  reverse   'a3c9'      -> '9c3a'
  sort      'a3c9'      -> '39ac'
  addition  '123+4567'  -> '4690'

A batch holds `inputs` int32[B, Ls] and `targets` int32[B, Lt] (each sequence followed
by EOS, then PAD) and `mask` float32[B, Lt], 1 on the target tokens, EOS included.

config.data fields: num_train (10000), num_eval (1000), num_test (1000); for copy,
reverse and sort min_len (1), max_len (10) and num_symbols (10, at most 36); for
addition max_digits (5) per operand; seed (0): split i is drawn with seed (seed, i).
"""

from __future__ import annotations

import functools
import string

import numpy as np

from train.data import registry, tokenizers
from train.data.pipeline import Splits
from train.data.text_pipeline import Ragged, TokenMaskedSource, tokenizer_info

_ALPHABET = string.digits + string.ascii_lowercase
_TRANSFORMS = {'copy': lambda s: s, 'reverse': lambda s: s[::-1],
               'sort': lambda s: ''.join(sorted(s))}
_SPLIT_SIZES = (('num_train', 10_000), ('num_eval', 1_000), ('num_test', 1_000))


def _symbol_pairs(task: str, data, rng: np.random.Generator, n: int) -> list[tuple[str, str]]:
  alphabet = np.array(list(_ALPHABET[:data.get('num_symbols', 10)]))
  max_len = data.get('max_len', 10)
  lengths = rng.integers(data.get('min_len', 1), max_len + 1, n)
  symbols = alphabet[rng.integers(0, len(alphabet), (n, max_len))]
  strings = [''.join(row[:length]) for row, length in zip(symbols, lengths)]
  return [(s, _TRANSFORMS[task](s)) for s in strings]


def _addition_pairs(data, rng: np.random.Generator, n: int) -> list[tuple[str, str]]:
  """Operands with 1..max_digits digits, the digit count drawn uniformly."""
  digits = rng.integers(1, data.get('max_digits', 5) + 1, (2, n))
  low = np.where(digits > 1, 10 ** (digits - 1), 0)
  a, b = rng.integers(low, 10 ** digits)
  return [(f'{x}+{y}', str(x + y)) for x, y in zip(a, b)]


def _lengths(task: str, data) -> tuple[int, int]:
  """The padded input and target lengths, EOS included."""
  if task == 'addition':
    digits = data.get('max_digits', 5)
    return 2 * digits + 2, digits + 2
  return (data.get('max_len', 10) + 1,) * 2


def _padded(tokenizer: tokenizers.CharTokenizer, texts, length: int) -> np.ndarray:
  eos = np.array([tokenizers.EOS], np.int32)
  rows = [np.concatenate([tokenizer.encode(t), eos]) for t in texts]
  return Ragged(rows).padded(np.arange(len(rows)), length)


def build(task: str, config) -> Splits:
  """The three splits of `task` ('copy', 'reverse', 'sort' or 'addition')."""
  data = config.data
  if task == 'addition':
    alphabet = '+' + string.digits
  else:
    alphabet = _ALPHABET[:data.get('num_symbols', 10)]
  tokenizer = tokenizers.CharTokenizer(sorted(alphabet), {'corpus': task})
  input_len, target_len = _lengths(task, data)
  sources = []
  for index, (field, default) in enumerate(_SPLIT_SIZES):
    rng = np.random.default_rng([data.get('seed', 0), index])
    n = data.get(field, default)
    pairs = (_addition_pairs(data, rng, n) if task == 'addition'
             else _symbol_pairs(task, data, rng, n))
    inputs, targets = zip(*pairs)
    sources.append(TokenMaskedSource({'inputs': _padded(tokenizer, inputs, input_len),
                                      'targets': _padded(tokenizer, targets, target_len)}))
  return Splits(*sources, info=tokenizer_info(tokenizer, max_len=input_len,
                                              target_len=target_len))


for _task in ('copy', 'reverse', 'sort', 'addition'):
  registry.register(_task)(functools.partial(build, _task))

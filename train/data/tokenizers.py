"""Tokenizers for characters, words and sub-words, with one layout of special ids.

Every tokenizer reserves the same seven ids, so models and pipelines can name them
without knowing which tokenizer a run uses: PAD=0 (padding, never produced by `encode`),
UNK=1, BOS=2, EOS=3, and MASK=4, CLS=5, SEP=6 for BERT. `decode` drops every special id
but UNK, so `decode(encode(text))` gives the text back whenever the vocabulary covers it
(always, for sentencepiece, whose byte fallback covers any string).

A tokenizer saves itself to a directory (the engine passes `<workdir>/tokenizer`), so a
resumed run, or a decoding script, reads the vocabulary the checkpoint was trained with;
`load_or_train` refuses a saved vocabulary that the config no longer describes, rather
than silently feeding a model ids that mean other words.
"""

from __future__ import annotations

import collections
import io
import json
import os
from typing import Callable, Iterable, Sequence

import numpy as np
import sentencepiece as spm

from train import storage
from train.errors import UserError

SPECIALS = ('<pad>', '<unk>', '<s>', '</s>', '[MASK]', '[CLS]', '[SEP]')
PAD, UNK, BOS, EOS, MASK, CLS, SEP = range(len(SPECIALS))
_META = 'tokenizer.json'
_SPM_MODEL = 'spm.model'


class _Vocabulary:
  """An explicit token list (specials first); the character and word tokenizers."""
  KIND = ''
  SEPARATOR = ''  # what `decode` puts between tokens
  SETTINGS: tuple[str, ...] = ()  # the training options that define the vocabulary

  def __init__(self, tokens: Sequence[str], settings: dict):
    self.tokens = list(SPECIALS) + list(tokens)
    self.settings = settings
    self._ids = {t: i for i, t in enumerate(self.tokens)}

  @property
  def vocab_size(self) -> int:
    return len(self.tokens)

  def encode_batch(self, texts: Sequence[str]) -> list[np.ndarray]:
    return [self.encode(t) for t in texts]

  def decode(self, ids: Iterable[int]) -> str:
    return self.SEPARATOR.join(self.tokens[i] for i in ids if _printable(i))

  def save(self, directory: str) -> None:
    _write_meta(directory, self.KIND, self.settings, tokens=self.tokens[len(SPECIALS):])

  @classmethod
  def restore(cls, directory: str, meta: dict) -> _Vocabulary:
    del directory  # the vocabulary lives in the metadata itself
    return cls(meta['tokens'], meta['settings'])


class CharTokenizer(_Vocabulary):
  """One id per Unicode character seen in training; newlines are ordinary characters."""
  KIND = 'char'

  @classmethod
  def train(cls, texts: Iterable[str], settings: dict) -> CharTokenizer:
    chars = set()
    for text in texts:
      chars.update(text)
    return cls(sorted(chars), settings)

  def __init__(self, tokens: Sequence[str], settings: dict):
    super().__init__(tokens, settings)
    # Sorted code points let `encode` map a whole text with one searchsorted.
    codes = np.array([ord(c) for c in tokens], np.uint32)
    order = np.argsort(codes)
    self._codes, self._code_ids = codes[order], (order + len(SPECIALS)).astype(np.int32)

  def encode(self, text: str) -> np.ndarray:
    codes = np.frombuffer(text.encode('utf-32-le'), np.uint32)
    pos = np.minimum(np.searchsorted(self._codes, codes), len(self._codes) - 1)
    return np.where(self._codes[pos] == codes, self._code_ids[pos], UNK).astype(np.int32)


class WordTokenizer(_Vocabulary):
  """Whitespace-separated words, kept if seen `min_count` times, the most frequent first."""
  KIND = 'word'
  SEPARATOR = ' '
  SETTINGS = ('vocab_size', 'min_count')

  @classmethod
  def train(cls, texts: Iterable[str], settings: dict) -> WordTokenizer:
    counts = collections.Counter()
    for text in texts:
      counts.update(text.split())
    for special in SPECIALS:
      counts.pop(special, None)
    # Ties are broken alphabetically so the vocabulary is a pure function of the corpus.
    ranked = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
    words = [w for w, n in ranked if n >= settings['min_count']]
    return cls(words[:settings['vocab_size'] - len(SPECIALS)], settings)

  def encode(self, text: str) -> np.ndarray:
    return np.array([self._ids.get(w, UNK) for w in text.split()], np.int32)


class SentencePieceTokenizer:
  """BPE or unigram sub-words (sentencepiece), the vocabulary of GPT- and BERT-style models.

  Pieces that begin a word start with '▁', which is what BERT's whole-word masking and
  first-sub-word tagging need; byte fallback and identity normalisation make `decode`
  an exact inverse of `encode` for any text.
  """
  KIND = 'sentencepiece'
  SETTINGS = ('vocab_size', 'model_type')

  def __init__(self, model: bytes, settings: dict):
    self.model = model
    self.settings = settings
    self._sp = spm.SentencePieceProcessor(model_proto=model)

  @classmethod
  def train(cls, texts: Iterable[str], settings: dict) -> SentencePieceTokenizer:
    # sentencepiece learns from sentences: lines, as its own file reader would give them.
    sentences = (line for text in texts for line in text.split('\n') if line.strip())
    model = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=sentences, model_writer=model,
        model_type=settings['model_type'], vocab_size=settings['vocab_size'],
        hard_vocab_limit=False,  # a small corpus gets a smaller vocabulary, not an error
        pad_id=PAD, unk_id=UNK, bos_id=BOS, eos_id=EOS,
        user_defined_symbols=list(SPECIALS[MASK:]), byte_fallback=True,
        character_coverage=1.0, normalization_rule_name='identity',
        remove_extra_whitespaces=False, input_sentence_size=2_000_000,
        shuffle_input_sentence=True, num_threads=os.cpu_count() or 1, minloglevel=2)
    return cls(model.getvalue(), settings)

  @property
  def vocab_size(self) -> int:
    return self._sp.vocab_size()

  def encode(self, text: str) -> np.ndarray:
    return np.array(self._sp.encode(text), np.int32)

  def encode_batch(self, texts: Sequence[str]) -> list[np.ndarray]:
    return [np.array(ids, np.int32) for ids in self._sp.encode(list(texts))]

  def decode(self, ids: Iterable[int]) -> str:
    return self._sp.decode([int(i) for i in ids if _printable(i)])

  def save(self, directory: str) -> None:
    _write_meta(directory, self.KIND, self.settings)
    storage.write_atomic(storage.path(directory) / _SPM_MODEL, self.model)

  @classmethod
  def restore(cls, directory: str, meta: dict) -> SentencePieceTokenizer:
    return cls((storage.path(directory) / _SPM_MODEL).read_bytes(), meta['settings'])


Tokenizer = CharTokenizer | WordTokenizer | SentencePieceTokenizer
KINDS = {c.KIND: c for c in (CharTokenizer, WordTokenizer, SentencePieceTokenizer)}


def _printable(i: int) -> bool:
  return i == UNK or i >= len(SPECIALS)


def _write_meta(directory: str, kind: str, settings: dict, **extra) -> None:
  directory = storage.path(directory)
  directory.mkdir(parents=True, exist_ok=True)
  storage.write_atomic(directory / _META, json.dumps(
      {'kind': kind, 'settings': settings, **extra}, ensure_ascii=False))


def load(directory: str) -> Tokenizer:
  """The tokenizer saved in `directory` by `save`.

  Raises:
    UserError: nothing was saved there, or what was saved is damaged.
  """
  path = storage.path(directory) / _META
  if not path.exists():
    raise UserError(f'{path} does not exist: no tokenizer was saved in {directory}.')
  try:
    meta = json.loads(path.read_bytes().decode('utf-8'))
  except (OSError, ValueError, RecursionError) as error:  # ValueError: JSON and UTF-8
    raise UserError(_damaged(path, f'not JSON: {" ".join(str(error).split())}')) from None
  problem = _meta_problem(meta)
  if problem:
    raise UserError(_damaged(path, problem))
  if meta['kind'] != SentencePieceTokenizer.KIND:
    return KINDS[meta['kind']].restore(directory, meta)
  model = storage.path(directory) / _SPM_MODEL
  try:
    tokenizer = SentencePieceTokenizer.restore(directory, meta)
  except (OSError, RuntimeError) as error:  # missing, or not a sentencepiece model
    raise UserError(_damaged(model, ' '.join(str(error).split()[:12]))) from None
  if not tokenizer.vocab_size:
    raise UserError(_damaged(model, 'an empty sentencepiece model'))
  return tokenizer


def _meta_problem(meta) -> str | None:
  """What is wrong with the contents of a tokenizer.json, if anything."""
  kind = meta.get('kind') if isinstance(meta, dict) else None
  if not isinstance(kind, str) or kind not in KINDS:
    return f'its "kind" is not one of {sorted(KINDS)}'
  if not isinstance(meta.get('settings'), dict):
    return 'its "settings" are not a JSON object'
  if meta['kind'] == SentencePieceTokenizer.KIND:
    return None
  tokens = meta.get('tokens')
  if not isinstance(tokens, list) or not all(isinstance(t, str) and t for t in tokens):
    return 'its "tokens" are not a list of non-empty strings'
  if meta['kind'] == CharTokenizer.KIND and not all(len(t) == 1 for t in tokens):
    return 'its "tokens" are not single characters'
  return None


def _damaged(path, problem: str) -> str:
  return (f'{path} is damaged ({problem}); restore it from a backup, or pass --fresh to move '
          'that run to its archive/ folder and start over with a new tokenizer.')


def load_or_train(kind: str, texts: Callable[[], Iterable[str]], directory: str | None,
                  **options) -> Tokenizer:
  """Loads the tokenizer saved in `directory`, or trains one on `texts()` and saves it.

  Args:
    kind: 'char', 'word' or 'sentencepiece'.
    texts: returns the training texts; called only when there is nothing to load.
    directory: where the tokenizer lives (None: train, keep in memory only).
    **options: `corpus` (a name for the training data) and the kind's SETTINGS
      (`vocab_size`, `min_count`, `model_type`); the others are ignored.

  Raises:
    ValueError: the saved tokenizer was built with other settings, so the checkpoint
      next to it expects a different vocabulary from the one the config describes.
  """
  if kind not in KINDS:
    raise UserError(f'config.data.tokenizer={kind!r} is not a tokenizer; '
                     f'choose one of {sorted(KINDS)}.')
  cls = KINDS[kind]
  settings = {k: options[k] for k in ('corpus',) + cls.SETTINGS}
  if directory and (storage.path(directory) / _META).exists():
    saved = load(directory)
    # The corpus is not compared: a tokenizer trained on other text (that of a pre-trained
    # model the run starts from, config.init_from) is used as it is.
    wanted = {'kind': kind, **{k: v for k, v in settings.items() if k != 'corpus'}}
    found = {'kind': saved.KIND, **{k: v for k, v in saved.settings.items() if k != 'corpus'}}
    if wanted != found:
      raise UserError(
          f'Vocabulary mismatch: the tokenizer saved in {directory} (which the checkpoint '
          f'there was trained with) has {found}, but the config asks for {wanted}; restore '
          'those config.data values or use a new workdir.')
    return saved
  tokenizer = cls.train(texts(), settings)
  if directory:
    tokenizer.save(directory)
  return tokenizer

"""Text datasets by name: local files or the TFDS catalog -> a tokenizer -> batches.

Every builder reads `config.data_dir` (a local folder or file as laid out in
../shared/data; None reads the TFDS catalog dataset named in its docstring),
`config.tfds_data_dir` (where ArrayRecords are prepared and read; None: the TFDS
default), and these optional `config.data` fields:

  tokenizer      'char', 'word' or 'sentencepiece' (the default depends on the dataset)
  vocab_size     word and sentencepiece vocabulary size, special tokens included
  min_count      word: occurrences in the training split to enter the vocabulary (1)
  vocabulary_from_vectors   word: the words of config.pretrained_embeddings enter the
                 vocabulary too (False), so a test word never seen in training keeps its
                 pretrained vector instead of becoming UNK
  model_type     sentencepiece: 'bpe' (GPT-style, the default) or 'unigram'
  tokenizer_dir  where the tokenizer is saved and reloaded; the engine sets it to
                 <workdir>/tokenizer so a resumed run keeps its vocabulary
  seq_len        language models: tokens per training window (256)
  eval_seq_len   language models: tokens per evaluation window (seq_len); a model that
                 carries state starts each evaluation window from zeros, so longer
                 windows measure it closer to reading the whole split at once
  carry_state    language models: carry the recurrent state from each training window to
                 the next (False): row-contiguous batches (text_pipeline.StreamSource)
                 and truncated backpropagation through time (nets/rnn_lm.py)
  max_len        other datasets: the longest padded length (default: the longest
                 training example, rounded up to a multiple of 8; longer examples,
                 in any split, are cut)
  bucketing      other datasets: batch by length bucket (True) or pad all to max_len
  cls_sep        other datasets: each example read as [CLS] x [SEP], BERT's layout (False);
                 the other sequence fields (tags, masks, features) get 0 at both ends
  source_language, target_language   translation direction ('de' -> 'en')

The tokenizer is trained on the training split only. What a batch holds is described
in text_pipeline.py; `info` holds `vocab_size`, `pad_id`, `bos_id`, `eos_id`, the
`tokenizer` object, and `seq_len` (the longer of the two window lengths), or `max_len`
with class names and counts.
"""

from __future__ import annotations

import itertools
import os
from typing import Callable, Iterable, Sequence

import numpy as np
import tensorflow_datasets as tfds
from absl import logging

from train import pretrained
from train.data import catalog as catalog_lib
from train.data import registry, tokenizers
from train.data.pipeline import Splits
from train.data.text_builders import (LocalBuilder, LocalConll2003, LocalLabelledSentences,
                                      LocalParallelText, LocalTextCorpus, LocalTextSplits,
                                      open_local)
from train.data.text_pipeline import (BucketedSource, lm_source, token_stream,
                                      tokenizer_info)
from train.errors import UserError

_SPLITS = ('train', 'eval', 'test')


def _str(text) -> str:
  """Catalog records hold bytes, mock data str."""
  return text.decode('utf-8') if isinstance(text, bytes) else str(text)


def _read(config, catalog: str | None, catalog_splits: Sequence[str],
          local: type[LocalBuilder] | None, layout: str = '', source: str | None = None,
          **options) -> tuple[list[list[dict]], tfds.features.FeaturesDict]:
  """Every example of train, eval and test, and the features that describe them.

  Args:
    config: the experiment config.
    catalog: the TFDS catalog name read when config.data_dir is None.
    catalog_splits: its splits (or slices) that serve as train, eval and test.
    local: the builder of local files read when config.data_dir is set.
    layout: what config.data_dir should be, for error messages.
    source: the file or folder `local` reads, if not config.data_dir itself.
    **options: `local`'s own arguments.
  """
  if config.data_dir and local is None:
    raise UserError(f'{config.dataset} is read from the TFDS catalog ({catalog}) only; '
                     'set config.data_dir to None.')
  if not config.data_dir and catalog is None:
    raise UserError(f'{config.dataset} reads local files: set config.data_dir to {layout}.')
  if config.data_dir:
    sources = open_local(local, config, source or config.data_dir, layout, **options)
  else:
    sources = catalog_lib.data_source(catalog, list(catalog_splits), config.tfds_data_dir,
                                      layout)
  examples = [[s[i] for i in range(len(s))] for s in sources]
  for split, split_examples in zip(_SPLITS, examples):
    if not split_examples:
      raise UserError(f'The {split} split of {config.dataset} is empty; check '
                       'config.data_dir, or the TFDS data in config.tfds_data_dir.')
  return examples, sources[0].dataset_info.features


def _tokenizer(config, default_kind: str, texts: Callable[[], Iterable[str]],
               default_vocab_size: int) -> tokenizers.Tokenizer:
  data = config.data
  if data.get('vocabulary_from_vectors', False):
    if not config.get(pretrained.FIELD):
      raise UserError('config.data.vocabulary_from_vectors=True takes its words from '
                      f'config.{pretrained.FIELD}, which is not set; set both or neither.')
    training_texts = texts

    def texts():  # read only when a tokenizer is trained, not when a saved one is loaded
      words = pretrained.read_word2vec_text(config.get(pretrained.FIELD))[0]
      # min_count copies of the vectors' words, so that each reaches min_count and enters
      # the vocabulary (within vocab_size: words are ranked by count).
      return itertools.chain(training_texts(), [' '.join(words)] * data.get('min_count', 1))
  return tokenizers.load_or_train(
      data.get('tokenizer', default_kind), texts, data.get('tokenizer_dir'),
      corpus=config.dataset, vocab_size=data.get('vocab_size', default_vocab_size),
      min_count=data.get('min_count', 1), model_type=data.get('model_type', 'bpe'))


def _bucketed_splits(config, tokenizer: tokenizers.Tokenizer, sequences: list[dict],
                     scalars: list[dict], **info) -> Splits:
  """Splits of BucketedSources (train, eval, test) with the buckets of the training split.

  max_len defaults to the longest training example (rounded up to a multiple of 8): it
  is a fact of the training data, never of the examples a model is evaluated on.
  """
  if config.data.get('cls_sep', False):
    sequences = [with_cls_sep(split) for split in sequences]
  longest = max(len(x) for rows in sequences[0].values() for x in rows)
  max_len = config.data.get('max_len') or -(-longest // 8) * 8
  for name, split in zip(_SPLITS[1:], sequences[1:]):
    cut = sum(len(x) > max_len for x in next(iter(split.values())))
    if cut:
      logging.warning('%d %s examples of %s are longer than max_len=%d and are cut; set '
                      'config.data.max_len to keep them whole.', cut, name, config.dataset,
                      max_len)
  bucketing = config.data.get('bucketing', True)
  sources = [BucketedSource(s, c, max_len, bucketing) for s, c in zip(sequences, scalars)]
  return Splits(*sources, info=tokenizer_info(tokenizer, max_len=max_len, **info))


def with_cls_sep(sequences: dict[str, list]) -> dict[str, list]:
  """[CLS] inputs [SEP]; every other sequence field padded with a 0 at both ends."""
  ends = {'inputs': (tokenizers.CLS, tokenizers.SEP)}
  return {key: [np.concatenate([[ends.get(key, (0, 0))[0]], x, [ends.get(key, (0, 0))[1]]]
                               ).astype(x.dtype) for x in rows]
          for key, rows in sequences.items()}


# Language models: every split becomes one token stream, packed into windows.


def _language_model(config, examples: list[list[dict]], default_kind: str) -> Splits:
  documents = [[_str(ex['text']) for ex in split] for split in examples]
  tokenizer = _tokenizer(config, default_kind, lambda: documents[0], 32_000)
  seq_len = config.data.get('seq_len', 256)
  lengths = (seq_len,) + (config.data.get('eval_seq_len') or seq_len,) * 2
  sources = [lm_source(token_stream(tokenizer, docs), length, split,
                       contiguous=split == 'train' and config.data.get('carry_state', False))
             for docs, length, split in zip(documents, lengths, _SPLITS)]
  return Splits(*sources, info=tokenizer_info(tokenizer, seq_len=max(lengths)))


@registry.register('tiny_shakespeare')
def tiny_shakespeare(config) -> Splits:
  """Characters of Tiny Shakespeare (catalog: tiny_shakespeare), cut 90/5/5."""
  examples, _ = _read(
      config, 'tiny_shakespeare', ('train', 'validation', 'test'), LocalTextCorpus,
      'the folder holding input.txt (../shared/data/tinyshakespeare)',
      source=config.data_dir and os.path.join(config.data_dir, 'input.txt'))
  return _language_model(config, examples, 'char')


# The word-level benchmarks' folders: one file per split (train, valid, test).
WORD_BENCHMARK_FILES = {
    'Penn Treebank': ('ptb.train.txt', 'ptb.valid.txt', 'ptb.test.txt'),
    'WikiText': ('wiki.train.tokens', 'wiki.valid.tokens', 'wiki.test.tokens'),
}


@registry.register('text_corpus')
def text_corpus(config) -> Splits:
  """Words by default, from config.data_dir: a plain-text file, cut 90/5/5, or a folder in
  the layout of a word-level benchmark (WORD_BENCHMARK_FILES: Penn Treebank's
  ptb.{train,valid,test}.txt, WikiText's wiki.{train,valid,test}.tokens), whose three files
  are the three splits."""
  if not (config.data_dir and os.path.isdir(config.data_dir)):
    examples, _ = _read(config, None, (), LocalTextCorpus,
                        'a plain-text file (e.g. ../shared/data/wiki/enwiki-text.txt) or a '
                        'folder of ptb.{train,valid,test}.txt or wiki.{train,valid,test}.tokens')
    return _language_model(config, examples, 'word')
  found = [(name, files) for name, files in WORD_BENCHMARK_FILES.items()
           if os.path.isfile(os.path.join(config.data_dir, files[0]))]
  if not found:
    raise UserError(f'config.data_dir={config.data_dir!r} is a folder without '
                    f'{WORD_BENCHMARK_FILES["Penn Treebank"][0]} or '
                    f'{WORD_BENCHMARK_FILES["WikiText"][0]}; name a plain-text file, or a '
                    'folder of ptb.{train,valid,test}.txt or wiki.{train,valid,test}.tokens.')
  name, files = found[0]
  examples, _ = _read(config, None, (), LocalTextSplits,
                      f'a folder of {name} files ({", ".join(files)})', files=list(files))
  return _language_model(config, examples, 'word')


@registry.register('lm1b')
def lm1b(config) -> Splits:
  """One Billion Word (catalog only), sentencepiece; its test split serves as eval too."""
  examples, _ = _read(config, 'lm1b', ('train', 'test', 'test'), None)
  return _language_model(config, examples, 'sentencepiece')


# Sequence tagging: labels sit on the first sub-word of each word.


def _tagged(tokenizer: tokenizers.Tokenizer, examples: list[dict]) -> dict[str, list]:
  """Token ids, tags and the first-piece `token_mask` of each sentence.

  A word the tokenizer splits gets its tag on the first piece and mask 0 on the rest
  (tag 0 there); with the word tokenizer every word is one piece.
  """
  columns = {'label': 'ner', 'pos': 'pos', 'chunks': 'chunks'}
  # Catalog columns always match the tokens; mock data draws their lengths separately.
  lengths = [min(len(ex['tokens']), *(len(ex[c]) for c in columns.values()))
             for ex in examples]
  words = [_str(w) for ex, n in zip(examples, lengths) for w in ex['tokens'][:n]]
  pieces = [p if len(p) else np.array([tokenizers.UNK], np.int32)
            for p in tokenizer.encode_batch(words)]
  per_word = np.array([len(p) for p in pieces])
  starts = np.cumsum(per_word) - per_word
  flat = {'inputs': np.concatenate(pieces), 'token_mask': np.zeros(per_word.sum(), np.float32)}
  flat['token_mask'][starts] = 1.0
  for key, column in columns.items():
    flat[key] = np.zeros(per_word.sum(), np.int32)
    flat[key][starts] = np.concatenate(
        [np.asarray(ex[column][:n], np.int32) for ex, n in zip(examples, lengths)])
  flat['case'] = np.zeros(per_word.sum(), np.int32)
  flat['case'][starts] = [word_case(w) for w in words]
  sentence_ends = np.cumsum(per_word)[np.cumsum(lengths) - 1]
  return {k: np.split(v, sentence_ends[:-1]) for k, v in flat.items()}


# The `case` feature of a word: its spelling's shape, which an UNK keeps (a capitalised
# word never seen in training is probably a name). 0 is padding and later sub-word pieces.
CASES = ('pad', 'lower', 'Title', 'UPPER', 'digits', 'other')


def word_case(word: str) -> int:
  if any(c.isdigit() for c in word):
    return CASES.index('digits')
  if word.islower():
    return CASES.index('lower')
  if word.isupper():
    return CASES.index('UPPER')
  if word[:1].isupper() and (len(word) == 1 or word[1:].islower()):
    return CASES.index('Title')
  return CASES.index('other')


@registry.register('conll2003')
def conll2003(config) -> Splits:
  """CoNLL-2003 NER (catalog: conll2003); `label` is the NER tag, also `pos`, `chunks`
  and `case` (word_case)."""
  examples, features = _read(
      config, 'conll2003', ('train', 'dev', 'test'), LocalConll2003,
      'the folder holding train.txt, valid.txt and test.txt (../shared/data/conll2003), '
      'or None for the TFDS catalog')
  tokenizer = _tokenizer(
      config, 'word', lambda: (' '.join(map(_str, ex['tokens'])) for ex in examples[0]),
      50_000)
  names = {c: features[c].feature.names for c in ('ner', 'pos', 'chunks')}
  return _bucketed_splits(
      config, tokenizer, [_tagged(tokenizer, e) for e in examples], [{}] * 3,
      num_classes=len(names['ner']), class_names=names['ner'], num_pos=len(names['pos']),
      num_chunks=len(names['chunks']), num_case=len(CASES))


# Sentence classification.


def _classification(config, examples: list[list[dict]], features, text_key: str) -> Splits:
  texts = [[_str(ex[text_key]) for ex in split] for split in examples]
  tokenizer = _tokenizer(config, 'word', lambda: texts[0], 50_000)
  names = features['label'].names
  return _bucketed_splits(
      config, tokenizer, [{'inputs': tokenizer.encode_batch(t)} for t in texts],
      [{'label': np.array([ex['label'] for ex in split], np.int32)} for split in examples],
      num_classes=len(names), class_names=names)


@registry.register('sst2')
def sst2(config) -> Splits:
  """SST-2 sentences (catalog: glue/sst2; its test labels are hidden, so eval = test =
  its validation split)."""
  examples, features = _read(
      config, 'glue/sst2', ('train', 'validation', 'validation'), LocalLabelledSentences,
      'the folder holding stsa.binary.{train,dev,test} (../shared/data/sst2), or None for '
      'the TFDS catalog', files=['stsa.binary.train', 'stsa.binary.dev', 'stsa.binary.test'],
      class_names=['negative', 'positive'])
  return _classification(config, examples, features, 'sentence')


@registry.register('imdb_reviews')
def imdb_reviews(config) -> Splits:
  """IMDB review sentiment (catalog only); eval is the last 10% of train."""
  examples, features = _read(config, 'imdb_reviews', ('train[:90%]', 'train[90%:]', 'test'),
                             None)
  return _classification(config, examples, features, 'text')


# Translation: one sentencepiece vocabulary shared by both languages.


def _translation(config, examples: list[list[dict]]) -> Splits:
  source_language = config.data.get('source_language', 'de')
  target_language = config.data.get('target_language', 'en')
  texts = [[(_str(ex[source_language]), _str(ex[target_language])) for ex in split]
           for split in examples]
  tokenizer = _tokenizer(config, 'sentencepiece',
                         lambda: (s for pair in texts[0] for s in pair), 8_000)
  eos = np.array([tokenizers.EOS], np.int32)

  def encode(sentences):
    return [np.concatenate([ids, eos]) for ids in tokenizer.encode_batch(sentences)]

  sequences = []
  for split in texts:
    inputs, targets = (encode(side) for side in zip(*split))
    sequences.append({'inputs': inputs, 'targets': targets,
                      'token_mask': [np.ones(len(t), np.float32) for t in targets]})
  return _bucketed_splits(config, tokenizer, sequences, [{}] * 3,
                          source_language=source_language, target_language=target_language)


@registry.register('multi30k')
def multi30k(config) -> Splits:
  """Multi30k German-English (catalog fallback: wmt14_translate/de-en, far larger)."""
  examples, _ = _read(
      config, 'wmt14_translate/de-en', ('train', 'validation', 'test'), LocalParallelText,
      'the folder holding {train,val,test_2016_flickr}.{de,en}[.gz] '
      '(../shared/data/multi30k), or None for the TFDS catalog',
      prefixes=['train', 'val', 'test_2016_flickr'], languages=['de', 'en'])
  return _translation(config, examples)


@registry.register('wmt14_de_en')
def wmt14_de_en(config) -> Splits:
  """WMT14 German-English (catalog only: wmt14_translate/de-en)."""
  examples, _ = _read(config, 'wmt14_translate/de-en', ('train', 'validation', 'test'), None)
  return _translation(config, examples)

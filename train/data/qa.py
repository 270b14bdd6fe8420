"""Extractive question answering generated from CoNLL-2003's real sentences ('conll_qa').

For every sentence and every entity type it holds, one question asks for the FIRST entity
of that type (entities read with conlleval's chunk rules, as the tagger's F1 reads them):

    PER  'which person ?'          LOC   'which location ?'
    ORG  'which organisation ?'    MISC  'which miscellaneous entity ?'

Each example is BERT's sentence-pair layout, question first, context second:

    inputs    [CLS] q_1 .. q_m [SEP] c_1 .. c_n [SEP]
    segments    0    0  ..  0    0    1  ..  1    1
    start, end  the answer's first and last sub-word: positions in `inputs`, start <= end

The context is the sentence's words, each tokenized on its own (as the tagger's are), so
an answer is always whole pieces of whole words and `tokenizer.decode(inputs[start:end+1])`
gives the entity's words. The splits are CoNLL's (train, dev, test); the tokenizer
(sentencepiece by default, config.data.vocab_size 8,000) is trained on the training
sentences. A batch holds `inputs`, `segments` int32[B, Lb], `start`, `end`, `question`
(the type's index in info['question_types']) int32[B], `index` and `mask` float32[B]
(text_pipeline.BucketedSource). The layout already has BERT's [CLS] and [SEP], so
config.data.cls_sep must not be set. An eval or test example longer than max_len is cut
(with a warning); if its answer is cut off, no span can match it.
"""

from __future__ import annotations

import numpy as np

from train.data import registry, tokenizers
from train.data.pipeline import Splits
from train.data.text import _bucketed_splits, _read, _str, _tokenizer
from train.data.text_builders import LocalConll2003
from train.errors import UserError
# The module, not its names: tagging_tasks imports train.data, so either may load first.
from train import tagging_tasks

QUESTIONS = {'PER': 'which person ?', 'LOC': 'which location ?',
             'ORG': 'which organisation ?', 'MISC': 'which miscellaneous entity ?'}


def entities(tags: list[str]) -> list[tuple[str, int, int]]:
  """(type, first word, last word) of each entity of a sentence, in order (conlleval's
  chunks: IOB1 and IOB2 read alike)."""
  found, prev, prev_type = [], 'O', ''
  for k, tag in enumerate([*tags, 'O']):  # the 'O' after the sentence closes its last chunk
    t, type_ = tagging_tasks.split_tag(tag)
    if found and found[-1][2] < 0 and tagging_tasks.chunk_end(prev, prev_type, t, type_):
      found[-1] = (found[-1][0], found[-1][1], k - 1)
    if k < len(tags) and tagging_tasks.chunk_start(prev, prev_type, t, type_):
      found.append((type_, k, -1))
    prev, prev_type = t, type_
  return found


def questions(tokenizer: tokenizers.Tokenizer, examples: list[dict],
              tag_names: list[str]) -> tuple[dict, dict]:
  """(sequences, scalars) of every question on the sentences `examples` (module docstring)."""
  types = list(QUESTIONS)
  asked = [tokenizer.encode(QUESTIONS[t]) for t in types]
  # Catalog columns always match the tokens; mock data draws their lengths separately.
  lengths = [min(len(ex['tokens']), len(ex['ner'])) for ex in examples]
  words = [_str(w) for ex, n in zip(examples, lengths) for w in ex['tokens'][:n]]
  pieces = iter(tokenizer.encode_batch(words))
  sequences, scalars = {'inputs': [], 'segments': []}, {'start': [], 'end': [], 'question': []}
  for ex, n in zip(examples, lengths):
    word_pieces = [next(pieces) for _ in range(n)]
    word_pieces = [p if len(p) else np.array([tokenizers.UNK], np.int32) for p in word_pieces]
    context = np.concatenate(word_pieces + [np.array([tokenizers.SEP], np.int32)])
    ends = np.cumsum([len(p) for p in word_pieces])  # one past each word's last piece
    first = {}  # type -> its first entity's (first word, last word)
    for type_, a, b in entities([tag_names[int(i)] for i in ex['ner'][:n]]):
      first.setdefault(type_, (a, b))
    for q, type_ in enumerate(types):
      if type_ not in first:
        continue
      a, b = first[type_]
      offset = len(asked[q]) + 2  # [CLS] question [SEP]
      sequences['inputs'].append(np.concatenate(
          [[tokenizers.CLS], asked[q], [tokenizers.SEP], context]).astype(np.int32))
      sequences['segments'].append(
          np.repeat(np.int32([0, 1]), [offset, len(context)]))
      scalars['start'].append(offset + ends[a] - len(word_pieces[a]))
      scalars['end'].append(offset + ends[b] - 1)
      scalars['question'].append(q)
  return sequences, {k: np.array(v, np.int32) for k, v in scalars.items()}


@registry.register('conll_qa')
def conll_qa(config) -> Splits:
  """Questions on CoNLL-2003 sentences (module docstring); the catalog fallback is conll2003."""
  if config.data.get('cls_sep', False):
    raise UserError('config.data.cls_sep=True would wrap conll_qa examples in a second '
                    '[CLS] .. [SEP]; they already have BERT\'s layout, so unset it.')
  examples, features = _read(
      config, 'conll2003', ('train', 'dev', 'test'), LocalConll2003,
      'the folder holding train.txt, valid.txt and test.txt (../shared/data/conll2003), '
      'or None for the TFDS catalog')
  tokenizer = _tokenizer(
      config, 'sentencepiece',
      lambda: (' '.join(map(_str, ex['tokens'])) for ex in examples[0]), 8_000)
  tag_names = features['ner'].feature.names
  sequences, scalars = zip(*(questions(tokenizer, split, tag_names) for split in examples))
  return _bucketed_splits(config, tokenizer, list(sequences), list(scalars),
                          question_types=tuple(QUESTIONS),
                          questions=tuple(QUESTIONS.values()))

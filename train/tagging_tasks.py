"""Sequence tagging scored by entities (CoNLL NER), sentence classification with word
vectors, and the max-margin window detector.

'sequence_tagging': one of K tags per word, batches holding `inputs`, `label` [B, T] and
`mask` [B, T] (1 on the first piece of each word; train/data/text.py, conll2003):

    loss = -(1/N) sum_{t : mask_t = 1} log p(y_t | w)

Evaluation scores whole entities as the CoNLL evaluation script `conlleval` does: an
entity counts as found only if a predicted chunk has the same type and the same first
and last word as a gold one, and

    precision = correct / predicted chunks,  recall = correct / gold chunks,
    f1 = 2 P R / (P + R)                     (overall, and per type as f1_<TYPE>)

`accuracy` is conlleval's token accuracy: the fraction of words whose whole tag is right,
O included. Chunks are read with conlleval's rules, so IOB1 (I-X begins an entity unless
it continues one of type X; B-X only separates two adjacent entities of type X) and IOB2
(every entity begins with B-X) are read alike: a chunk begins at B-X, at I-X after O, and
wherever the type changes; it ends before O, B-, or a change of type. Every sentence
starts after an O and ends before one, as the blank lines of conlleval's input do.

config fields (optional): `input_features`, batch fields fed to the model beside the
words (('pos', 'chunks', 'case') for CoNLL's part-of-speech and chunk tags and each word's
spelling shape; the model's `feature_sizes` are set from the dataset's num_pos, num_chunks,
num_case); `pretrained_embeddings`,
a word2vec text file for the embedding table (train/pretrained.py); `word_dropout` p,
the probability that a training word is replaced by UNK, so that the model learns to
tag the words it has no vector for from their context (test sentences are full of them).

'sentence_classification': the 'classification' task (one label per sentence) with
`input_features`, `pretrained_embeddings` and `word_dropout` as above.

'window_margin': one score s per window (nets/window_ner.py, num_outputs=1) trained so
that each window centred on an entity word of the chosen type (config.margin.entity,
'LOC') outscores by a margin (margin.margin, 1) each of S (margin.num_corrupt, 5) copies
of it whose centre word is replaced by a word drawn at random (margin.sample: 'corpus', from the batch's words, so as often as the
corpus uses them; or 'vocabulary', every word alike):

    J = (1/N_pos) sum_{t : y_t in entity} sum_{s=1..S} max(0, 1 - s(x_t) + s(x_t^(s)))

A word is detected as an entity word where s(x_t) > margin.threshold, and runs of detected
words are entities; precision, recall and f1 are conlleval's, against the gold entities
of that type only. The hinge fixes differences of scores, not their level (the output
bias gets no gradient), so the threshold is a hyperparameter: each evaluation also
reports the split's best threshold and its f1 (best_threshold, best_f1), an oracle from
which to choose margin.threshold on the eval split.
"""

from __future__ import annotations

import collections
import re
from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np
from ml_collections import ConfigDict

from train import losses, metrics, pretrained
from train.data.tokenizers import PAD, SPECIALS, UNK
from train.errors import UserError
from train.tasks import Aux, Classification, EvalOutput, Task, register

# conlleval: (previous prefix, prefix) pairs at which a chunk ends or starts; E- and the
# bracket tags of its other formats are kept so any tag set reads as the script reads it.
_ENDS = {('B', 'B'), ('B', 'O'), ('I', 'B'), ('I', 'O'), ('E', 'E'), ('E', 'I'), ('E', 'O')}
_STARTS = {('B', 'B'), ('I', 'B'), ('O', 'B'), ('O', 'I'), ('E', 'E'), ('E', 'I'), ('O', 'E')}
_NOT_CHUNKS = ('O', '.')


def split_tag(tag: str) -> tuple[str, str]:
  """'B-PER' -> ('B', 'PER'); 'O' -> ('O', ''); the type may hold hyphens."""
  match = re.match(r'^([^-]*)-(.*)$', tag)
  return (match.group(1), match.group(2)) if match else (tag, '')


def chunk_end(prev: str, prev_type: str, tag: str, type_: str) -> bool:
  """Whether a chunk ended at the previous word (conlleval's endOfChunk)."""
  return ((prev, tag) in _ENDS or (prev not in _NOT_CHUNKS and prev_type != type_)
          or prev in ('[', ']'))


def chunk_start(prev: str, prev_type: str, tag: str, type_: str) -> bool:
  """Whether a chunk starts at this word (conlleval's startOfChunk)."""
  return ((prev, tag) in _STARTS or (tag not in _NOT_CHUNKS and prev_type != type_)
          or tag in ('[', ']'))


class EntityCounts:
  """conlleval's counts, added up sentence by sentence."""

  def __init__(self):
    self.correct = collections.Counter()  # chunks right in type and span, by type
    self.gold = collections.Counter()
    self.guessed = collections.Counter()
    self.tokens = 0
    self.correct_tags = 0

  def add(self, gold_tags: Sequence[str], guessed_tags: Sequence[str]) -> EntityCounts:
    """Counts one sentence (conlleval's main loop, then the blank line after it)."""
    if len(gold_tags) != len(guessed_tags):
      raise ValueError(f'{len(gold_tags)} gold tags but {len(guessed_tags)} guessed ones.')
    in_correct = False  # inside a guessed chunk that so far matches a gold one
    last_g, last_gt, last_p, last_pt = 'O', '', 'O', ''
    for gold_tag, guess_tag in zip([*gold_tags, 'O'], [*guessed_tags, 'O']):
      g, gt = split_tag(gold_tag)
      p, pt = split_tag(guess_tag)
      end_g, end_p = chunk_end(last_g, last_gt, g, gt), chunk_end(last_p, last_pt, p, pt)
      start_g, start_p = chunk_start(last_g, last_gt, g, gt), chunk_start(last_p, last_pt, p, pt)
      if in_correct:
        if end_g and end_p and last_pt == last_gt:
          in_correct = False
          self.correct[last_gt] += 1
        elif end_g != end_p or pt != gt:
          in_correct = False
      if start_g and start_p and pt == gt:
        in_correct = True
      if start_g:
        self.gold[gt] += 1
      if start_p:
        self.guessed[pt] += 1
      last_g, last_gt, last_p, last_pt = g, gt, p, pt
    self.tokens += len(gold_tags)
    self.correct_tags += sum(a == b for a, b in zip(gold_tags, guessed_tags))
    return self

  def scores(self) -> dict:
    """precision, recall, f1 (overall and per type, as fractions) and token accuracy."""
    out = {'accuracy': float(metrics.safe_divide(self.correct_tags, self.tokens))}
    types = sorted(set(self.gold) | set(self.guessed))  # '' of untyped chunks: overall only
    for suffix, keys in [('', types)] + [(f'_{t}', [t]) for t in types if t]:
      correct = sum(self.correct[k] for k in keys)
      precision = metrics.safe_divide(correct, sum(self.guessed[k] for k in keys))
      recall = metrics.safe_divide(correct, sum(self.gold[k] for k in keys))
      out.update({f'precision{suffix}': float(precision), f'recall{suffix}': float(recall),
                  f'f1{suffix}': float(metrics.f1_score(precision, recall))})
    out['entities'] = sum(self.gold.values())
    return out


def padded_to(x_BxT, length: int):
  """x cut or zero-padded to `length` on axis 1, so every eval batch's examples stack."""
  x_BxT = x_BxT[:, :length]
  return jnp.pad(x_BxT, ((0, 0), (0, length - x_BxT.shape[1])) + ((0, 0),) * (x_BxT.ndim - 2))


def sentences(examples: dict, key: str):
  """(gold ids, `key` values) of each real sentence, read at the mask's words."""
  for gold_T, value_T, mask_T in zip(examples['label'], examples[key], examples['mask']):
    words = mask_T > 0
    if words.any():  # rows that only fill the last batch have no words
      yield gold_T[words], value_T[words]


class _WordModel(Task):
  """Feeds the model `input_features` beside the words, loads `pretrained_embeddings`, and
  applies `word_dropout` in training."""

  def __init__(self, config: ConfigDict, info: dict):
    super().__init__(config, info)
    self.word_dropout = config.get('word_dropout', 0.0)
    if not 0 <= self.word_dropout < 1:
      raise UserError(f'config.word_dropout={self.word_dropout} must be in [0, 1).')
    self.features = tuple(config.get('input_features', ()))
    for name in self.features:
      if f'num_{name}' not in info:
        known = sorted(k[4:] for k in info if k.startswith('num_') and k != 'num_classes')
        raise UserError(f'config.input_features names {name!r}, which config.dataset='
                        f'{config.dataset!r} does not provide; choose from {known}.')
    self._word_vectors = pretrained.word_vectors(config, info)

  def model_kwargs(self, config, info, fields) -> dict:
    kwargs = super().model_kwargs(config, info, fields)
    if self.features:
      if 'feature_sizes' not in fields:
        raise UserError(f'config.input_features={self.features} needs a model that reads '
                        f'features; config.model.name={config.model.name!r} does not.')
      kwargs['feature_sizes'] = tuple(info[f'num_{name}'] for name in self.features)
    return kwargs

  def init_params(self, params):
    return self._word_vectors(params)

  def model_inputs(self, batch: dict) -> tuple:
    return (batch['inputs'], *(batch[name] for name in self.features))

  def drop_words(self, batch: dict, rng, train: bool) -> tuple[dict, jax.Array]:
    """The batch with training words replaced by UNK at rate `word_dropout`, and a new key.

    So the model learns what to do with the words it never saw.
    """
    if not (train and self.word_dropout):
      return batch, rng
    rng, word_rng = jax.random.split(rng)
    tokens_BxT = batch['inputs']
    drop_BxT = jax.random.bernoulli(word_rng, self.word_dropout, tokens_BxT.shape)
    return {**batch, 'inputs': jnp.where(drop_BxT & (tokens_BxT != PAD), UNK, tokens_BxT)}, rng

  def apply(self, state, params, batch, rng, train: bool):
    return super().apply(state, params, *self.drop_words(batch, rng, train), train)


@register('sentence_classification')
class SentenceClassification(_WordModel, Classification):
  """'classification' with word vectors and token features (module docstring)."""


@register('sequence_tagging')
class SequenceTagging(_WordModel):
  """One tag per word; entity-level precision, recall and F1 (module docstring)."""

  def __init__(self, config: ConfigDict, info: dict):
    super().__init__(config, info)
    if 'class_names' not in info or 'max_len' not in info:
      raise UserError(f'config.task={config.task!r} needs a tagged dataset (conll2003); '
                      f'config.dataset={config.dataset!r} has no tag names.')
    self.tags = list(info['class_names'])
    self.max_len = info['max_len']

  def model_kwargs(self, config, info, fields) -> dict:
    kwargs = super().model_kwargs(config, info, fields)
    kwargs.setdefault('num_outputs', len(self.tags))
    return kwargs

  def loss(self, state, params, batch, rng, train=True):
    logits_BxTxK, model_state = self.apply(state, params, batch, rng, train)
    return self.loss_of(logits_BxTxK, batch, model_state)

  def loss_of(self, logits_BxTxK, batch, model_state):
    mask_BxT = batch['mask']
    loss_sum = jnp.sum(losses.softmax_cross_entropy(logits_BxTxK, batch['label']) * mask_BxT)
    correct = jnp.sum((jnp.argmax(logits_BxTxK, -1) == batch['label']) * mask_BxT)
    sums = {'loss': loss_sum, 'count': jnp.sum(mask_BxT), 'correct': correct}
    return loss_sum, Aux(jnp.sum(mask_BxT), sums, model_state)

  def report(self, sums) -> dict:
    count = max(float(sums['count']), 1.0)
    return {'loss': float(sums['loss']) / count, 'accuracy': float(sums['correct']) / count}

  def eval_batch(self, state, batch) -> EvalOutput:
    logits_BxTxK, model_state = self.apply(state, state.params, batch, None, train=False)
    _, aux = self.loss_of(logits_BxTxK, batch, model_state)
    examples = {'tags': jnp.argmax(logits_BxTxK, -1), 'label': batch['label'],
                'mask': batch['mask']}
    return EvalOutput(aux.sums, jax.tree.map(lambda x: padded_to(x, self.max_len), examples))

  def finalize(self, sums, examples) -> dict:
    counts = EntityCounts()
    for gold_T, guessed_T in sentences(examples, 'tags'):
      counts.add([self.tags[i] for i in gold_T], [self.tags[i] for i in guessed_T])
    return {**self.report(sums), **counts.scores()}

  def predict(self, state, batch) -> dict:
    logits_BxTxK, _ = self.apply(state, state.params, batch, None, train=False)
    return {'tags': jnp.argmax(logits_BxTxK, -1)}


def margin_hinge(true_scores_N, corrupt_scores_NxS, margin: float = 1.0):
  """max(0, margin - s + s_c) for each true score s and each of its S corrupted scores.

  relu's gradient at 0 is 0: a pair exactly at the margin is met and pulls no more.
  """
  return jax.nn.relu(margin - true_scores_N[:, None] + corrupt_scores_NxS)


MARGIN = {'entity': 'LOC', 'num_corrupt': 5, 'margin': 1.0, 'threshold': 0.0,
          'sample': 'corpus'}
SAMPLES = ('vocabulary', 'corpus')


@register('window_margin')
class WindowMargin(SequenceTagging):
  """The max-margin window detector of one entity type (module docstring)."""

  def __init__(self, config: ConfigDict, info: dict):
    super().__init__(config, info)
    given = dict(config.get('margin') or {})
    unknown = sorted(set(given) - set(MARGIN))
    if unknown:
      raise UserError(f'config.margin has fields {unknown}; its fields are {sorted(MARGIN)}.')
    self.options = {**MARGIN, **given}
    if self.options['sample'] not in SAMPLES:
      raise UserError(f"config.margin.sample={self.options['sample']!r} is not one of "
                      f'{list(SAMPLES)}.')
    self.vocab_size = info['vocab_size']
    entity = self.options['entity']
    self.is_entity_K = np.array([split_tag(t)[1] == entity for t in self.tags])
    if not self.is_entity_K.any():
      types = sorted({split_tag(t)[1] for t in self.tags} - {''})
      raise UserError(f'config.margin.entity={entity!r} is not an entity type of '
                      f'{config.dataset}; choose one of {types}.')

  def model_kwargs(self, config, info, fields) -> dict:
    if config.model.name != 'window_ner':  # the model that scores corrupted windows
      raise UserError(f"config.task='window_margin' needs config.model.name='window_ner', "
                      f'not {config.model.name!r}.')
    kwargs = super().model_kwargs(config, info, fields)
    kwargs['num_outputs'] = 1  # one score per window
    return kwargs

  def scores(self, state, params, batch, rng, train: bool):
    """s of every window [B, T], of its S corrupted copies [B, T, S], and the model state."""
    tokens_BxT, mask_BxT = jnp.asarray(batch['inputs']), batch['mask']
    inputs, rng = self.drop_words(batch, rng, train)
    dropout_rng, corrupt_rng = (jax.random.split(rng) if rng is not None
                                else (None, jax.random.key(0)))  # eval: fixed corruptions
    shape = (*tokens_BxT.shape, self.options['num_corrupt'])
    if self.options['sample'] == 'vocabulary':  # every word alike, special tokens not
      centres_BxTxS = jax.random.randint(corrupt_rng, shape, len(SPECIALS), self.vocab_size)
    else:  # the words of the batch: a word as often as the corpus uses it
      real_N = mask_BxT.reshape(-1) > 0
      real_first_N = jnp.argsort(~real_N, stable=True)  # the real words' positions first
      centres_BxTxS = tokens_BxT.reshape(-1)[real_first_N[jax.random.randint(
          corrupt_rng, shape, 0, jnp.maximum(jnp.sum(real_N), 1))]]
    out = state.apply_fn(
        state.variables(params), *self.model_inputs(inputs),
        centres_BxTxS=centres_BxTxS, train=train,
        rngs={'dropout': dropout_rng} if train else None,
        mutable=list(state.model_state) if train else False)
    (true_BxTx1, corrupt_BxTxSx1), model_state = out if train else (out, state.model_state)
    return true_BxTx1[..., 0], corrupt_BxTxSx1[..., 0], model_state

  def loss(self, state, params, batch, rng, train=True):
    return self.loss_of(self.scores(state, params, batch, rng, train), batch)

  def loss_of(self, scores, batch):
    true_BxT, corrupt_BxTxS, model_state = scores
    num_corrupt = corrupt_BxTxS.shape[-1]
    positive_N = (batch['mask'] * jnp.asarray(self.is_entity_K)[batch['label']]).reshape(-1)
    hinge_NxS = margin_hinge(true_BxT.reshape(-1), corrupt_BxTxS.reshape(-1, num_corrupt),
                             self.options['margin'])
    loss_sum = jnp.sum(hinge_NxS.sum(axis=1) * positive_N)
    met = jnp.sum((hinge_NxS == 0) * positive_N[:, None]) / num_corrupt
    sums = {'loss': loss_sum, 'count': jnp.sum(positive_N), 'correct': met}
    return loss_sum, Aux(jnp.sum(positive_N), sums, model_state)

  def report(self, sums) -> dict:
    out = super().report(sums)
    out['margin_met'] = out.pop('accuracy')  # the fraction of (true, corrupted) pairs apart
    return out

  def eval_batch(self, state, batch) -> EvalOutput:
    scores = self.scores(state, state.params, batch, None, train=False)
    _, aux = self.loss_of(scores, batch)
    examples = {'scores': scores[0], 'label': batch['label'], 'mask': batch['mask']}
    return EvalOutput(aux.sums, jax.tree.map(lambda x: padded_to(x, self.max_len), examples))

  def detection_scores(self, examples, threshold: float) -> dict:
    """conlleval's scores of the runs of words scoring above `threshold`."""
    counts = EntityCounts()
    for gold_T, scores_T in sentences(examples, 'scores'):
      gold = [self.tags[i] if self.is_entity_K[i] else 'O' for i in gold_T]
      counts.add(gold, [f'I-{self.options["entity"]}' if s > threshold else 'O'
                        for s in scores_T])
    return counts.scores()

  def finalize(self, sums, examples) -> dict:
    scores = self.detection_scores(examples, self.options['threshold'])
    out = {**self.report(sums),
           **{k: scores[k] for k in ('precision', 'recall', 'f1', 'accuracy', 'entities')}}
    # The split's own best threshold among quantiles of its scores and the configured one
    # (so best_f1 >= f1): an oracle, to choose margin.threshold on the eval split.
    real_scores = examples['scores'][examples['mask'] > 0]
    candidates = np.append(np.quantile(real_scores, np.linspace(0.8, 0.995, 40)),
                           self.options['threshold'])
    best = max(candidates, key=lambda t: self.detection_scores(examples, t)['f1'])
    out.update(best_threshold=float(best),
               best_f1=self.detection_scores(examples, best)['f1'])
    return out

  def predict(self, state, batch) -> dict:
    scores_BxTx1, _ = self.apply(state, state.params, batch, None, train=False)
    return {'score': scores_BxTx1[..., 0],
            'detected': scores_BxTx1[..., 0] > self.options['threshold']}

"""Extractive question answering: the answer is a span of the context (BERT, head 'span').

The model scores every position t of [CLS] question [SEP] context [SEP] as an answer's
start (s_t) and as its end (e_t) (nets/bert.py). Only the context's tokens C (segment 1,
not [SEP] or padding) can answer, so both softmaxes run over C alone:

    p_start(i) = exp(s_i) / sum_{t in C} exp(s_t),   p_end(j) likewise from e
    loss = -log p_start(a) - log p_end(b)            (a, b: the gold first and last sub-word)

summed over the batch's questions (the engine divides by their number). Decoding takes
the best span no longer than L = config.max_answer_len (30) sub-words,

    (i, j) = argmax_{i, j in C, i <= j < i + L} s_i + e_j     (nets.bert.best_spans)

and each question scores, over SUB-WORD POSITIONS (not words, not characters),

    exact_match = [i = a and j = b],   f1 = 2 |P & G| / (|P| + |G|)

with P = {i..j} and G = {a..b}: SQuAD's token-overlap F1, 2 precision recall /
(precision + recall), with the pieces as tokens. Both are means over the split's
questions, and per question type as exact_match_<TYPE> and f1_<TYPE> where the dataset
names its types (conll_qa: PER, LOC, ORG, MISC). An answer a model could never produce
(cut off by max_len) scores 0 on both and adds nothing to the loss.

`predict` returns each input's best span: `start` and `end`, positions in `inputs`.
"""

import jax
import jax.numpy as jnp
from ml_collections import ConfigDict

from nets.bert import best_spans
from train import losses
from train.data.tokenizers import PAD, SEP
from train.errors import UserError
from train.tasks import Aux, Task, register

_MASKED = -1e9  # the logit of a position outside the context: exp() of it is exactly 0


def context_positions(tokens_BxT, segments_BxT):
  """Where an answer may lie: the second segment's tokens, [SEP] and padding excluded."""
  return (segments_BxT == 1) & (tokens_BxT != PAD) & (tokens_BxT != SEP)


def span_scores(start_B, end_B, gold_start_B, gold_end_B):
  """(exact_match, f1) of each predicted span [start, end] against the gold one."""
  exact_B = (start_B == gold_start_B) & (end_B == gold_end_B)
  overlap_B = jnp.maximum(jnp.minimum(end_B, gold_end_B) - jnp.maximum(start_B, gold_start_B)
                          + 1, 0)
  sizes_B = (end_B - start_B + 1) + (gold_end_B - gold_start_B + 1)
  return exact_B.astype(jnp.float32), 2.0 * overlap_B / sizes_B


@register('span_extraction')
class SpanExtraction(Task):
  """Start and end of the answer in the context (module docstring)."""

  def __init__(self, config: ConfigDict, info: dict):
    super().__init__(config, info)
    if 'question_types' not in info:
      raise UserError(f'config.task={config.task!r} needs an extractive question-answering '
                      f'dataset (conll_qa); config.dataset={config.dataset!r} has no answers.')
    self.types = list(info['question_types'])
    self.max_answer_len = config.get('max_answer_len', 30)
    if not (isinstance(self.max_answer_len, int) and self.max_answer_len >= 1):
      raise UserError(f'config.max_answer_len={self.max_answer_len!r} must be a positive '
                      'integer (the longest answer, in sub-words), e.g. 30.')

  def model_kwargs(self, config, info, fields) -> dict:
    if config.model.get('head') != 'span':
      raise UserError(f'config.task={config.task!r} needs a model with a span head: '
                      f"config.model.name='bert' and config.model.head='span', not "
                      f'{config.model.name!r} with head {config.model.get("head")!r}.')
    return super().model_kwargs(config, info, fields)

  def model_inputs(self, batch: dict) -> tuple:
    return (batch['inputs'], batch['segments'])

  def loss(self, state, params, batch, rng, train=True):
    (start_BxT, end_BxT), model_state = self.apply(state, params, batch, rng, train)
    return self.loss_of(start_BxT, end_BxT, batch, model_state)

  def spans(self, start_BxT, end_BxT, batch):
    """The best span of each example, within its context."""
    context_BxT = context_positions(batch['inputs'], batch['segments'])
    return best_spans(start_BxT, end_BxT, context_BxT, self.max_answer_len)

  def loss_of(self, start_BxT, end_BxT, batch, model_state=None):
    """The loss sum and Aux of start and end logits against the gold spans."""
    context_BxT = context_positions(batch['inputs'], batch['segments'])
    masked = lambda logits_BxT: jnp.where(context_BxT, logits_BxT.astype(jnp.float32), _MASKED)
    loss_B = (losses.softmax_cross_entropy(masked(start_BxT), batch['start'])
              + losses.softmax_cross_entropy(masked(end_BxT), batch['end']))
    weight_B = batch['mask']
    exact_B, f1_B = span_scores(*self.spans(start_BxT, end_BxT, batch),
                                batch['start'], batch['end'])
    by_type_BxK = jax.nn.one_hot(batch['question'], len(self.types)) * weight_B[:, None]
    loss_sum = jnp.sum(loss_B * weight_B)
    sums = {'loss': loss_sum, 'count': jnp.sum(weight_B),
            'exact': jnp.sum(exact_B * weight_B), 'f1': jnp.sum(f1_B * weight_B),
            'count_by_type': jnp.sum(by_type_BxK, axis=0),
            'exact_by_type': exact_B @ by_type_BxK, 'f1_by_type': f1_B @ by_type_BxK}
    return loss_sum, Aux(jnp.sum(weight_B), sums, model_state)

  def report(self, sums) -> dict:
    count = max(float(sums['count']), 1.0)
    out = {'loss': float(sums['loss']) / count, 'exact_match': float(sums['exact']) / count,
           'f1': float(sums['f1']) / count, 'questions': int(sums['count'])}
    for k, name in enumerate(self.types):
      n = max(float(sums['count_by_type'][k]), 1.0)
      out[f'exact_match_{name}'] = float(sums['exact_by_type'][k]) / n
      out[f'f1_{name}'] = float(sums['f1_by_type'][k]) / n
    return out

  def predict(self, state, batch) -> dict:
    (start_BxT, end_BxT), _ = self.apply(state, state.params, batch, None, train=False)
    start_B, end_B = self.spans(start_BxT, end_BxT, batch)
    return {'start': start_B, 'end': end_B}

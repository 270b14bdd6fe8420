"""Sequence-to-sequence tasks: translation and the generated tasks (reverse, sort, addition).

A batch holds `inputs` int32[B, S], `targets` int32[B, T] (the output sequence, EOS
included, then PAD 0) and `mask` float32[B, T] (1 on the target tokens). Training is
teacher forcing: the decoder reads the gold prefix shifted right behind BOS,

    targets_in = [BOS, y_1, ..., y_{T-1}],   loss = -sum_{t: mask_t = 1} log p(y_t | y_<t, x)

(with label smoothing eps the target distribution is (1 - eps) one_hot(y_t) + eps / V).

Scheduled sampling (Bengio et al. 2015) feeds the model its own predictions instead of
the gold tokens, more often as training goes on. At step i each decoder input is the gold
token with probability e_i and otherwise the model's prediction, with e_i

    linear            max(min_teacher, 1 - i / decay_steps)
    exponential       max(min_teacher, k^i)              (k < 1)
    inverse_sigmoid   k / (k + exp(i / k))               (k >= 1)

The predictions come from a first, teacher-forced pass without gradient (the two-pass form
of Duckworth et al. 2019 and Mihaylova & Martins 2019), which serves an RNN decoder and a
Transformer alike; Bengio et al. sample inside the recurrence, which a Transformer cannot.

Evaluation decodes every source inside jit, greedily or by beam search (train/decoding.py,
GNMT length penalty), and the host scores the decoded sentences: corpus BLEU as sacreBLEU
computes it (train/bleu.py, on the detokenized text of hypotheses and gold targets) and
exact match (the whole sequence up to EOS right). With beam search, greedy decoding is
scored too (`greedy_bleu`, `greedy_exact_match`).

A model is seen through three methods (nets/transformer.py and nets/rnn_seq2seq.py):

    __call__(inputs_BxS, targets_in_BxT, *, train) -> logits_BxTxV     (teacher forcing)
    start_decoding(inputs_BxS) -> memory      a pytree with a leading batch axis per leaf
    decode_step(memory, tokens_BxT) -> logits_BxTxV, continuing from the 'cache' collection

The cache is made by `jax.eval_shape` of a decode_step over max_len tokens with every leaf
then set to zero, so a zero cache must mean "nothing decoded yet". Beam search reorders the
memory and the cache along their batch axis.

config fields (optional): `decoding` {method: 'greedy' | 'beam', beam_size (4),
length_penalty (0.6), max_len (the dataset's target length), bleu (True; False for
symbol tasks, where exact match is the measure)}; `scheduled_sampling`
{schedule: 'none' | 'linear' | 'exponential' | 'inverse_sigmoid', decay_steps, k,
min_teacher (0.0)}; `label_smoothing`.

'nat_seq2seq' trains the non-autoregressive Transformer: the cross-entropy of every target
token given the target length, plus that of the length itself (EOS included) from the
length classifier; it decodes by predicting the length, then every token at once.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from ml_collections import ConfigDict

from train import bleu, decoding, losses
from train.errors import UserError
from train.tasks import Aux, EvalOutput, Task, register

DECODING = {'method': 'greedy', 'beam_size': 4, 'length_penalty': 0.6, 'max_len': None,
            'bleu': True}
SCHEDULED_SAMPLING = {'schedule': 'none', 'decay_steps': 10_000, 'k': 0.9999,
                      'min_teacher': 0.0}
SCHEDULES = ('none', 'linear', 'exponential', 'inverse_sigmoid')


def _fields(config: ConfigDict, name: str, defaults: dict) -> dict:
  given = dict(config.get(name) or {})
  unknown = sorted(set(given) - set(defaults))
  if unknown:
    raise UserError(f'config.{name} has fields {unknown}; its fields are {sorted(defaults)}.')
  return {**defaults, **given}


def teacher_probability(schedule: str, step, decay_steps: int, k: float, min_teacher: float):
  """e_i, the probability of feeding the gold token at training step i (docstring)."""
  step = jnp.asarray(step, jnp.float32)
  if schedule == 'none':
    return jnp.ones([], jnp.float32)
  if schedule == 'linear':
    return jnp.maximum(min_teacher, 1.0 - step / decay_steps)
  if schedule == 'exponential':
    return jnp.maximum(min_teacher, jnp.asarray(k, jnp.float32) ** step)
  return k / (k + jnp.exp(jnp.minimum(step / k, 80.0)))


def shift_right(targets_BxT, bos_id: int):
  """[BOS, y_1, ..., y_{T-1}]: what the decoder reads at each position."""
  bos_Bx1 = jnp.full((targets_BxT.shape[0], 1), bos_id, targets_BxT.dtype)
  return jnp.concatenate([bos_Bx1, targets_BxT[:, :-1]], axis=1)


def until_eos(tokens, eos_id: int) -> list[int]:
  """The tokens before the first EOS (or PAD)."""
  out = []
  for t in tokens:
    if t == eos_id or t == 0:
      break
    out.append(int(t))
  return out


@register('seq2seq')
class Seq2Seq(Task):
  """Encoder-decoder training with teacher forcing; decoding and BLEU at evaluation."""

  def __init__(self, config: ConfigDict, info: dict):
    super().__init__(config, info)
    missing = [k for k in ('vocab_size', 'bos_id', 'eos_id', 'tokenizer') if k not in info]
    if missing:
      raise UserError(f'config.task={config.task!r} needs a sequence-to-sequence dataset '
                      f'(its info lacks {missing}); config.dataset={config.dataset!r} is not '
                      'one; choose multi30k, reverse, sort, addition, ...')
    self.bos_id, self.eos_id = info['bos_id'], info['eos_id']
    self.tokenizer = info['tokenizer']
    self.label_smoothing = config.get('label_smoothing', 0.0)
    self.decoding = _fields(config, 'decoding', DECODING)
    if self.decoding['method'] not in ('greedy', 'beam'):
      raise UserError(f"config.decoding.method={self.decoding['method']!r} is not one of "
                      "['beam', 'greedy'].")
    self.sampling = _fields(config, 'scheduled_sampling', SCHEDULED_SAMPLING)
    if self.sampling['schedule'] not in SCHEDULES:
      raise UserError(f"config.scheduled_sampling.schedule={self.sampling['schedule']!r} is "
                      f'not one of {list(SCHEDULES)}.')
    self.max_decode_len = (self.decoding['max_len'] or info.get('target_len')
                           or info['max_len'])

  def model_kwargs(self, config, info, fields) -> dict:
    kwargs = super().model_kwargs(config, info, fields)
    if 'max_len' in fields and 'max_len' not in config.model:
      # the positions, and the length classes 0..L, the model must cover
      kwargs['max_len'] = max(info.get('max_len', 0), self.max_decode_len) + 1
    return kwargs

  def model_inputs(self, batch: dict) -> tuple:
    targets_in = batch.get('targets_in')
    if targets_in is None:
      targets_in = shift_right(batch['targets'], self.bos_id)
    return (batch['inputs'], targets_in)

  def _scheduled_inputs(self, state, params, batch, rng):
    """targets_in with each gold token replaced by the model's prediction w.p. 1 - e_i."""
    first_rng, coin_rng, rng = jax.random.split(rng, 3)
    logits, _ = self.apply(state, params, batch, first_rng, True)
    predicted_BxT = jnp.argmax(jax.lax.stop_gradient(logits), axis=-1).astype(jnp.int32)
    s = self.sampling
    teacher = teacher_probability(s['schedule'], state.step, s['decay_steps'], s['k'],
                                  s['min_teacher'])
    use_gold_BxT = jax.random.bernoulli(coin_rng, teacher, predicted_BxT.shape)
    mixed_BxT = jnp.where(use_gold_BxT, batch['targets'], predicted_BxT)
    return {**batch, 'targets_in': shift_right(mixed_BxT, self.bos_id)}, rng, teacher

  def loss(self, state, params, batch, rng, train=True):
    extra = {}
    if train and self.sampling['schedule'] != 'none':
      batch, rng, extra['teacher_probability'] = self._scheduled_inputs(state, params,
                                                                        batch, rng)
    logits_BxTxV, model_state = self.apply(state, params, batch, rng, train)
    return self._token_loss(logits_BxTxV, batch, model_state, extra)

  def _token_loss(self, logits_BxTxV, batch, model_state, extra=None):
    mask_BxT = batch['mask']
    loss_BxT = losses.softmax_cross_entropy(logits_BxTxV, batch['targets'],
                                            self.label_smoothing)
    loss_sum = jnp.sum(loss_BxT * mask_BxT)
    correct = (jnp.argmax(logits_BxTxV, -1) == batch['targets']) * mask_BxT
    sums = {'loss': loss_sum, 'count': jnp.sum(mask_BxT), 'correct': jnp.sum(correct)}
    if extra:  # per-batch values, summed as value x count
      sums.update({k: v * jnp.sum(mask_BxT) for k, v in extra.items()})
    return loss_sum, Aux(jnp.sum(mask_BxT), sums, model_state)

  def report(self, sums) -> dict:
    count = max(float(sums['count']), 1.0)
    out = {'loss': float(sums['loss']) / count,
           'token_accuracy': float(sums['correct']) / count}
    out.update({k: float(v) / count for k, v in sums.items()
                if k not in ('loss', 'count', 'correct')})
    return out

  # Decoding.

  def decode(self, state, inputs_BxS, method: str) -> jax.Array:
    """tokens_BxT decoded from each source (T = max decode length, PAD after EOS)."""
    variables = state.variables()
    apply = state.apply_fn
    memory = apply(variables, inputs_BxS, method='start_decoding')
    batch = inputs_BxS.shape[0]
    empty_BxT = jnp.zeros((batch, self.max_decode_len), jnp.int32)
    shapes = jax.eval_shape(lambda: apply(variables, memory, empty_BxT, method='decode_step',
                                          mutable=['cache'])[1]['cache'])
    cache = {'memory': memory, 'cache': jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype),
                                                    shapes)}

    def step_fn(tokens_B, cache, step):
      del step  # the model keeps its own position in the cache
      logits_Bx1xV, mutated = apply({**variables, 'cache': cache['cache']}, cache['memory'],
                                    tokens_B[:, None], method='decode_step', mutable=['cache'])
      return logits_Bx1xV[:, 0], {'memory': cache['memory'], 'cache': mutated['cache']}

    if method == 'beam':
      tokens_BxT, _ = decoding.beam_search(
          step_fn, cache, self.bos_id, self.eos_id, self.max_decode_len, batch,
          self.decoding['beam_size'], self.decoding['length_penalty'])
      return tokens_BxT
    return decoding.greedy(step_fn, cache, self.bos_id, self.eos_id, self.max_decode_len,
                           batch)

  def eval_batch(self, state, batch) -> EvalOutput:
    _, aux = self.loss(state, state.params, batch, None, train=False)
    examples = {'targets': batch['targets'], 'real': jnp.sum(batch['mask'], axis=1) > 0,
                'decoded': self.decode(state, batch['inputs'], self.decoding['method'])}
    if self.decoding['method'] == 'beam':
      examples['greedy'] = self.decode(state, batch['inputs'], 'greedy')
    return EvalOutput(aux.sums, examples)

  def predict(self, state, batch) -> dict:
    return {'tokens': self.decode(state, batch['inputs'], self.decoding['method'])}

  def finalize(self, sums, examples) -> dict:
    out = self.report(sums)
    real = np.asarray(examples['real'])
    references = [until_eos(t, self.eos_id) for t in np.asarray(examples['targets'])[real]]
    for key, prefix in (('decoded', ''), ('greedy', 'greedy_')):
      if key in examples:
        out.update({prefix + k: v for k, v in self.score(
            np.asarray(examples[key])[real], references).items()})
    return out

  def score(self, decoded_NxT, references: list[list[int]]) -> dict:
    """Corpus BLEU and exact match of decoded sequences against the gold ones."""
    hypotheses = [until_eos(t, self.eos_id) for t in decoded_NxT]
    exact = float(np.mean([h == r for h, r in zip(hypotheses, references)]))
    if not self.decoding['bleu']:
      return {'exact_match': exact}
    corpus = bleu.corpus_bleu([self.tokenizer.decode(h) for h in hypotheses],
                              [self.tokenizer.decode(r) for r in references])
    return {'bleu': corpus['bleu'], 'exact_match': exact}


@register('nat_seq2seq')
class NonAutoregressiveSeq2Seq(Seq2Seq):
  """The non-autoregressive Transformer: length, then all tokens at once (docstring)."""

  def model_inputs(self, batch: dict) -> tuple:
    return (batch['inputs'], batch['mask'] > 0)

  def loss(self, state, params, batch, rng, train=True):
    (logits_BxTxV, length_logits_BxL), model_state = self.apply(state, params, batch, rng,
                                                                train)
    loss_sum, aux = self._token_loss(logits_BxTxV, batch, model_state)
    real_B = (jnp.sum(batch['mask'], axis=1) > 0).astype(jnp.float32)
    length_B = jnp.sum(batch['mask'], axis=1).astype(jnp.int32)
    length_loss_B = losses.softmax_cross_entropy(length_logits_BxL, length_B)
    length_right_B = jnp.argmax(length_logits_BxL, -1) == length_B
    sums = {**aux.sums, 'length_loss': jnp.sum(length_loss_B * real_B),
            'length_correct': jnp.sum(length_right_B * real_B), 'sentences': jnp.sum(real_B)}
    # The length loss is a per-sentence term; it joins the token loss sum as it is.
    return loss_sum + sums['length_loss'], Aux(aux.weight, sums, model_state)

  def report(self, sums) -> dict:
    sentences = max(float(sums['sentences']), 1.0)
    core = {k: v for k, v in sums.items()
            if k not in ('length_loss', 'length_correct', 'sentences')}
    return {**super().report(core),
            'length_loss': float(sums['length_loss']) / sentences,
            'length_accuracy': float(sums['length_correct']) / sentences}

  def decode(self, state, inputs_BxS, method: str) -> jax.Array:
    del method  # one pass: there is no search
    variables = state.variables()
    length = self.max_decode_len
    all_BxT = jnp.ones((inputs_BxS.shape[0], length), bool)
    _, length_logits_BxL = state.apply_fn(variables, inputs_BxS, all_BxT)
    length_B = jnp.clip(jnp.argmax(length_logits_BxL, -1), 1, length)
    keep_BxT = jnp.arange(length)[None, :] < length_B[:, None]
    logits_BxTxV, _ = state.apply_fn(variables, inputs_BxS, keep_BxT)
    return jnp.where(keep_BxT, jnp.argmax(logits_BxTxV, -1), 0).astype(jnp.int32)


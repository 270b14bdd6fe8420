"""Language modelling: predict every next token of a window (GPT, character RNNs).

    loss = -(1/N) sum_{t : mask_t = 1} log p(w_{t+1} | w_<=t)      (nats per token)

reported with its perplexity exp(loss), bits per token loss / ln 2 (bits per character
for a character model) and next-token accuracy. Batches hold `inputs` and `targets`
[B, L] (targets = inputs shifted by one) and a per-token `mask` [B, L].

Carried state (`config.data.carry_state`, recurrent models such as nets/rnn_lm.py):
training batches are row-contiguous (row b of batch k+1 continues row b of batch k;
train/data/text_pipeline.StreamSource) and the model reads each row's initial state from,
and writes its final state to, the collection 'carry', which is then training state
(checkpointed with the parameters). Rows whose batch `reset` is 1, an epoch's first
windows, start from zeros. Gradients stop at the window boundary: truncated
backpropagation through time over windows of seq_len tokens. Evaluation windows are
independent and each starts from zeros (config.data.eval_seq_len can make them longer).

Samples (`config.samples.length` > 0, recurrent models): every evaluation also continues
each window of the split by `length` tokens drawn at `temperature` with train/generate.py
(key: config.seed), and prints the first `count` continuations.
"""

import math
import types

import jax
import jax.numpy as jnp

from train import generate, losses
from train.errors import UserError
from train.tasks import Aux, EvalOutput, Task, register


@register('language_model')
class LanguageModel(Task):

  def __init__(self, config, info):
    super().__init__(config, info)
    self.carry_state = bool(config.data.get('carry_state', False))
    if self.carry_state:
      if config.parallel_mode == 'pmap':
        # The pmap step averages model_state across replicas: right for batch-norm
        # statistics, wrong for one state per row.
        raise UserError("config.data.carry_state=True needs config.parallel_mode='mesh'; "
                        'pmap would average the carried states of different rows.')
      self.state_collections = ('carry',)
    samples = config.get('samples') or {}
    self.sample_length = samples.get('length', 0)
    self.sample_count = samples.get('count', 1)
    self.sample_temperature = samples.get('temperature', 1.0)

  def model_kwargs(self, config, info, fields) -> dict:
    kwargs = super().model_kwargs(config, info, fields)
    if 'max_len' in fields and 'seq_len' in info:
      kwargs.setdefault('max_len', info['seq_len'])  # positions the model must cover
    if self.carry_state:
      if 'carry_batch_size' not in fields:
        raise UserError(f'config.data.carry_state=True carries a recurrent state from window '
                        f'to window, which config.model.name={config.model.name!r} has not; '
                        "use a recurrent model ('rnn_lm') or set it False.")
      kwargs['carry_batch_size'] = config.batch_size  # the rows each training step sees
    if self.sample_length and 'max_len' in fields:
      raise UserError(f'config.samples.length={self.sample_length} continues whole evaluation '
                      f'windows, past the positions config.model.name={config.model.name!r} '
                      'has; set it to 0 (sample with train/generate.py instead).')
    return kwargs

  def apply(self, state, params, batch, rng, train: bool):
    if train and self.carry_state:  # the rows that start a stream start from zeros
      reset_B = batch['reset'] > 0
      carry = jax.tree.map(
          lambda s: jnp.where(reset_B.reshape((-1,) + (1,) * (s.ndim - 1)), 0, s),
          state.model_state['carry'])
      state = state.replace(model_state={**state.model_state, 'carry': carry})
    return super().apply(state, params, batch, rng, train)

  def loss(self, state, params, batch, rng, train=True):
    logits_BxLxV, model_state = self.apply(state, params, batch, rng, train)
    mask_BxL = batch['mask']
    nll_BxL = losses.softmax_cross_entropy(logits_BxLxV, batch['targets'])
    loss_sum = jnp.sum(nll_BxL * mask_BxL)
    correct = jnp.sum((jnp.argmax(logits_BxLxV, -1) == batch['targets']) * mask_BxL)
    sums = {'loss': loss_sum, 'count': jnp.sum(mask_BxL), 'correct': correct}
    return loss_sum, Aux(jnp.sum(mask_BxL), sums, model_state)

  def report(self, sums) -> dict:
    count = max(float(sums['count']), 1.0)
    loss = float(sums['loss']) / count
    return {'loss': loss, 'perplexity': math.exp(min(loss, 700.0)),
            'bits_per_token': loss / math.log(2), 'accuracy': float(sums['correct']) / count}

  def eval_batch(self, state, batch) -> EvalOutput:
    out = super().eval_batch(state, batch)
    if not self.sample_length:
      return out
    model = types.SimpleNamespace(apply=state.apply_fn)  # all that generate() calls
    tokens_BxN = generate.generate(model, state.params, batch['inputs'],
                                   jax.random.key(self.config.seed), self.sample_length,
                                   temperature=self.sample_temperature)
    return out._replace(examples={'sample': tokens_BxN, 'real': batch['mask'][:, 0]})

  def finalize(self, sums, examples) -> dict:
    if examples is not None:
      tokenizer = self.info['tokenizer']
      for i, ids in enumerate(examples['sample'][examples['real'] > 0][:self.sample_count]):
        print(f'--- sample {i + 1}: what follows evaluation window {i + 1} ---\n'
              f'{tokenizer.decode(ids.tolist())}', flush=True)
    return self.report(sums)

  def predict(self, state, batch) -> dict:
    logits_BxLxV, _ = self.apply(state, state.params, batch, None, train=False)
    return {'next_token': jnp.argmax(logits_BxLxV[:, -1], axis=-1)}

"""Language modelling: predict every next token of a window (GPT, character RNNs).

    loss = -(1/N) sum_{t : mask_t = 1} log p(w_{t+1} | w_<=t)      (nats per token)

reported with its perplexity exp(loss), bits per token loss / ln 2 (bits per character
for a character model) and next-token accuracy. Batches hold `inputs` and `targets`
[B, L] (targets = inputs shifted by one) and a per-token `mask` [B, L].
"""

import math

import jax.numpy as jnp

from train import losses
from train.tasks import Aux, Task, register


@register('language_model')
class LanguageModel(Task):

  def model_kwargs(self, config, info, fields) -> dict:
    kwargs = super().model_kwargs(config, info, fields)
    if 'max_len' in fields and 'seq_len' in info:
      kwargs.setdefault('max_len', info['seq_len'])  # positions the model must cover
    return kwargs

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

  def predict(self, state, batch) -> dict:
    logits_BxLxV, _ = self.apply(state, state.params, batch, None, train=False)
    return {'next_token': jnp.argmax(logits_BxLxV[:, -1], axis=-1)}

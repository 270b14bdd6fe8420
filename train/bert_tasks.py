"""BERT pre-training: masked language modelling plus a segment-pair objective.

The data (train/data/bert_pretraining.py) lists the chosen pieces (`mlm_positions`) and gives
each example a pair label (next-sentence or sentence-order prediction). Per example b,

    L_b = (1 / |M_b|) sum_{t in M_b} -log p(w_t | x~)  +  -log p(pair_b | x~)

(M_b its chosen pieces, x~ the masked input; the pair term is dropped when
config.data.pair_task='none'), and the loss is the mean of L_b over examples: a mean of
per-example terms, so it is exact however the batch is sharded. Reported: `loss`,
`mlm_loss` (nats per chosen piece over the split) and `mlm_accuracy`, and for a pair task
`pair_loss` and `pair_accuracy`.
"""

import jax
import jax.numpy as jnp
import optax
from ml_collections import ConfigDict

from train.errors import UserError
from train.tasks import Aux, Task, register


@register('bert_pretraining')
class BertPretraining(Task):

  def __init__(self, config: ConfigDict, info: dict):
    super().__init__(config, info)
    if 'pair_task' not in info:
      raise UserError("config.task='bert_pretraining' needs config.dataset='bert_corpus' "
                      f'(masked segment pairs), not {config.dataset!r}.')
    self.pair_task = info['pair_task']

  def model_kwargs(self, config, info, fields) -> dict:
    if config.model.name != 'bert' or config.model.get('head', 'pretraining') != 'pretraining':
      raise UserError("config.task='bert_pretraining' needs config.model.name='bert' with "
                      "config.model.head='pretraining'.")
    return {**super().model_kwargs(config, info, fields), 'head': 'pretraining'}

  def model_inputs(self, batch: dict) -> tuple:
    return batch['inputs'], batch['segments'], batch['mlm_positions']

  def loss(self, state, params, batch, rng, train=True):
    (mlm_logits_BxPxV, pair_logits_Bx2), model_state = self.apply(state, params, batch, rng,
                                                                   train)
    chosen_BxP, mask_B = batch['mlm_weights'], batch['mask']
    token_nll_BxP = optax.softmax_cross_entropy_with_integer_labels(
        mlm_logits_BxPxV.astype(jnp.float32), batch['mlm_targets']) * chosen_BxP
    count_B = jnp.sum(chosen_BxP, axis=1)
    per_example_B = jnp.sum(token_nll_BxP, axis=1) / jnp.maximum(count_B, 1.0)
    correct_BxP = (jnp.argmax(mlm_logits_BxPxV, -1) == batch['mlm_targets']) * chosen_BxP
    sums = {'count': jnp.sum(mask_B),
            'mlm_loss': jnp.sum(token_nll_BxP * mask_B[:, None]),
            'mlm_correct': jnp.sum(correct_BxP * mask_B[:, None]),
            'mlm_count': jnp.sum(count_B * mask_B)}
    if self.pair_task != 'none':
      pair_nll_B = optax.softmax_cross_entropy_with_integer_labels(
          pair_logits_Bx2.astype(jnp.float32), batch['pair_label'])
      per_example_B = per_example_B + pair_nll_B
      sums['pair_loss'] = jnp.sum(pair_nll_B * mask_B)
      sums['pair_correct'] = jnp.sum(
          (jnp.argmax(pair_logits_Bx2, -1) == batch['pair_label']) * mask_B)
    loss_sum = jnp.sum(per_example_B * mask_B)
    sums['loss'] = loss_sum
    return loss_sum, Aux(jnp.sum(mask_B), sums, model_state)

  def report(self, sums) -> dict:
    sums = jax.tree.map(float, sums)
    examples, pieces = max(sums['count'], 1.0), max(sums['mlm_count'], 1.0)
    out = {'loss': sums['loss'] / examples, 'mlm_loss': sums['mlm_loss'] / pieces,
           'mlm_accuracy': sums['mlm_correct'] / pieces}
    if 'pair_loss' in sums:
      out.update(pair_loss=sums['pair_loss'] / examples,
                 pair_accuracy=sums['pair_correct'] / examples)
    return out

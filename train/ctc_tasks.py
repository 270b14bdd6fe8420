"""CTC recognition: an unsegmented label sequence read from per-frame scores (train/ctc.py).

    loss = (1/B) sum_b -log p(y_b | x_b),   p(y | x) = sum_{pi : B(pi) = y} prod_t p(pi_t | x)

in nats per sequence. The model returns per-frame logits [B, T, K] (class 0 the blank) and
the mask of its real frames [B, T]; a batch holds `labels` [B, N] (ids 1..K-1, 0-padded)
and `label_mask` [B, N]. Evaluation decodes every sequence of the split and scores it on
the host against its labels:

  best path (greedy):                 sequence_accuracy, cer
  prefix beam search (beam_size > 0): beam_sequence_accuracy, beam_cer

sequence accuracy = fraction of sequences decoded exactly; cer = sum of edit distances /
sum of reference lengths. config.decoding.beam_size (default 8; 0 = greedy only) sets the
beam; the search runs in Python on the host (about 12 ms a 32-frame sequence with 11
classes), and on every evaluation, so keep eval splits small.
"""

import jax.numpy as jnp

from train import ctc
from train.errors import UserError
from train.tasks import Aux, EvalOutput, Task, register


@register('ctc')
class CTC(Task):

  def __init__(self, config, info):
    super().__init__(config, info)
    decoding = config.get('decoding') or {}
    self.beam_size = decoding.get('beam_size', 8)
    if not isinstance(self.beam_size, int) or self.beam_size < 0:
      raise UserError(f'config.decoding.beam_size={self.beam_size!r} must be an integer >= 0 '
                      '(0 decodes greedily only).')

  def model_inputs(self, batch: dict) -> tuple:
    x = batch['inputs']
    width_B = batch.get('width')
    if width_B is None:  # an image read from a file (experiments/predict.py) is read whole
      width_B = jnp.full(x.shape[:1], x.shape[2], jnp.int32)
    return (x, width_B)

  def forward(self, state, params, batch, rng, train: bool):
    """(logits_BxTxK, frame_mask_BxT, nll_B, model_state)."""
    (logits_BxTxK, frame_mask_BxT), model_state = self.apply(state, params, batch, rng, train)
    nll_B = ctc.ctc_loss(logits_BxTxK, 1.0 - frame_mask_BxT.astype(jnp.float32),
                         batch['labels'], 1.0 - batch['label_mask'])
    return logits_BxTxK, frame_mask_BxT, nll_B, model_state

  def loss_sums(self, nll_B, mask_B):
    # Eval padding rows have no frames and no labels; `where`, not a product, keeps
    # whatever the loss is there out of the sum.
    loss_sum = jnp.sum(jnp.where(mask_B > 0, nll_B * mask_B, 0.0))
    return loss_sum, {'loss': loss_sum, 'count': jnp.sum(mask_B)}

  def loss(self, state, params, batch, rng, train=True):
    _, _, nll_B, model_state = self.forward(state, params, batch, rng, train)
    loss_sum, sums = self.loss_sums(nll_B, batch['mask'])
    return loss_sum, Aux(sums['count'], sums, model_state)

  def report(self, sums) -> dict:
    return {'loss': float(sums['loss']) / max(float(sums['count']), 1.0)}

  def eval_batch(self, state, batch) -> EvalOutput:
    logits_BxTxK, frame_mask_BxT, nll_B, _ = self.forward(state, state.params, batch, None,
                                                          train=False)
    frame_paddings_BxT = 1.0 - frame_mask_BxT.astype(jnp.float32)
    greedy_BxT, greedy_paddings_BxT = ctc.greedy_decode(logits_BxTxK, frame_paddings_BxT)
    examples = {'greedy': greedy_BxT, 'greedy_paddings': greedy_paddings_BxT,
                'labels': batch['labels'], 'label_mask': batch['label_mask'],
                'mask': batch['mask']}
    if self.beam_size:
      examples.update(logits=logits_BxTxK.astype(jnp.float32),
                      frame_paddings=frame_paddings_BxT)
    return EvalOutput(sums=self.loss_sums(nll_B, batch['mask'])[1], examples=examples)

  def finalize(self, sums, examples) -> dict:
    real = {k: v[examples['mask'] > 0] for k, v in examples.items()}
    references = ctc.unpad(real['labels'], 1.0 - real['label_mask'])
    out = self.report(sums)
    decoded = {'': ctc.unpad(real['greedy'], real['greedy_paddings'])}
    if self.beam_size:
      decoded['beam_'] = ctc.beam_decode(real['logits'], real['frame_paddings'], self.beam_size)
    for prefix, hypotheses in decoded.items():
      out[f'{prefix}sequence_accuracy'] = ctc.sequence_accuracy(hypotheses, references)
      out[f'{prefix}cer'] = ctc.character_error_rate(hypotheses, references)
    return out

  def predict(self, state, batch) -> dict:
    logits_BxTxK, frame_mask_BxT = self.apply(state, state.params, batch, None, train=False)[0]
    labels_BxT, paddings_BxT = ctc.greedy_decode(
        logits_BxTxK, 1.0 - frame_mask_BxT.astype(jnp.float32))
    return {'labels': labels_BxT, 'label_paddings': paddings_BxT}

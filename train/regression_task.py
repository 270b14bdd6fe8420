"""Regression: real-valued targets, squared error (`config.task = 'regression'`).

The model maps `inputs` to K real outputs f(x) (an MLP with output='linear', say) and is
trained on the mean squared error against the batch's `target` [B, K],

    L = 1/B sum_b 1/K sum_k (f(x_b)_k - y_bk)^2,

which the engine reports as `loss` (train/losses.py: mean_squared_error). The dataset's info
gives K as `num_outputs`.
"""

import jax.numpy as jnp

from train import losses, tasks
from train.errors import UserError


@tasks.register('regression')
class Regression(tasks.Task):
  """f(inputs) against `target` by squared error; `loss` is the mean squared error."""

  def __init__(self, config, info):
    super().__init__(config, info)
    if 'num_outputs' not in info:
      raise UserError(f'config.task={config.task!r} needs a dataset with real-valued '
                      f'targets, but config.dataset={config.dataset!r} has none; choose a '
                      'regression dataset (e.g. curve) or another task.')
    if config.loss != 'mse':
      raise UserError(f'config.task={config.task!r} trains on squared error; set '
                      f'config.loss=\'mse\' (got {config.loss!r}).')

  def model_kwargs(self, config, info, fields) -> dict:
    kwargs = super().model_kwargs(config, info, fields)
    kwargs.setdefault('num_outputs', info['num_outputs'])
    return kwargs

  def loss(self, state, params, batch, rng, train=True):
    predictions_BxK, model_state = self.apply(state, params, batch, rng, train)
    mask_B = batch['mask']
    loss_sum = jnp.sum(losses.mean_squared_error(predictions_BxK, batch['target']) * mask_B)
    sums = {'loss': loss_sum, 'count': jnp.sum(mask_B)}
    return loss_sum, tasks.Aux(jnp.sum(mask_B), sums, model_state)

  def report(self, sums) -> dict:
    return {'loss': float(sums['loss'] / max(float(sums['count']), 1.0))}

  def predict(self, state, batch) -> dict:
    predictions_BxK, _ = self.apply(state, state.params, batch, None, train=False)
    return {'prediction': predictions_BxK}

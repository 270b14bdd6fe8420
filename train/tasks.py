"""Tasks: model + loss + metrics, the unit a config selects (`config.task`).

A task tells the engine three things, all pure functions of arrays:

  loss(state, params, batch, rng, train) -> (scalar loss, (metric sums, new model_state))
  eval_sums(state, batch)                -> metric sums of one evaluation batch
  report(sums)                           -> {metric name: value}, on the host

"Metric sums" are pytrees of totals (loss sum, example count, confusion matrix) that the
engine adds up on device across steps and devices; `report` turns the totals into the
shared metric names (loss, accuracy, precision, recall, f1, ...). Most tasks reuse the
standard train step in `train/steps.py`; a task that needs its own step (sparse
word2vec updates, say) sets `train_step` and the engine uses it instead.
"""

from typing import Callable

import jax
import jax.numpy as jnp
from ml_collections import ConfigDict

from train import losses, metrics

_TASKS: dict[str, Callable] = {}


def register(name: str):
  def wrap(cls):
    _TASKS[name] = cls
    return cls
  return wrap


def create(config: ConfigDict, info: dict):
  if config.task not in _TASKS:
    raise ValueError(f'config.task={config.task!r} is not a known task; '
                     f'choose one of {sorted(_TASKS)}.')
  return _TASKS[config.task](config, info)


def masked_mean(per_example, mask):
  return jnp.sum(per_example * mask) / jnp.maximum(jnp.sum(mask), 1.0)


@register('classification')
class Classification:
  """One label per example from `inputs`; the loss matches the model's output layer.

  softmax_cross_entropy: K logits, label in [0, K).
  sigmoid_cross_entropy: one logit per class, targets one-hot (K=1: binary, p = s(z)).
  mse: K linear outputs regressed onto the one-hot label (classic squared-error nets).
  """
  train_step = None  # the standard step

  def __init__(self, config: ConfigDict, info: dict):
    self.num_classes = info['num_classes']
    self.loss_name = config.loss
    self.label_smoothing = config.label_smoothing
    if self.loss_name not in losses.LOSSES:
      raise ValueError(f'config.loss={self.loss_name!r} is not one of '
                       f'{sorted(losses.LOSSES)}.')

  def _logits(self, state, params, batch, rng, train):
    mutable = list(state.model_state) if train else False
    out = state.apply_fn(state.variables(params), batch['inputs'], train=train,
                         rngs={'dropout': rng} if train else None, mutable=mutable)
    return out if train else (out, state.model_state)

  def _per_example_loss(self, logits_BxK, labels_B):
    if self.loss_name == 'softmax_cross_entropy':
      return losses.softmax_cross_entropy(logits_BxK, labels_B, self.label_smoothing)
    binary = logits_BxK.shape[-1] == 1
    targets = (labels_B[:, None].astype(jnp.float32) if binary
               else jax.nn.one_hot(labels_B, logits_BxK.shape[-1]))
    if self.loss_name == 'sigmoid_cross_entropy':
      return losses.sigmoid_cross_entropy(logits_BxK, targets, self.label_smoothing)
    return losses.mean_squared_error(logits_BxK, targets)

  def _sums(self, logits_BxK, per_example_B, batch):
    mask = batch['mask']
    if logits_BxK.shape[-1] == 1:  # a single sigmoid/linear unit: threshold at p = 1/2
      threshold = 0.0 if self.loss_name == 'sigmoid_cross_entropy' else 0.5
      predictions = (logits_BxK[:, 0] > threshold).astype(jnp.int32)
    else:
      predictions = jnp.argmax(logits_BxK, axis=-1)
    return {'loss': jnp.sum(per_example_B * mask), 'count': jnp.sum(mask),
            'confusion': metrics.confusion_matrix(batch['label'], predictions,
                                                  self.num_classes, mask)}

  def loss(self, state, params, batch, rng, train=True):
    logits, model_state = self._logits(state, params, batch, rng, train)
    per_example = self._per_example_loss(logits, batch['label'])
    return (masked_mean(per_example, batch['mask']),
            (self._sums(logits, per_example, batch), model_state))

  def eval_sums(self, state, batch):
    logits, _ = self._logits(state, state.params, batch, None, train=False)
    return self._sums(logits, self._per_example_loss(logits, batch['label']), batch)

  def report(self, sums) -> dict:
    out = metrics.classification_report(sums['confusion'])
    out['loss'] = float(sums['loss'] / max(float(sums['count']), 1.0))
    return out

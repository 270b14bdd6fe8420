"""Tasks: model + loss + metrics + evaluation, the unit a config selects (`config.task`).

The engine (train/loop.py) knows nothing about any architecture; everything it needs
from one comes through these hooks of a task. `Task` gives every hook a default, so a
task overrides only what differs from a plain supervised classifier:

  model_kwargs(config, info, fields) -> the model's constructor arguments. Defaults:
      the `config.model` fields, then any model field that `info` (the dataset's facts:
      vocab_size, num_classes, pad_id, ...) names and the config leaves unset.
  init_params(params) -> params: the fresh parameters with parts replaced (pretrained
      word vectors, a converted checkpoint), traced inside the jitted init before the
      optimizer state is built; a resumed run restores its checkpoint instead. Default:
      unchanged. Read the arrays in the task's __init__ and close over them here.
  model_inputs(batch) -> the positional arguments of the model's `__call__`, read from a
      batch (e.g. inputs and targets for an encoder-decoder, node features and edges for
      a graph). `init` and every `apply` use it.
  state_collections  -> the mutable variable collections that are training state
      (checkpointed, averaged across pmap replicas), e.g. ('batch_stats',), or the
      per-row state a recurrent language model carries from one window to the next
      ('carry'; train/language_tasks.py, mesh mode only since pmap would average
      different rows' states). Any other
      collection a model writes (a decoding 'cache', 'intermediates') is dropped.
  loss(state, params, batch, rng, train) -> (loss_sum, Aux): the loss SUMMED over the
      batch's weighted positions, with Aux(weight, sums, model_state). The engine divides
      by the weight summed over every device and process, so the gradient is that of the
      global mean whatever the per-device masks are.
  report(sums) -> {metric: value} from training metric sums (pytrees of totals the
      engine adds up on device between logs), on the host.
  eval_batch(state, batch) -> EvalOutput(sums, examples), inside jit: `sums` are added
      up on device over the split; `examples` (per-example arrays with a leading batch
      axis, e.g. decoded tokens) are fetched to the host, gathered from every process
      in global batch order, and concatenated over the split.
  finalize(sums, examples) -> {metric: value} of a whole split, on the host (BLEU,
      entity-level F1, ... are computed here from `examples`).
  predict(state, batch) -> {name: per-example array} for new inputs, inside jit (class
      probabilities, tags, tokens); `experiments/predict.py` serves every task with it.
  make_train_step(config, axis_name) -> a task's own `(state, batch) -> (state, sums)`
      step (sparse word2vec updates, say), or None for the standard step of
      train/steps.py. `axis_name` is the pmap axis (None under jit over a mesh); a
      custom step must reduce over it itself. `grad_norm` and `steps` in its sums are
      optional.

"Metric sums" are pytrees of totals (loss sum, example count, confusion matrix) that add
across steps, devices and processes; every metric is derived from them on the host, so a
metric is exact over a split however it was batched or sharded.
"""

from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
from ml_collections import ConfigDict

from train import losses, metrics
from train.errors import UserError

_TASKS: dict[str, Callable] = {}


def register(name: str):
  def wrap(cls):
    _TASKS[name] = cls
    return cls
  return wrap


def names() -> list[str]:
  return sorted(_TASKS)


def create(config: ConfigDict, info: dict):
  if config.task not in _TASKS:
    raise UserError(f'config.task={config.task!r} is not a known task; '
                    f'choose one of {names()}.')
  return _TASKS[config.task](config, info)


class Aux(NamedTuple):
  """What `Task.loss` returns beside the loss sum."""
  weight: jax.Array     # the total weight (mask sum) the loss sum is over
  sums: Any             # metric sums of the batch
  model_state: Any      # the updated state collections (batch-norm statistics)


class EvalOutput(NamedTuple):
  """What `Task.eval_batch` returns for one evaluation batch."""
  sums: Any = None      # added up on device over the split
  examples: Any = None  # per-example arrays, gathered on the host


class Task:
  """Defaults for every hook; see the module docstring."""
  state_collections: tuple[str, ...] = ('batch_stats',)

  def __init__(self, config: ConfigDict, info: dict):
    self.config = config
    self.info = info

  def model_kwargs(self, config: ConfigDict, info: dict, fields) -> dict:
    kwargs = {k: v for k, v in config.model.items() if k != 'name'}
    for name in fields:
      if name not in kwargs and name in info:
        kwargs[name] = info[name]
    return kwargs

  def init_params(self, params):
    return params

  def model_inputs(self, batch: dict) -> tuple:
    return (batch['inputs'],)

  def apply(self, state, params, batch, rng, train: bool):
    """The model's output on `batch`, and the new state collections (train only)."""
    mutable = list(state.model_state) if train else False
    out = state.apply_fn(state.variables(params), *self.model_inputs(batch), train=train,
                         rngs={'dropout': rng} if train else None, mutable=mutable)
    return out if train else (out, state.model_state)

  def loss(self, state, params, batch, rng, train: bool = True):
    raise NotImplementedError

  def report(self, sums) -> dict:
    raise NotImplementedError

  def eval_batch(self, state, batch) -> EvalOutput:
    _, aux = self.loss(state, state.params, batch, None, train=False)
    return EvalOutput(sums=aux.sums)

  def finalize(self, sums, examples) -> dict:
    del examples
    return self.report(sums)

  def predict(self, state, batch) -> dict:
    raise NotImplementedError(f'{type(self).__name__} does not predict yet.')

  def make_train_step(self, config: ConfigDict, axis_name: str | None):
    del config, axis_name
    return None


@register('classification')
class Classification(Task):
  """One label per example from `inputs`; the loss matches the model's output layer.

  softmax_cross_entropy: K logits, label in [0, K).
  sigmoid_cross_entropy: one logit per class, targets one-hot (K=1: binary, p = s(z)).
  mse: K linear outputs regressed onto the one-hot label (classic squared-error nets).
  """

  def __init__(self, config: ConfigDict, info: dict):
    super().__init__(config, info)
    if 'num_classes' not in info:
      raise UserError(f'config.task={config.task!r} needs a dataset with class labels, '
                      f'but config.dataset={config.dataset!r} has none; choose a '
                      'classification dataset or another task.')
    self.num_classes = info['num_classes']
    self.loss_name = config.loss
    self.label_smoothing = config.label_smoothing
    if self.loss_name not in losses.LOSSES:
      raise UserError(f'config.loss={self.loss_name!r} is not one of '
                      f'{sorted(losses.LOSSES)}.')

  def model_kwargs(self, config, info, fields) -> dict:
    kwargs = super().model_kwargs(config, info, fields)
    kwargs.setdefault('num_outputs', self.num_classes)
    return kwargs

  def _per_example_loss(self, logits_BxK, labels_B):
    if self.loss_name == 'softmax_cross_entropy':
      return losses.softmax_cross_entropy(logits_BxK, labels_B, self.label_smoothing)
    binary = logits_BxK.shape[-1] == 1
    targets = (labels_B[:, None].astype(jnp.float32) if binary
               else jax.nn.one_hot(labels_B, logits_BxK.shape[-1]))
    if self.loss_name == 'sigmoid_cross_entropy':
      return losses.sigmoid_cross_entropy(logits_BxK, targets, self.label_smoothing)
    return losses.mean_squared_error(logits_BxK, targets)

  def predictions(self, logits_BxK):
    if logits_BxK.shape[-1] == 1:  # a single sigmoid/linear unit: threshold at p = 1/2
      threshold = 0.0 if self.loss_name == 'sigmoid_cross_entropy' else 0.5
      return (logits_BxK[:, 0] > threshold).astype(jnp.int32)
    return jnp.argmax(logits_BxK, axis=-1)

  def loss(self, state, params, batch, rng, train=True):
    logits, model_state = self.apply(state, params, batch, rng, train)
    return self.loss_of(logits, batch['label'], batch['mask'], model_state)

  def loss_of(self, logits_BxK, labels_B, mask_B, model_state):
    """The loss sum and Aux of logits against labels, weighted by the mask."""
    loss_sum = jnp.sum(self._per_example_loss(logits_BxK, labels_B) * mask_B)
    sums = {'loss': loss_sum, 'count': jnp.sum(mask_B),
            'confusion': metrics.confusion_matrix(labels_B, self.predictions(logits_BxK),
                                                  self.num_classes, mask_B)}
    return loss_sum, Aux(jnp.sum(mask_B), sums, model_state)

  def predict(self, state, batch) -> dict:
    logits, _ = self.apply(state, state.params, batch, None, train=False)
    if self.loss_name == 'softmax_cross_entropy':
      probabilities = jax.nn.softmax(logits.astype(jnp.float32))
    elif self.loss_name == 'sigmoid_cross_entropy':
      probabilities = jax.nn.sigmoid(logits.astype(jnp.float32))
    else:
      probabilities = logits  # squared error: the outputs themselves
    return {'prediction': self.predictions(logits), 'probabilities': probabilities}

  def report(self, sums) -> dict:
    out = metrics.classification_report(sums['confusion'])
    out['loss'] = float(sums['loss'] / max(float(sums['count']), 1.0))
    return out


@register('node_classification')
class NodeClassification(Classification):
  """One label per node of one graph, trained full-batch (GAT, GCN on Cora).

  A batch is the whole graph (train/data/graph.py): `inputs` [1, N, F], `senders`,
  `receivers` [1, E], `label` and `mask` [1, N], the mask selecting the split's nodes.
  The model returns logits [1, N, C]; loss and metrics flatten them to N per-node
  examples, so every split's sums are over its own nodes only, and the engine's mean is
  the mean over the masked nodes. `predict` (inherited) keeps the graph axis: [1, N]
  predictions and [1, N, C] probabilities.

  With `config.data.normalize_features` the model reads each node's features divided by
  their sum, x_i / sum_f x_if (zero rows stay zero): the Planetoid preprocessing that
  GCN and GAT were trained with (Cora's binary bag-of-words rows then sum to 1).
  """

  def __init__(self, config: ConfigDict, info: dict):
    super().__init__(config, info)
    self.normalize_features = bool(config.data.get('normalize_features', False))

  def model_kwargs(self, config, info, fields) -> dict:
    # The graph models name their output width `num_classes`, which `Task` fills in
    # from the dataset's info; only models that call it `num_outputs` need it set here.
    kwargs = Task.model_kwargs(self, config, info, fields)
    if 'num_outputs' in fields:
      kwargs.setdefault('num_outputs', self.num_classes)
    return kwargs

  def model_inputs(self, batch: dict) -> tuple:
    x_1xNxF = batch['inputs']
    if self.normalize_features:
      row_sum_1xNx1 = jnp.sum(x_1xNxF, axis=-1, keepdims=True)
      x_1xNxF = x_1xNxF / jnp.where(row_sum_1xNx1 == 0, 1.0, row_sum_1xNx1)
    return (x_1xNxF, batch['senders'], batch['receivers'])

  def loss(self, state, params, batch, rng, train=True):
    logits, model_state = self.apply(state, params, batch, rng, train)
    return self.loss_of(logits.reshape(-1, logits.shape[-1]), batch['label'].reshape(-1),
                        batch['mask'].reshape(-1), model_state)

"""The word2vec task: losses over chunks of the stream, and a sparse SGD step of its own.

A batch holds chunks of the sub-sampled stream (train/word2vec_pairs.py); the model and
its equations are nets/word2vec.py. With sigma(x) = 1 / (1 + e^-x) and
softplus(x) = -log sigma(-x), the loss of a batch is the SUM over its predictions (the
Task contract) of

  negative      softplus(-h.u_w) + (K/P) sum_{p=1..P} softplus(h.u_{n_p})
                (the P noise words of the chunk stand in for K draws per prediction)
  hierarchical  sum_l softplus(x_l) - x_l (1 - c_l),   x_l = h.u_{n_l}  (bits c_l of w)
  softmax       logsumexp_x(h.u_x) - h.u_w

where a prediction is a (context -> centre) pair for skip-gram and a centre for CBOW.
Reported: `loss` per prediction.

The step (make_train_step) is word2vec's SGD, w <- w - eta_t dL/dw for the summed loss,
so every prediction moves the rows it touches by eta_t times its own gradient as in
word2vec.c. Only the rows an update touches are read and written: gather them, take the
gradient with respect to the gathered rows, scatter-add the update, so an update costs
the same whatever the vocabulary size (the full softmax, which reads every output row,
is the exception). word2vec.c applies each prediction's update before the next; one
update from thousands of centres adds up hundreds of stale updates of a frequent word,
overshoots and diverges (measured here: 1,024 centres an update already spikes the loss
and costs 0.03 of WordSim-353). So a step applies its batch as successive updates of
config.chunks_per_update chunks each, a lax.scan inside the one jitted step: the host's
per-step costs (transfer, dispatch) are paid once per batch, and the updates stay small.
eta_t is the engine's optimizer: config.optimizer must be plain `sgd`, and word2vec's
schedule is schedule='linear' from learning_rate (0.025 skip-gram, 0.05 CBOW) down to
end_factor=1e-4 of it; every update of a step uses that step's eta_t. Under pmap each
device's rows and updates are gathered over the axis before the scatter, so every
replica applies every update.

Evaluation reads the word vectors of the whole vocabulary (the eval and test splits are
the vocabulary) and scores WordSim-353, SimLex-999 and the Google analogies
(train/word2vec_eval.py).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from ml_collections import ConfigDict

from nets import word2vec as w2v
from train import word2vec_eval
from train.errors import UserError
from train.tasks import Aux, EvalOutput, Task, register


def unpack_pairs(batch):
  """(pair_mask [B, G, 2W], center_mask [B, G]) as floats from the chunk's `pairs` bits."""
  num_centers = batch['pairs'].shape[1]
  num_offsets = batch['inputs'].shape[1] - num_centers
  bits_BxGxC1 = (batch['pairs'][:, :, None] >> jnp.arange(num_offsets + 1)[None, None]) & 1
  flags = bits_BxGxC1.astype(jnp.float32)
  return flags[..., :num_offsets], flags[..., num_offsets]


@jax.custom_vjp
def logistic_loss(out_BxMxD, h_BxSxD, weight_BxMxS, target_BxMxS):
  """sum_{b,m,s} weight (softplus(z) - target z), z = out h^T: weighted -log sigma(+-z).

  Its gradient, dz = weight (sigma(z) - target), is written out (two products and no
  more): on 2 CPU cores an update then takes about 1.1 us per centre instead of the
  1.7 us of the derivative JAX traces itself. Weights and targets are data (no gradient).
  """
  return _logistic_forward(out_BxMxD, h_BxSxD, weight_BxMxS, target_BxMxS)[0]


def _logistic_forward(out_BxMxD, h_BxSxD, weight_BxMxS, target_BxMxS):
  z_BxMxS = jnp.einsum('bmd,bsd->bms', out_BxMxD, h_BxSxD)
  loss = jnp.sum(weight_BxMxS * (jax.nn.softplus(z_BxMxS) - target_BxMxS * z_BxMxS))
  dz_BxMxS = weight_BxMxS * (jax.nn.sigmoid(z_BxMxS) - target_BxMxS)
  return loss, (out_BxMxD, h_BxSxD, dz_BxMxS)


def _logistic_backward(residuals, g):
  out_BxMxD, h_BxSxD, dz_BxMxS = residuals
  dz_BxMxS = g * dz_BxMxS
  return (jnp.einsum('bms,bsd->bmd', dz_BxMxS, h_BxSxD),
          jnp.einsum('bms,bmd->bsd', dz_BxMxS, out_BxMxD), None, None)


logistic_loss.defvjp(_logistic_forward, _logistic_backward)


def _check_optimizer(config: ConfigDict) -> None:
  o = config.optimizer
  if o.name != 'sgd':
    raise UserError(f'config.optimizer.name={o.name!r}: the word2vec step applies plain SGD '
                    "to the rows a batch touches; set --config.optimizer.name=sgd.")
  for field in ('clip_value', 'clip_global_norm', 'weight_decay'):
    if o[field]:
      raise UserError(f'config.optimizer.{field}={o[field]}: the word2vec step applies '
                      f'plain SGD; set it to 0.')
  if config.l2:
    raise UserError(f'config.l2={config.l2}: the word2vec step has no L2 term; set it to 0.')


@register('word2vec')
class Word2VecTask(Task):
  state_collections = ()

  def __init__(self, config: ConfigDict, info: dict):
    super().__init__(config, info)
    if 'words' not in info:
      raise UserError(f'config.task=word2vec needs a word2vec corpus, but config.dataset='
                      f'{config.dataset!r} is not one; set --config.dataset=word2vec_corpus.')
    if config.model.name != 'word2vec':
      raise UserError(f'config.model.name={config.model.name!r}: the word2vec task trains '
                      "the word2vec model's tables; set --config.model.name=word2vec.")
    _check_optimizer(config)
    self.architecture = config.model.architecture
    self.output = config.model.output
    self.negatives = info['negatives']
    self.words = info['words']
    self.benchmarks = word2vec_eval.load_benchmarks(
        config.data_dir, **{name: config.data.get(name, '')
                            for name in ('wordsim353', 'simlex999', 'analogy')})

  def model_inputs(self, batch: dict) -> tuple:
    return (batch['word'],)

  # The rows a batch touches, and the loss as a function of them.

  def rows(self, params, batch) -> dict:
    """{'input_embedding': [B, S, D], 'output_embedding': the output rows it reads}."""
    inputs, output = params['input_embedding'], params['output_embedding']
    if self.output == 'negative':
      out = output[self.output_ids(batch)]                       # [B, G + P, D]
    elif self.output == 'hierarchical':
      out = output[batch['path']]                                # [B, G, L, D]
    else:
      out = output                                               # [V, D], all of it
    return {'input_embedding': inputs[batch['inputs']], 'output_embedding': out}

  def output_ids(self, batch):
    """Negative sampling's output rows: the chunk's centres, then its noise words."""
    num_centers = batch['pairs'].shape[1]
    window = (batch['inputs'].shape[1] - num_centers) // 2
    return jnp.concatenate([batch['inputs'][:, window:window + num_centers],
                            batch['negatives']], axis=1)

  def loss_of_rows(self, rows: dict, batch: dict):
    """(loss summed over the batch's predictions, Aux) from the gathered rows.

    Every architecture and output layer scores output rows against hidden vectors h
    (skip-gram: the chunk's S input rows; CBOW: its G context means) with one product
    per chunk, and reads the predictions' entries through weights: prediction_BxGxS[j, s]
    is 1 where h_s predicts centre j (a pair for skip-gram, the diagonal for CBOW).
    """
    e_BxSxD, out = rows['input_embedding'], rows['output_embedding']
    pair_mask_BxGxC, center_mask_BxG = unpack_pairs(batch)
    batch_size, num_centers, _ = pair_mask_BxGxC.shape
    if self.architecture == 'skipgram':
      h = e_BxSxD
      prediction_BxGxS = w2v.pair_matrix(pair_mask_BxGxC)
    else:
      h = w2v.cbow_hidden(e_BxSxD, pair_mask_BxGxC)                     # [B, G, D]
      used_BxG = center_mask_BxG * (jnp.sum(pair_mask_BxGxC, -1) > 0)
      prediction_BxGxS = used_BxG[:, :, None] * jnp.eye(num_centers)[None]
    length, dim = h.shape[1], h.shape[2]
    if self.output == 'negative':
      # Rows: the G centres (target 1), then the P noise words (target 0), each noise
      # word weighing K/P for every prediction its hidden vector makes.
      num_noise = out.shape[1] - num_centers
      noise_BxPxS = jnp.broadcast_to(
          self.negatives / num_noise * jnp.sum(prediction_BxGxS, 1, keepdims=True),
          (batch_size, num_noise, length))
      loss_sum = logistic_loss(
          out, h, jnp.concatenate([prediction_BxGxS, noise_BxPxS], 1),
          jnp.concatenate([jnp.ones_like(prediction_BxGxS), jnp.zeros_like(noise_BxPxS)], 1))
    elif self.output == 'hierarchical':
      # Rows: the L nodes on each centre's path, target 1 - c_l.
      path_length = out.shape[2]
      weight = batch['path_mask'][..., None] * prediction_BxGxS[:, :, None, :]
      target = jnp.broadcast_to((1.0 - batch['code'])[..., None], weight.shape)
      flat = lambda x: x.reshape(batch_size, num_centers * path_length, -1)
      loss_sum = logistic_loss(out.reshape(batch_size, -1, dim), h, flat(weight),
                               flat(target))
    else:
      window = (e_BxSxD.shape[1] - num_centers) // 2
      centers_BxG = batch['inputs'][:, window:window + num_centers]
      log_z_BxS = jax.nn.logsumexp(jnp.einsum('bsd,vd->bsv', h, out), -1)
      z_BxGxS = jnp.einsum('bgd,bsd->bgs', out[centers_BxG], h)
      loss_sum = (jnp.sum(jnp.sum(prediction_BxGxS, 1) * log_z_BxS)
                  - jnp.sum(prediction_BxGxS * z_BxGxS))
    predictions = jnp.sum(prediction_BxGxS)
    sums = {'loss': loss_sum, 'predictions': predictions, 'words': jnp.sum(center_mask_BxG)}
    return loss_sum, Aux(predictions, sums, {})

  def loss(self, state, params, batch, rng, train=True):
    del state, rng, train
    return self.loss_of_rows(self.rows(params, batch), batch)

  def scatter(self, params, batch, updates):
    """params + updates, the updated rows added where they were gathered from."""
    new = dict(params)
    dim = params['input_embedding'].shape[1]
    new['input_embedding'] = params['input_embedding'].at[batch['inputs'].reshape(-1)].add(
        updates['input_embedding'].reshape(-1, dim))
    out_update = updates['output_embedding']
    if self.output == 'softmax':
      new['output_embedding'] = params['output_embedding'] + out_update
    else:
      ids = self.output_ids(batch) if self.output == 'negative' else batch['path']
      new['output_embedding'] = params['output_embedding'].at[ids.reshape(-1)].add(
          out_update.reshape(-1, dim))
    return new

  def make_train_step(self, config: ConfigDict, axis_name: str | None):
    per_update = config.get('chunks_per_update', 0) or config.batch_size

    def update(state, params, batch):
      """One SGD update from a group of chunks: (new params, (sums, optimizer state))."""
      rows = self.rows(params, batch)
      (_, aux), grads = jax.value_and_grad(self.loss_of_rows, has_aux=True)(rows, batch)
      updates, opt_state = state.tx.update(grads, state.opt_state)  # -eta_t * gradient
      sums = aux.sums
      if axis_name is not None:  # every replica applies every device's rows
        sums = jax.lax.psum(sums, axis_name)
        dense = self.output == 'softmax'  # the full softmax's output gradient is dense
        if dense:
          updates['output_embedding'] = jax.lax.psum(updates['output_embedding'], axis_name)
        batch = jax.lax.all_gather({k: v for k, v in batch.items() if k != 'mask'},
                                   axis_name, tiled=True)
        updates = {k: v if dense and k == 'output_embedding'
                   else jax.lax.all_gather(v, axis_name, tiled=True)
                   for k, v in updates.items()}
      return self.scatter(params, batch, updates), (sums, opt_state)

    def train_step(state, batch):
      # Update g reads chunks g, g + n, g + 2n, ... of the batch (n updates a step), so
      # that under pmap each device holds its share of every update's chunks and the
      # updates are the same as on one device.
      devices = 1 if axis_name is None else jax.lax.axis_size(axis_name)
      chunks = batch['inputs'].shape[0]
      local = per_update // devices
      if per_update % devices or chunks % local:
        raise UserError(f'config.chunks_per_update={per_update} must divide '
                        f'config.batch_size={config.batch_size} and be a multiple of the '
                        f'{devices} pmap devices.')
      groups = jax.tree.map(lambda x: jnp.swapaxes(
          x.reshape(local, chunks // local, *x.shape[1:]), 0, 1), batch)
      params, (sums, opt_states) = jax.lax.scan(
          lambda params, group: update(state, params, group), state.params, groups)
      # Every update read the same optimizer state (the same eta_t): keep one copy.
      opt_state = jax.tree.map(lambda x: x[0], opt_states)
      sums = jax.tree.map(lambda x: jnp.sum(x, 0), sums)
      sums['steps'] = 1
      return state.replace(step=state.step + 1, params=params, opt_state=opt_state), sums

    return train_step

  def report(self, sums) -> dict:
    predictions = max(float(sums['predictions']), 1.0)
    return {'loss': float(sums['loss']) / predictions, 'predictions': float(sums['predictions']),
            'words': float(sums['words'])}

  # Evaluation: the eval and test splits are the vocabulary; each batch returns vectors.

  def eval_batch(self, state, batch) -> EvalOutput:
    vectors = state.params['input_embedding'][batch['word']]
    return EvalOutput(sums={'words': jnp.sum(batch['mask'])},
                      examples={'word': batch['word'], 'vector': vectors,
                                'real': batch['mask']})

  def vectors(self, examples) -> np.ndarray:
    """The [V, D] word vectors, row = word id, from an evaluation pass's examples."""
    real = examples['real'] > 0
    vectors = np.zeros((len(self.words), examples['vector'].shape[1]), np.float32)
    vectors[examples['word'][real]] = examples['vector'][real]
    return vectors

  def finalize(self, sums, examples) -> dict:
    del sums
    return word2vec_eval.evaluate(self.vectors(examples), self.words, self.benchmarks)

  def predict(self, state, batch) -> dict:
    return {'vector': state.params['input_embedding'][batch['word']]}

"""Optimizers, learning-rate schedules and clipping, built from `config.optimizer`.

The update of each named optimizer (g = gradient, eta = learning rate):

  sgd        w -= eta g
  momentum   v = mu v + g;              w -= eta v
  nesterov   v = mu v + g;              w -= eta (g + mu v)     (look-ahead gradient)
  adagrad    G += g^2;                  w -= eta g / sqrt(G + eps)
  rmsprop    G = rho G + (1-rho) g^2;   w -= eta g / sqrt(G + eps)
  adadelta   like rmsprop, scaled by the running RMS of past updates (unit-consistent)
  adam       m = b1 m + (1-b1) g;  v = b2 v + (1-b2) g^2;  w -= eta m_hat / (sqrt(v_hat) + eps)
  adamw      adam, then w -= eta * weight_decay * w   (decoupled from the gradient)
  nadam      adam with a Nesterov look-ahead on m

L2 regularisation (config.l2) is *not* here: it is added to the loss by the train step, so
it flows through the optimizer's preconditioning; decoupled weight decay
(config.optimizer.weight_decay) bypasses it. For SGD the two coincide; for Adam they do not.
"""

import re

import jax
import jax.numpy as jnp
import optax
from ml_collections import ConfigDict

from train.losses import is_weight


def weights_mask(params):
  """True for the leaves that weight decay applies to (not biases, not norm scales)."""
  return jax.tree_util.tree_map_with_path(is_weight, params)


def _optimizers(c: ConfigDict, lr) -> dict:
  return {
      'sgd': lambda: optax.sgd(lr),
      'momentum': lambda: optax.sgd(lr, momentum=c.momentum),
      'nesterov': lambda: optax.sgd(lr, momentum=c.momentum, nesterov=True),
      'adagrad': lambda: optax.adagrad(lr, initial_accumulator_value=0.0, eps=c.eps),
      'rmsprop': lambda: optax.rmsprop(lr, decay=c.rho, eps=c.eps),
      'adadelta': lambda: optax.adadelta(lr, rho=c.rho, eps=c.eps),
      'adam': lambda: optax.adam(lr, b1=c.b1, b2=c.b2, eps=c.eps),
      'adamw': lambda: optax.adamw(lr, b1=c.b1, b2=c.b2, eps=c.eps,
                                   weight_decay=c.weight_decay, mask=weights_mask),
      'nadam': lambda: optax.nadam(lr, b1=c.b1, b2=c.b2, eps=c.eps),
      'adamax': lambda: optax.adamax(lr, b1=c.b1, b2=c.b2, eps=c.eps),
      'lamb': lambda: optax.lamb(lr, b1=c.b1, b2=c.b2, eps=c.eps,
                                 weight_decay=c.weight_decay, mask=weights_mask),
      'lion': lambda: optax.lion(lr, b1=c.b1, b2=c.b2, weight_decay=c.weight_decay,
                                 mask=weights_mask),
      'adafactor': lambda: optax.adafactor(lr),
  }


OPTIMIZERS = tuple(_optimizers(ConfigDict(), 0.0))
SCHEDULES = ('constant', 'step', 'exponential', 'linear', 'cosine', 'inverse_sqrt')


def step_boundaries(c: ConfigDict, decay_steps: int) -> dict[int, float]:
  """{step: factor}; boundaries that land on the same step multiply their factors."""
  factors = {}
  for fraction in c.boundaries:
    at = int(fraction * decay_steps)
    factors[at] = factors.get(at, 1.0) * c.decay_factor
  return factors


def schedule(c: ConfigDict, total_steps: int) -> optax.Schedule:
  """Linear warmup over `warmup_steps` (if any), then the named decay."""
  peak, warmup = c.learning_rate, c.warmup_steps
  decay_steps = max(total_steps - warmup, 1)
  decays = {
      'constant': lambda: optax.constant_schedule(peak),
      # Multiply by `decay_factor` at each of `boundaries` (fractions of the decay phase).
      'step': lambda: optax.piecewise_constant_schedule(peak, step_boundaries(c, decay_steps)),
      'exponential': lambda: optax.exponential_decay(
          peak, transition_steps=decay_steps, decay_rate=c.decay_factor),
      'linear': lambda: optax.linear_schedule(peak, c.end_factor * peak, decay_steps),
      'cosine': lambda: optax.cosine_decay_schedule(peak, decay_steps, alpha=c.end_factor),
      # The Transformer's rsqrt: peak * sqrt(warmup / t) after warmup (Vaswani et al. 2017).
      'inverse_sqrt': lambda: lambda t: peak * (max(warmup, 1) / (t + max(warmup, 1))) ** 0.5,
  }
  decay = decays[c.schedule]()
  if warmup <= 0:
    return decay
  return optax.join_schedules(
      [optax.linear_schedule(0.0, peak, warmup), decay], boundaries=[warmup])


def decoupled_weight_decay(rate: float, learning_rate: optax.Schedule):
  """Adds -eta_t * rate * w to each weight's update, after the optimizer.

  This is AdamW's decay rule (Loshchilov & Hutter 2019) for any optimizer: the decay does
  not pass through the optimizer's per-parameter scaling, unlike an L2 term in the loss.
  """
  def init_fn(params):
    del params
    return optax.ScaleByScheduleState(count=jnp.zeros([], jnp.int32))

  def update_fn(updates, state, params):
    eta = learning_rate(state.count)
    updates = jax.tree.map(lambda u, w, decay: u - eta * rate * w if decay else u,
                           updates, params, weights_mask(params))
    return updates, optax.ScaleByScheduleState(count=optax.safe_increment(state.count))

  return optax.GradientTransformation(init_fn, update_fn)


BUILT_IN_DECAY = ('adamw', 'lamb', 'lion')


def create(c: ConfigDict, total_steps: int) -> optax.GradientTransformation:
  """Clipping (by value, then by global norm), the optimizer, then decoupled decay."""
  learning_rate = schedule(c, total_steps)
  chain = []
  if c.clip_value > 0:
    chain.append(optax.clip(c.clip_value))
  if c.clip_global_norm > 0:
    chain.append(optax.clip_by_global_norm(c.clip_global_norm))
  chain.append(_optimizers(c, learning_rate)[c.name]())
  if c.weight_decay > 0 and c.name not in BUILT_IN_DECAY:
    chain.append(decoupled_weight_decay(c.weight_decay, learning_rate))
  return optax.chain(*chain)


def frozen(tx: optax.GradientTransformation, patterns) -> optax.GradientTransformation:
  """`tx` on the parameters whose path ('encoder/block_0/mlp/wi/kernel') matches none of
  `patterns` (regexes, re.match); zero updates, and no optimizer state, for the rest.

  The trained parameters alone are clipped, decayed and normalised: a frozen encoder's
  gradient neither shrinks the head's step by global-norm clipping nor enters Adam.
  """
  if not patterns:
    return tx
  compiled = [re.compile(p) for p in patterns]

  def labels(params):
    return jax.tree_util.tree_map_with_path(
        lambda path, _: 'frozen' if any(p.match(path_name(path)) for p in compiled)
        else 'trained', params)
  return optax.multi_transform({'trained': tx, 'frozen': optax.set_to_zero()}, labels)


def path_name(path) -> str:
  """'encoder/block_0/mlp/wi/kernel' for a pytree path."""
  return '/'.join(str(getattr(k, 'key', k)) for k in path)

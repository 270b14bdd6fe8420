"""Optimizers, schedules, clipping and weight decay against their closed forms."""

import copy
import math

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from experiments.configs import default
from train import losses, optimizers


def opt_config(**overrides):
  c = copy.deepcopy(default.get_config().optimizer)
  c.update({'schedule': 'constant', **overrides})
  return c


def make_params():
  rng = np.random.default_rng(0)
  return {'kernel': jnp.asarray(rng.normal(size=(2, 3)), jnp.float32),
          'bias': jnp.asarray(rng.normal(size=(3,)), jnp.float32)}


# An ill-conditioned quadratic 1/2 sum_i a_i (w_i - c_i)^2 with its minimum (0) at c.
CURVATURE = {'kernel': jnp.array([[1.0, 2.0, 4.0], [0.5, 1.0, 3.0]]),
             'bias': jnp.array([1.0, 2.0, 0.5])}
TARGET = {'kernel': jnp.full((2, 3), 0.5), 'bias': jnp.array([-1.0, 0.0, 1.0])}


def quadratic(params):
  return 0.5 * sum(jnp.sum(a * (w - c) ** 2) for a, w, c in zip(
      *(jax.tree.leaves(t) for t in (CURVATURE, params, TARGET))))


def apply_steps(tx, params, grad_fn, num_steps):
  def step(carry, _):
    params, state = carry
    updates, state = tx.update(grad_fn(params), state, params)
    return (optax.apply_updates(params, updates), state), None
  (params, _), _ = jax.lax.scan(step, (params, tx.init(params)), None, length=num_steps)
  return params


# Learning rates suited to each update rule's scale (adadelta's multiplies a step that starts
# near sqrt(eps); adafactor's is relative to the parameters' RMS; lion's steps are signs).
LEARNING_RATES = {'sgd': 0.2, 'momentum': 0.05, 'nesterov': 0.05, 'adagrad': 0.5,
                  'adadelta': 100.0, 'adafactor': 0.1, 'lion': 0.05}


@pytest.mark.parametrize('name', optimizers.OPTIMIZERS)
def test_every_optimizer_minimises_a_quadratic(name):
  tx = optimizers.create(opt_config(name=name, learning_rate=LEARNING_RATES.get(name, 0.05)),
                         total_steps=100)
  params = make_params()
  final = jax.jit(lambda p: apply_steps(tx, p, jax.grad(quadratic), 100))(params)
  assert quadratic(final) < 0.05 * quadratic(params)


PEAK, FACTOR, END, TOTAL = 0.1, 0.1, 0.01, 100


def closed_form(name, t, warmup):
  """The documented learning rate at step t: linear warmup from 0, then the decay."""
  if t < warmup:
    return PEAK * t / warmup
  s, d = t - warmup, TOTAL - warmup  # steps into, and length of, the decay phase
  frac = min(s, d) / d
  return {
      'constant': PEAK,
      'step': PEAK * FACTOR ** sum(s >= int(b * d) for b in (0.5, 0.75)),
      'exponential': PEAK * FACTOR ** (s / d),
      'linear': PEAK * (1 - (1 - END) * frac),
      'cosine': PEAK * (END + (1 - END) * 0.5 * (1 + math.cos(math.pi * frac))),
      # Vaswani et al.: peak * sqrt(warmup / t) after warmup; 1 / sqrt(t + 1) without one.
      'inverse_sqrt': PEAK * math.sqrt(warmup / t) if warmup else PEAK / math.sqrt(t + 1),
  }[name]


@pytest.mark.parametrize('warmup', [0, 10])
@pytest.mark.parametrize('name', optimizers.SCHEDULES)
def test_schedule_matches_closed_form(name, warmup):
  lr = optimizers.schedule(opt_config(
      schedule=name, learning_rate=PEAK, warmup_steps=warmup, decay_factor=FACTOR,
      boundaries=(0.5, 0.75), end_factor=END), TOTAL)
  d = TOTAL - warmup
  steps = sorted({0, 3, warmup, warmup + 1, 40, warmup + int(0.5 * d) - 1,
                  warmup + int(0.5 * d), warmup + int(0.75 * d), TOTAL - 1, TOTAL, TOTAL + 20})
  got = [float(lr(jnp.asarray(t))) for t in steps]
  np.testing.assert_allclose(got, [closed_form(name, t, warmup) for t in steps], rtol=1e-5,
                             err_msg=f'steps {steps}')


def test_schedule_hits_documented_landmarks():
  """Spot values that need no formula: the peak after warmup and the end of each decay."""
  lr = lambda name, **kw: optimizers.schedule(opt_config(
      schedule=name, learning_rate=1.0, warmup_steps=20, end_factor=0.05, decay_factor=0.5,
      **kw), 120)
  assert float(lr('cosine')(10)) == pytest.approx(0.5)  # halfway through warmup
  assert float(lr('cosine')(20)) == pytest.approx(1.0)
  assert float(lr('cosine')(120)) == pytest.approx(0.05)
  assert float(lr('linear')(70)) == pytest.approx((1 + 0.05) / 2)
  assert float(lr('exponential')(120)) == pytest.approx(0.5)
  assert float(lr('inverse_sqrt')(80)) == pytest.approx(0.5)  # sqrt(20 / 80)
  assert float(lr('step', boundaries=(0.5,))(69)) == pytest.approx(1.0)
  assert float(lr('step', boundaries=(0.5,))(70)) == pytest.approx(0.5)


def one_update(config, grads, params):
  tx = optimizers.create(config, total_steps=10)
  return jax.jit(lambda g, p: tx.update(g, tx.init(p), p)[0])(grads, params)


@pytest.mark.parametrize('clip_value,clip_norm', [(1.0, 0.0), (0.0, 2.0), (1.0, 1.0),
                                                  (0.0, 100.0)])
def test_clipping_bounds_the_update(clip_value, clip_norm):
  """By value, then by global norm (across all leaves), then the SGD step -eta * g."""
  grads = {'kernel': jnp.array([[3.0, 0.1], [-4.0, 0.5]]), 'bias': jnp.array([-2.0, 0.2])}
  g = np.concatenate([np.ravel(x) for x in jax.tree.leaves(grads)])
  if clip_value:
    g = np.clip(g, -clip_value, clip_value)
  if clip_norm:
    g = g * min(1.0, clip_norm / np.linalg.norm(g))
  updates = one_update(opt_config(name='sgd', learning_rate=0.5, clip_value=clip_value,
                                  clip_global_norm=clip_norm), grads, make_params())
  got = np.concatenate([np.ravel(x) for x in jax.tree.leaves(updates)])
  np.testing.assert_allclose(got, -0.5 * g, rtol=1e-6)
  if clip_value:
    assert np.max(np.abs(got)) <= 0.5 * clip_value + 1e-6
  if clip_norm:
    assert np.linalg.norm(got) <= 0.5 * clip_norm + 1e-6


def loss_and_l2(lam):
  return lambda p: quadratic(p) + lam * losses.l2_penalty(p)


@pytest.mark.parametrize('name,same', [('sgd', True), ('adam', False)])
def test_decoupled_weight_decay_vs_l2(name, same):
  lam, lr, params = 0.3, 0.1, make_params()
  with_l2 = apply_steps(optimizers.create(opt_config(name=name, learning_rate=lr), 10),
                        params, jax.grad(loss_and_l2(lam)), 3)
  decoupled = apply_steps(optimizers.create(opt_config(
      name=name, learning_rate=lr, weight_decay=lam), 10), params, jax.grad(quadratic), 3)
  np.testing.assert_allclose(with_l2['bias'], decoupled['bias'], rtol=1e-6)  # neither decays
  assert np.allclose(with_l2['kernel'], decoupled['kernel'], rtol=1e-5) == same


def test_adam_l2_and_decoupled_decay_first_step_closed_form():
  """Adam's first step is -eta g / (|g| + eps): L2 goes inside the sign, decay outside."""
  lam, lr, params = 0.3, 0.1, make_params()
  w = np.asarray(params['kernel'])
  g = np.asarray(jax.jit(jax.grad(quadratic))(params)['kernel'])
  adam = lambda g: g / (np.abs(g) + 1e-8)
  with_l2 = apply_steps(optimizers.create(opt_config(name='adam', learning_rate=lr), 10),
                        params, jax.grad(loss_and_l2(lam)), 1)
  decoupled = apply_steps(optimizers.create(opt_config(
      name='adam', learning_rate=lr, weight_decay=lam), 10), params, jax.grad(quadratic), 1)
  np.testing.assert_allclose(with_l2['kernel'], w - lr * adam(g + lam * w), atol=1e-6)
  np.testing.assert_allclose(decoupled['kernel'], w - lr * adam(g) - lr * lam * w, atol=1e-6)


def test_adamw_equals_adam_with_decoupled_decay():
  """optax's built-in AdamW decay and this module's decay for any optimizer agree."""
  params = make_params()
  run = lambda name: apply_steps(optimizers.create(opt_config(
      name=name, learning_rate=0.05, weight_decay=0.2, warmup_steps=3, schedule='cosine'),
      20), params, jax.grad(quadratic), 10)
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5),
               run('adamw'), run('adam'))


@pytest.mark.parametrize('name', optimizers.OPTIMIZERS)
def test_weight_decay_skips_biases(name):
  """With zero gradients the only update is the decay: kernels shrink, biases stay."""
  lr, wd, params = 0.1, 0.2, make_params()
  zero_grads = jax.tree.map(jnp.zeros_like, params)
  updates = one_update(opt_config(name=name, learning_rate=lr, weight_decay=wd), zero_grads,
                       params)
  np.testing.assert_array_equal(updates['bias'], 0.0)
  # LAMB rescales the step to the trust ratio ||w|| / ||wd w||, so its decay step is -eta w.
  shrink = lr if name == 'lamb' else lr * wd
  np.testing.assert_allclose(updates['kernel'], -shrink * params['kernel'], rtol=1e-5)

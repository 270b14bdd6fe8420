"""Each config setting reaches the computation: optimizer hyperparameters, l2, label
smoothing, num_epochs, keep_checkpoints and augmentation, each checked against an
independent NumPy computation and shown to change the result when it changes."""

import copy
import math

import jax
import numpy as np
import pytest
import tensorflow_datasets as tfds

from experiments.configs import default, mnist_mlp
from train import loop, optimizers, reporting

ONE_DEVICE = jax.devices()[:1]

# ---------------------------------------------------------------------------------------
# Optimizers: the update equations of train/optimizers.py (optax's for nadam and
# adadelta) in NumPy, over a warmup + cosine schedule.

# A quadratic 1/2 sum a (w - c)^2: the gradient a (w - c) changes as the weights move.
CURVATURE = {'kernel': np.array([[1.0, 2.0, 4.0], [0.5, 1.0, 3.0]]),
             'bias': np.array([1.0, 2.0, 0.5])}
TARGET = {'kernel': np.full((2, 3), 0.5), 'bias': np.array([-1.0, 0.0, 1.0])}
START = {'kernel': np.array([[1.5, -0.5, 2.0], [-1.0, 0.3, 1.2]]),
         'bias': np.array([0.4, -0.8, 1.5])}
PEAK, WARMUP, TOTAL, END = 0.1, 2, 4, 0.1  # 4 updates: 0, peak/2, peak, then the decay
# The docstring's `G += g^2` starts from G = 0 (Duchi et al. 2011). optax.adagrad starts
# from initial_accumulator_value=0.1, which the engine leaves at its default: the first
# step is then g / sqrt(g^2 + 0.1 + eps), so config.optimizer.eps is swamped.
ADAGRAD_G0 = 0.0


def reference_lr(peak, t):
  if t < WARMUP:
    return peak * t / WARMUP
  return peak * (END + (1 - END) * 0.5 * (1 + math.cos(math.pi * (t - WARMUP) /
                                                          (TOTAL - WARMUP))))


def reference_direction(name, c, g, s, t):
  """The step direction u (w -= eta u) at update t (0-based); `s` holds the leaf's state."""
  if name in ('momentum', 'nesterov'):
    s['v'] = c.momentum * s.get('v', 0.0) + g
    return g + c.momentum * s['v'] if name == 'nesterov' else s['v']
  if name == 'adagrad':
    s['G'] = s.get('G', ADAGRAD_G0) + g ** 2
    return g / np.sqrt(s['G'] + c.eps)
  if name == 'rmsprop':
    s['G'] = c.rho * s.get('G', 0.0) + (1 - c.rho) * g ** 2
    return g / np.sqrt(s['G'] + c.eps)
  if name == 'adadelta':  # optax: dx = sqrt(E[dx^2] + eps) / sqrt(E[g^2] + eps) g
    s['Eg'] = c.rho * s.get('Eg', 0.0) + (1 - c.rho) * g ** 2
    dx = np.sqrt(s.get('Ex', 0.0) + c.eps) / np.sqrt(s['Eg'] + c.eps) * g
    s['Ex'] = c.rho * s.get('Ex', 0.0) + (1 - c.rho) * dx ** 2
    return dx
  # adam, adamw, nadam
  n = t + 1
  s['m'] = c.b1 * s.get('m', 0.0) + (1 - c.b1) * g
  s['v'] = c.b2 * s.get('v', 0.0) + (1 - c.b2) * g ** 2
  v_hat = s['v'] / (1 - c.b2 ** n)
  if name == 'nadam':  # optax: m_hat = b1 m / (1 - b1^(n+1)) + (1 - b1) g / (1 - b1^n)
    m_hat = c.b1 * s['m'] / (1 - c.b1 ** (n + 1)) + (1 - c.b1) * g / (1 - c.b1 ** n)
  else:
    m_hat = s['m'] / (1 - c.b1 ** n)
  return m_hat / (np.sqrt(v_hat) + c.eps)


def reference_run(name, c, num_updates=TOTAL):
  w = {k: v.copy() for k, v in START.items()}
  states = {k: {} for k in w}
  for t in range(num_updates):
    eta = reference_lr(c.learning_rate, t)
    for k in w:
      g = CURVATURE[k] * (w[k] - TARGET[k])
      u = reference_direction(name, c, g, states[k], t)
      if name == 'adamw' and k == 'kernel':  # decoupled decay: weights only
        u = u + c.weight_decay * w[k]
      w[k] = w[k] - eta * u
  return w


def engine_run(c, num_updates=TOTAL):
  tx = optimizers.create(c, TOTAL)
  params = {k: np.asarray(v, np.float32) for k, v in START.items()}
  state = tx.init(params)
  for _ in range(num_updates):
    grads = {k: CURVATURE[k] * (params[k] - TARGET[k]) for k in params}
    grads = {k: np.asarray(v, np.float32) for k, v in grads.items()}
    updates, state = tx.update(grads, state, params)
    params = {k: np.asarray(params[k] + updates[k]) for k in params}
  return params


def opt_config(name, **fields):
  c = copy.deepcopy(default.get_config().optimizer)
  c.update({'name': name, 'learning_rate': PEAK, 'schedule': 'cosine',
            'warmup_steps': WARMUP, 'end_factor': END, **fields})
  return c


# (optimizer, its settings, the setting varied, another value of it). The base settings are
# all distinct, so a setting passed to the wrong argument (b2 as b1, say) fails too.
BASE = {'momentum': dict(momentum=0.9), 'nesterov': dict(momentum=0.9),
        'adagrad': dict(eps=1e-8),
        'rmsprop': dict(rho=0.9, eps=1e-8),
        'adadelta': dict(rho=0.9, eps=1e-2, learning_rate=5.0),
        'adam': dict(b1=0.9, b2=0.99, eps=1e-8),
        'adamw': dict(b1=0.9, b2=0.99, eps=1e-8, weight_decay=0.3),
        'nadam': dict(b1=0.9, b2=0.99, eps=1e-8)}
VARIED = [('momentum', 'momentum', 0.5), ('nesterov', 'momentum', 0.5),
          ('adagrad', 'eps', 1.0),
          ('rmsprop', 'rho', 0.5), ('rmsprop', 'eps', 1.0),
          ('adadelta', 'rho', 0.5), ('adadelta', 'eps', 1e-1),
          ('adam', 'b1', 0.5), ('adam', 'b2', 0.5), ('adam', 'eps', 1.0),
          ('adamw', 'b1', 0.5), ('adamw', 'b2', 0.5), ('adamw', 'eps', 1.0),
          ('adamw', 'weight_decay', 0.0),
          ('nadam', 'b1', 0.5), ('nadam', 'b2', 0.5), ('nadam', 'eps', 1.0)]


@pytest.mark.parametrize('name,field,other', VARIED)
def test_optimizer_setting_reaches_the_update(name, field, other):
  results = []
  for value in (BASE[name][field], other):
    c = opt_config(name, **{**BASE[name], field: value})
    got, want = engine_run(c), reference_run(name, c)
    for k in got:
      np.testing.assert_allclose(got[k], want[k], rtol=2e-5, atol=1e-6,
                                 err_msg=f'{name} {field}={value} {k}')
    results.append(got)
  change = max(np.abs(results[0][k] - results[1][k]).max() for k in START)
  assert change > 1e-3, f'{name}: {field} {BASE[name][field]} -> {other} moved nothing'


def test_nesterov_is_not_plain_momentum():
  c = BASE['momentum']
  assert not np.allclose(engine_run(opt_config('nesterov', **c))['kernel'],
                         engine_run(opt_config('momentum', **c))['kernel'], atol=1e-3)


def test_warmup_makes_the_first_update_zero_and_the_second_half_size():
  """The schedule reaches the update: SGD moves by -eta_t g with eta = 0, then peak/2."""
  c = opt_config('sgd')
  np.testing.assert_array_equal(engine_run(c, 1)['bias'], START['bias'].astype(np.float32))
  g = CURVATURE['bias'] * (START['bias'] - TARGET['bias'])
  np.testing.assert_allclose(engine_run(c, 2)['bias'], START['bias'] - PEAK / 2 * g,
                             rtol=1e-6)


# ---------------------------------------------------------------------------------------
# l2 and label smoothing through the real train step.

def spirals_config(**fields):
  c = default.get_config()
  c.optimizer.update(name='sgd', learning_rate=0.5, schedule='constant')
  c.data.update(num_train=100, num_test=200)
  c.update({'num_steps': 1, 'batch_size': 16, 'eval_batch_size': 100,
            'progress_bar': False, **fields})
  return c


def spirals_batch():
  rng = np.random.default_rng(0)
  return {'inputs': rng.normal(size=(16, 2)).astype(np.float32),
          'label': rng.integers(0, 3, 16).astype(np.int32), 'mask': np.ones(16, np.float32)}


def one_step(config, batch):
  """(initial params, params after one train step on `batch`, the task's report of it)."""
  exp = loop.build(config, ONE_DEVICE)
  start = jax.device_get(exp.state.params)  # the step donates the state's buffers
  train_step, _ = loop.compile_steps(exp, exp.state)
  state, sums = train_step(exp.state, exp.par.place_batch(batch, len(batch['mask'])))
  return start, jax.device_get(state.params), exp.task.report(exp.par.host_sums(sums))


@pytest.fixture(scope='module')
def plain_step():
  return one_step(spirals_config(), spirals_batch())


def test_l2_shrinks_kernels_by_eta_l2_w_and_leaves_biases(plain_step):
  start, plain, _ = plain_step
  _, with_l2, _ = one_step(spirals_config(l2=0.1), spirals_batch())
  assert max(np.abs(plain[k]['kernel'] - start[k]['kernel']).max() for k in start) > 1e-3
  for layer in start:  # Dense_0, Dense_1, Dense_2
    np.testing.assert_allclose(with_l2[layer]['kernel'] - plain[layer]['kernel'],
                               -0.5 * 0.1 * start[layer]['kernel'], atol=1e-6)
    np.testing.assert_allclose(with_l2[layer]['bias'], plain[layer]['bias'], atol=1e-7)


def reference_loss(params, batch, smoothing):
  """The MLP's forward pass (tanh, tanh, linear) and smoothed cross-entropy in NumPy."""
  h = batch['inputs'].astype(np.float64)
  for i in range(3):
    h = h @ params[f'Dense_{i}']['kernel'] + params[f'Dense_{i}']['bias']
    h = np.tanh(h) if i < 2 else h
  log_p = h - h.max(1, keepdims=True)
  log_p = log_p - np.log(np.exp(log_p).sum(1, keepdims=True))
  targets = (1 - smoothing) * np.eye(3)[batch['label']] + smoothing / 3
  return -np.mean(np.sum(targets * log_p, axis=1)), log_p


def test_label_smoothing_changes_the_reported_loss_by_its_closed_form(plain_step):
  start, plain, report = plain_step
  _, smoothed, smoothed_report = one_step(spirals_config(label_smoothing=0.2),
                                          spirals_batch())
  batch = spirals_batch()
  hard, log_p = reference_loss(start, batch, 0.0)
  assert report['loss'] == pytest.approx(hard, rel=1e-5)
  assert smoothed_report['loss'] == pytest.approx(reference_loss(start, batch, 0.2)[0],
                                                  rel=1e-5)
  # Closed form: smoothing eps adds eps * mean_i (-mean_k log p_ik + log p_i,y_i).
  uniform_minus_true = -log_p.mean(1) + log_p[np.arange(16), batch['label']]
  assert smoothed_report['loss'] - report['loss'] == pytest.approx(
      0.2 * uniform_minus_true.mean(), rel=1e-4)
  assert not np.allclose(smoothed['Dense_2']['kernel'], plain['Dense_2']['kernel'])


# ---------------------------------------------------------------------------------------
# num_epochs and keep_checkpoints through real runs.

def test_num_epochs_sets_the_number_of_steps(tmp_path):
  c = spirals_config(num_steps=-1, num_epochs=2, log_every=5, eval_every=1000,
                     checkpoint_every=1000)
  assert [loop.total_steps(spirals_config(num_steps=-1, num_epochs=e), 100)
          for e in (1, 2, 3)] == [6, 12, 18]  # 100 // 16 = 6 steps an epoch
  state, _ = loop.train_and_evaluate(c, tmp_path, devices=ONE_DEVICE)
  assert int(state.step) == 12
  records = reporting.read_metrics(tmp_path)
  assert [r['step'] for r in records if r['split'] == 'train'] == [5, 10, 12]
  assert [r['step'] for r in records if r['split'] == 'test'] == [12]


def test_keep_checkpoints_keeps_the_newest(tmp_path):
  """Saves at steps 2, 4, 6 and 7; 2 kept (the default would keep 3)."""
  c = spirals_config(num_steps=7, checkpoint_every=2, keep_checkpoints=2, log_every=7,
                     eval_every=1000)
  loop.train_and_evaluate(c, tmp_path, devices=ONE_DEVICE)
  folders = sorted((tmp_path / 'checkpoints').iterdir(), key=lambda p: p.name)
  assert [p.name for p in folders] == ['6', '7']
  assert all((p / 'checksums.json').exists() for p in folders)  # every save finished


# ---------------------------------------------------------------------------------------
# Augmentation: the training batches the loop consumes.

def shifted(image, dy, dx):
  """`image` moved down dy and right dx pixels, zeros where nothing moved in."""
  out = np.zeros_like(image)
  h, w = image.shape[:2]
  out[max(dy, 0):h + min(dy, 0), max(dx, 0):w + min(dx, 0)] = \
      image[max(-dy, 0):h + min(-dy, 0), max(-dx, 0):w + min(-dx, 0)]
  return out


def test_augment_translates_mnist_training_images(tmp_path):
  def batches(augment):
    c = mnist_mlp.get_config()
    c.model.update(hidden=(8,), dropout_rate=0.0)
    c.data.augment = augment
    c.update(batch_size=32, eval_batch_size=32, num_steps=2, tfds_data_dir=str(tmp_path))
    with tfds.testing.mock_data(num_examples=64):
      exp = loop.build(c, ONE_DEVICE)
    return [next(exp.train_iter) for _ in range(2)]

  plain, augmented = batches(False), batches(True)
  offsets = []
  for p, a in zip(plain, augmented):
    np.testing.assert_array_equal(p['label'], a['label'])
    assert not np.array_equal(p['inputs'], a['inputs'])
    for original, moved in zip(p['inputs'], a['inputs']):
      matches = [(dy, dx) for dy in range(-2, 3) for dx in range(-2, 3)
                 if np.array_equal(moved, shifted(original, dy, dx))]
      assert len(matches) == 1, 'not a translation by at most 2 pixels with zero fill'
      offsets.append(matches[0])
  assert len(set(offsets)) > 5  # the offsets vary from image to image

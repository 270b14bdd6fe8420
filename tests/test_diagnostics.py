"""Gradient checks, Hessian spectra, critical points and k-fold cross-validation."""

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from nets import mlp
from train import cross_validation, diagnostics

PARAMS = {'w': jnp.array([0.3, -1.2, 2.0]), 'b': jnp.array([[0.5, -0.7], [1.1, 0.2]])}


def sine_with_backward(scale):
  """sin with a hand-written backward pass: scale * cos(x) * cotangent (scale 1 is right)."""
  @jax.custom_vjp
  def sine(x):
    return jnp.sin(x)
  sine.defvjp(lambda x: (jnp.sin(x), x), lambda x, ct: (scale * jnp.cos(x) * ct,))
  return sine


def loss_with(sine):
  return lambda p: jnp.sum(sine(p['w'])) + jnp.sum(p['b'] ** 3)


def test_gradient_check_passes_the_right_backward_in_float64():
  report = diagnostics.gradient_check(loss_with(sine_with_backward(1.0)), PARAMS, num_entries=7)
  assert report.passed and report.dtype == 'float64'
  assert len(report.names) == 7 and sum('w' in n for n in report.names) == 3  # every entry
  # Independent closed form: d/dw sum sin(w) = cos(w), d/db sum b^3 = 3 b^2. Matching it
  # to 1e-9 takes float64: float32 differences resolve only ~1e-4.
  closed_form = dict(w=np.cos(np.asarray(PARAMS['w'], np.float64)),
                     b=3 * np.asarray(PARAMS['b'], np.float64) ** 2)
  for name, numerical in zip(report.names, report.numerical):
    leaf, index = name[2], json.loads(name[name.index(']') + 1:])  # "['w'][1]"
    np.testing.assert_allclose(numerical, closed_form[leaf][tuple(index)], atol=1e-9)
  assert report.max_relative_error < 1e-9
  assert 'PASSED' in str(report)


@pytest.mark.parametrize('scale,expected_error', [(2.0, 1 / 3), (-1.0, 1.0)],
                         ids=['factor', 'sign'])
def test_gradient_check_flags_a_wrong_custom_vjp(scale, expected_error):
  report = diagnostics.gradient_check(loss_with(sine_with_backward(scale)), PARAMS,
                                      num_entries=7)
  assert not report.passed and 'FAILED' in str(report)
  on_w = np.array(['w' in n for n in report.names])
  # |c - s c| / (|c| + |s c|): 1/3 for s = 2, 1 for s = -1; the b entries stay right.
  np.testing.assert_allclose(report.relative_error[on_w], expected_error, rtol=1e-6)
  assert np.all(report.relative_error[~on_w] < 1e-9)
  # The same verdict when the wrong gradient comes in as grad_fn of a plain loss.
  wrong_grad = jax.jit(jax.grad(loss_with(sine_with_backward(scale))))
  plain = diagnostics.gradient_check(loss_with(jnp.sin), PARAMS, grad_fn=wrong_grad,
                                     num_entries=7)
  np.testing.assert_allclose(plain.relative_error, report.relative_error, rtol=1e-6)


def test_gradient_check_on_an_mlp():
  model = mlp.MLP(hidden=(6,), num_outputs=3, activation='tanh')
  x = jax.random.normal(jax.random.key(1), (8, 4))
  labels = jnp.arange(8) % 3
  params = jax.jit(model.init)(jax.random.key(2), x)

  def loss_fn(p):
    logits = model.apply(p, x)
    return -jnp.mean(jnp.take_along_axis(jax.nn.log_softmax(logits), labels[:, None], 1))

  report = diagnostics.gradient_check(loss_fn, params, num_entries=12)
  assert report.passed, str(report)
  assert {n.split("']")[1] for n in report.names} == {"['Dense_0", "['Dense_1"}
  assert {n.split("']")[2] for n in report.names} == {"['kernel", "['bias"}  # all 4 leaves
  # A 1% error in the gradient is far above what the differences resolve.
  nudged = jax.jit(lambda p: jax.tree.map(lambda g: 1.01 * g, jax.grad(loss_fn)(p)))
  assert not diagnostics.gradient_check(loss_fn, params, nudged, num_entries=12).passed


EIGENVALUES = np.array([-3.0, -1.0, 0.5, 2.0, 4.0, 7.0])


def quadratic(eigenvalues, seed=0):
  """0.5 x^T A x with A = Q diag(eigenvalues) Q^T, over a two-leaf pytree; and a point."""
  n = len(eigenvalues)
  q, _ = np.linalg.qr(np.random.default_rng(seed).normal(size=(n, n)))
  a = jnp.asarray(q @ np.diag(eigenvalues) @ q.T)

  def loss_fn(p):
    x = jnp.concatenate([p['head'], p['tail'].reshape(-1)])
    return 0.5 * x @ a @ x
  point = {'head': jnp.ones(2), 'tail': jnp.linspace(-1.0, 1.0, n - 2).reshape(2, -1)}
  return loss_fn, point


def test_hessian_spectrum_of_a_quadratic():
  loss_fn, point = quadratic(EIGENVALUES)
  np.testing.assert_allclose(diagnostics.hessian_spectrum(loss_fn, point), EIGENVALUES,
                             atol=1e-10)


def test_lanczos_spectrum_of_a_quadratic():
  loss_fn, point = quadratic(EIGENVALUES)
  np.testing.assert_allclose(diagnostics.lanczos_spectrum(loss_fn, point, 6), EIGENVALUES,
                             atol=1e-9)
  # Fewer steps on a larger spectrum: the Ritz values interlace inside [min, max], and the
  # isolated top eigenvalue converges first.
  spread = np.concatenate([np.linspace(0.0, 1.0, 39), [10.0]])
  loss_fn, point = quadratic(spread, seed=1)
  ritz = diagnostics.lanczos_spectrum(loss_fn, point, 12, seed=3)
  assert len(ritz) == 12
  assert np.all((ritz >= -1e-9) & (ritz <= 10 + 1e-9))
  assert ritz[-1] == pytest.approx(10.0, abs=1e-8)


@pytest.mark.parametrize('loss_fn,at,kind,ratio', [
    (lambda p: p['x'] ** 2 - p['y'] ** 2, 0.0, 'saddle point', 0.5),
    (lambda p: p['x'] ** 2 + p['y'] ** 2, 0.0, 'local minimum', 1.0),
    (lambda p: -p['x'] ** 2 - p['y'] ** 2, 0.0, 'local maximum', 0.0),
    (lambda p: p['x'] ** 2 + p['y'] ** 4, 0.0, 'inconclusive', 0.5),
    (lambda p: p['x'] ** 2 + p['y'] ** 2, 1.0, 'not a critical point', 1.0),
])
def test_critical_points(loss_fn, at, kind, ratio):
  point = {'x': jnp.array(at), 'y': jnp.array(0.0)}
  result = diagnostics.analyse_critical_point(loss_fn, point)
  assert (result.kind, result.minimum_ratio) == (kind, ratio)


def test_classify_counts_signs_above_the_tolerance():
  assert diagnostics.classify_critical_point([1.0, -1e-9, 2.0], 0.0, tol=1e-6).kind == (
      'inconclusive')
  result = diagnostics.classify_critical_point([3.0, -1.0, 2.0, 1.0], 1e-8, tol=1e-6)
  assert (result.kind, result.minimum_ratio) == ('saddle point', 0.75)


@pytest.mark.parametrize('n,k', [(23, 5), (10, 10), (7, 2)])
def test_kfold_partitions_the_data(n, k):
  folds = cross_validation.kfold_indices(n, k, seed=0)
  assert len(folds) == k
  val = np.concatenate([v for _, v in folds])
  np.testing.assert_array_equal(np.sort(val), np.arange(n))  # each example once
  sizes = [len(v) for _, v in folds]
  assert max(sizes) - min(sizes) <= 1
  for train, v in folds:
    np.testing.assert_array_equal(train, np.setdiff1d(np.arange(n), v))
  again = cross_validation.kfold_indices(n, k, seed=0)
  assert all(np.array_equal(a[1], b[1]) for a, b in zip(folds, again))


def test_kfold_shuffles_with_the_seed():
  first, second = (cross_validation.kfold_indices(50, 5, seed=s)[0][1] for s in (0, 1))
  assert not np.array_equal(first, second)
  assert not np.array_equal(first, np.arange(10))


def test_stratified_kfold_keeps_class_proportions():
  labels = np.random.default_rng(0).permutation(np.repeat([0, 1, 2], [53, 31, 16]))
  folds = cross_validation.kfold_indices(100, 4, seed=2, stratify_labels=labels)
  np.testing.assert_array_equal(np.sort(np.concatenate([v for _, v in folds])), np.arange(100))
  counts = np.array([np.bincount(labels[v], minlength=3) for _, v in folds])  # [fold, class]
  np.testing.assert_array_equal(counts.sum(axis=0), [53, 31, 16])
  assert np.all(counts.max(axis=0) - counts.min(axis=0) <= 1)  # n_c / k, rounded either way
  assert max(len(v) for _, v in folds) - min(len(v) for _, v in folds) <= 1


def test_kfold_rejects_bad_arguments():
  with pytest.raises(ValueError, match='2 <= k <= num_examples'):
    cross_validation.kfold_indices(3, 4)
  with pytest.raises(ValueError, match='one label per example'):
    cross_validation.kfold_indices(10, 2, stratify_labels=[0, 1])


def test_select_by_kfold_picks_the_best_ridge_penalty():
  rng = np.random.default_rng(0)
  x = rng.normal(size=(40, 8))
  y = x @ rng.normal(size=8) + 0.5 * rng.normal(size=40)

  def validation_mse(penalty, train, val):
    xt = x[train]
    w = np.linalg.solve(xt.T @ xt + penalty * np.eye(8), xt.T @ y[train])
    return np.mean((x[val] @ w - y[val]) ** 2)

  penalties = [1e-3, 1.0, 1e3]
  result = cross_validation.select_by_kfold(penalties, validation_mse, 40, k=5, seed=4,
                                            higher_is_better=False)
  # The same numbers, fold by fold, with the folds built independently here.
  folds = cross_validation.kfold_indices(40, 5, seed=4)
  scores = np.array([[validation_mse(p, t, v) for t, v in folds] for p in penalties])
  np.testing.assert_allclose(result.mean, scores.mean(axis=1))
  np.testing.assert_allclose(result.std, np.sqrt(((scores - scores.mean(1, keepdims=True))
                                                  ** 2).mean(axis=1)))
  assert result.best_index == int(np.argmin(scores.mean(axis=1)))
  assert result.best == penalties[result.best_index]
  assert result.best != 1e3  # a huge penalty shrinks a real signal to nothing

"""Losses against NumPy float64 textbook equations: values, gradients, stability."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from train import losses

B, K = 4, 5


def np_softmax_ce(z, labels, eps):
  """-sum_k y_k log(exp(z_k) / sum_j exp(z_j)), y = (1 - eps) onehot + eps / K (naive)."""
  y = (1 - eps) * np.eye(z.shape[-1])[labels] + eps / z.shape[-1]
  return -np.sum(y * np.log(np.exp(z) / np.exp(z).sum(-1, keepdims=True)), -1)


def np_sigmoid_ce(z, t, eps):
  """-sum_k [y log s(z) + (1 - y) log(1 - s(z))], y = (1 - eps) t + eps / 2 (naive)."""
  y, s = (1 - eps) * t + eps / 2, 1 / (1 + np.exp(-z))
  return -np.sum(y * np.log(s) + (1 - y) * np.log(1 - s), -1)


def np_mse(p, t):
  return np.mean((p - t) ** 2, -1)


def case(name, rng):
  """(jax loss of the first argument, NumPy reference, first argument) for one case."""
  z = rng.normal(0, 2, (B, K))
  labels, targets = rng.integers(0, K, B), rng.uniform(0, 1, (B, K)).round()
  cases = {
      'softmax': (lambda x: losses.softmax_cross_entropy(x, labels),
                  lambda x: np_softmax_ce(x, labels, 0.0)),
      'softmax_smooth': (lambda x: losses.softmax_cross_entropy(x, labels, 0.1),
                         lambda x: np_softmax_ce(x, labels, 0.1)),
      'sigmoid': (lambda x: losses.sigmoid_cross_entropy(x, targets),
                  lambda x: np_sigmoid_ce(x, targets, 0.0)),
      'sigmoid_smooth': (lambda x: losses.sigmoid_cross_entropy(x, targets, 0.2),
                         lambda x: np_sigmoid_ce(x, targets, 0.2)),
      'mse': (lambda x: losses.mean_squared_error(x, targets), lambda x: np_mse(x, targets)),
  }
  return (*cases[name], z)


def value_and_grad_of_sum(f):
  """x -> (f(x), d sum(f(x)) / dx), jitted (one compilation beats many eager ops)."""
  return jax.jit(lambda x: (f(x), jax.grad(lambda x: f(x).sum())(x)))


CASES = ('softmax', 'softmax_smooth', 'sigmoid', 'sigmoid_smooth', 'mse')


@pytest.mark.parametrize('name', CASES)
def test_values_match_numpy(name):
  loss, reference, z = case(name, np.random.default_rng(0))
  got = loss(jnp.asarray(z, jnp.float32))
  assert got.shape == (B,)
  np.testing.assert_allclose(got, reference(z), rtol=1e-5, atol=1e-6)


def central_differences(f, x, h=1e-6):
  """d sum(f) / dx by central differences, in float64."""
  grad = np.zeros_like(x)
  for i in np.ndindex(x.shape):
    step = np.zeros_like(x)
    step[i] = h
    grad[i] = (f(x + step).sum() - f(x - step).sum()) / (2 * h)
  return grad


@pytest.mark.parametrize('name', CASES)
def test_gradient_matches_float64_finite_differences(name):
  loss, reference, z = case(name, np.random.default_rng(1))
  z = np.asarray(z, np.float32).astype(np.float64)  # the same point in both precisions
  _, got = value_and_grad_of_sum(loss)(jnp.asarray(z, jnp.float32))
  np.testing.assert_allclose(got, central_differences(reference, z), rtol=1e-4, atol=1e-5)


# Logits far in the saturated regime: the loss tends to sum_k y_k (max(z) - z_k).
Z_BIG = np.array([[1e4, -1e4, 0.0]])


@pytest.mark.parametrize('label,eps,limit,grad', [
    (0, 0.0, 0.0, [0, 0, 0]),  # confident and right
    (1, 0.0, 2e4, [1, -1, 0]),  # confident and wrong: z_max - z_1
    (1, 0.3, 0.8 * 2e4 + 0.1 * 1e4, [0.9, -0.8, -0.1]),  # sum_k y_k (z_max - z_k)
])
def test_softmax_ce_is_stable_at_large_logits(label, eps, limit, grad):
  value, g = value_and_grad_of_sum(
      lambda z: losses.softmax_cross_entropy(z, jnp.array([label]), eps))(jnp.asarray(Z_BIG))
  assert np.all(np.isfinite(value)) and np.all(np.isfinite(g))
  np.testing.assert_allclose(value, [limit], rtol=1e-6)
  np.testing.assert_allclose(g, [grad], atol=1e-6)  # softmax(z) - y


@pytest.mark.parametrize('target,eps', [(1.0, 0.0), (0.0, 0.0), (1.0, 0.2)])
def test_sigmoid_ce_is_stable_at_large_logits(target, eps):
  y = target * (1 - eps) + eps / 2
  z_Bx1 = jnp.array([[1e4], [-1e4]])  # one output per example
  f = lambda z: losses.sigmoid_cross_entropy(z, jnp.full((2, 1), target), eps)
  value, g = value_and_grad_of_sum(f)(z_Bx1)
  assert np.all(np.isfinite(value)) and np.all(np.isfinite(g))
  # -[y log s + (1-y) log(1-s)] -> (1-y) z for z -> +inf and -y z for z -> -inf.
  np.testing.assert_allclose(value, [(1 - y) * 1e4, y * 1e4], rtol=1e-6)
  np.testing.assert_allclose(g, [[1 - y], [-y]], atol=1e-6)  # s(z) - y


# Regression: a hand-written max(z, 0) - z*y + log1p(exp(-|z|)) gets -y here, because jax
# takes d|z|/dz = 1 but d max(z, 0)/dz = 1/2 at the kink; zero-initialised logits start at 0.
@pytest.mark.parametrize('target', [0.0, 1.0])
def test_sigmoid_ce_gradient_at_zero_logit(target):
  _, g = value_and_grad_of_sum(
      lambda z: losses.sigmoid_cross_entropy(z, jnp.full((1, 1), target)))(jnp.zeros((1, 1)))
  np.testing.assert_allclose(g, [[0.5 - target]], atol=1e-6)


def test_mse_is_exact_at_large_values():
  p, t = jnp.array([[1e4, -1e4]]), jnp.array([[-1e4, 1e4]])
  value, g = value_and_grad_of_sum(lambda p: losses.mean_squared_error(p, t))(p)
  np.testing.assert_allclose(value, [4e8], rtol=1e-6)
  np.testing.assert_allclose(g, [[2e4, -2e4]], rtol=1e-6)  # 2 (p - t) / K


def test_l2_penalty_counts_only_weights():
  rng = np.random.default_rng(2)
  shapes = {'dense': {'kernel': (3, 4), 'bias': (4,)}, 'embed': {'embedding': (6, 2)},
            'conv': {'kernel': (3, 3, 2, 4)}, 'norm': {'scale': (4,), 'bias': (4,)},
            'scalar': ()}
  params = jax.tree.map(lambda s: jnp.asarray(rng.normal(size=s), jnp.float32), shapes,
                        is_leaf=lambda s: isinstance(s, tuple))
  weights = [params['dense']['kernel'], params['embed']['embedding'], params['conv']['kernel']]
  expected = 0.5 * sum(np.sum(np.asarray(w, np.float64) ** 2) for w in weights)
  np.testing.assert_allclose(losses.l2_penalty(params), expected, rtol=1e-6)
  grads = jax.grad(losses.l2_penalty)(params)  # d/dW (1/2)||W||^2 = W; 0 for the rest
  expected_grads = jax.tree.map(lambda p: p if p.ndim >= 2 else jnp.zeros_like(p), params)
  jax.tree.map(np.testing.assert_array_equal, grads, expected_grads)


def test_l2_penalty_gradient_matches_finite_differences():
  w = np.random.default_rng(3).normal(size=(3, 4))
  got = jax.grad(lambda w: losses.l2_penalty({'kernel': w, 'bias': w[0]}))(jnp.asarray(w))
  expected = central_differences(lambda w: np.array(0.5 * np.sum(w ** 2)), w)
  np.testing.assert_allclose(got, expected, rtol=1e-5)

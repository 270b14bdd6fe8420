"""The LSTM's hand-written gradient (nets.rnn.lstm_scan) against autodiff of the plain scan."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from nets import rnn

B, T, H = 3, 6, 4  # the 4H-wide inputs are the gates' pre-activations W x_t + b
# Row 0 is full, row 1 ends in padding, row 2 has holes anywhere.
MASK = np.array([[1, 1, 1, 1, 1, 1],
                 [1, 1, 1, 1, 0, 0],
                 [0, 1, 0, 1, 1, 0]])


def normal(seed, shape):
  return np.random.default_rng(seed).standard_normal(shape).astype(np.float32)


def inputs(peephole):
  weights = rnn.LSTMWeights(
      normal(0, (H, 4 * H)) / np.sqrt(H),
      tuple(normal(1 + k, (1, H)) for k in range(3)) if peephole else None)
  state = rnn.LSTMState(c=normal(4, (B, H)), h=normal(5, (B, H)))
  return weights, state, normal(6, (B, T, 4 * H))


def vjp(scan, weights, state, xw, mask, reverse):
  """(outputs, gradients) of a random weighting of the outputs and the final state."""
  outputs, pullback = jax.vjp(lambda w, s, x: scan(w, s, x, mask, reverse), weights, state, xw)
  cotangents = jax.tree.map(lambda a: normal(a.size, a.shape), outputs)
  return outputs, pullback(cotangents)


def plain_scan(w, state, xw, mask, reverse):
  return rnn.scan_masked(rnn.lstm_step(w), state, xw, mask, reverse)


@pytest.mark.parametrize('peephole', [False, True])
@pytest.mark.parametrize('reverse', [False, True])
@pytest.mark.parametrize('mask', [np.ones((B, T), int), MASK], ids=['full', 'padded'])
def test_custom_gradient_matches_autodiff_of_the_plain_scan(peephole, reverse, mask):
  args = (*inputs(peephole), mask, reverse)
  got_outputs, got = jax.jit(vjp, static_argnums=(0, 5))(rnn.lstm_scan, *args)
  want_outputs, want = jax.jit(vjp, static_argnums=(0, 5))(plain_scan, *args)
  for a, b in zip(jax.tree.leaves(got_outputs), jax.tree.leaves(want_outputs)):
    np.testing.assert_allclose(a, b, atol=1e-6)
  assert jax.tree.structure(got) == jax.tree.structure(want)
  for (path, a), b in zip(jax.tree_util.tree_leaves_with_path(got), jax.tree.leaves(want)):
    assert np.abs(b).max() > 1e-2, path  # every path of the gradient is exercised
    np.testing.assert_allclose(a, b, atol=1e-5, rtol=1e-5, err_msg=jax.tree_util.keystr(path))


def test_bidirectional_peephole_stack_uses_it_and_matches_autodiff(monkeypatch):
  """The whole stack (both directions, peepholes, padding): the same gradients with the
  custom rule as with nets.rnn.lstm_scan replaced by the plain scan."""
  model = rnn.RNN(cell='lstm', hidden_size=H, num_layers=2, bidirectional=True, peephole=True)
  x = normal(7, (B, T, 5))
  params = jax.tree.map(lambda a: normal(a.size, a.shape) / 2,
                        jax.eval_shape(model.init, jax.random.key(0), x)['params'])
  w_out = normal(8, (B, T, 2 * H))

  def loss_fn():  # a new function each time, so that nothing traced before is reused
    return lambda p: jnp.sum(model.apply({'params': p}, x, MASK)[0] * w_out)

  assert str(jax.make_jaxpr(loss_fn())(params)).count('custom_vjp_call') == 4  # 2 x 2 cells
  got = jax.jit(jax.grad(loss_fn()))(params)
  monkeypatch.setattr(rnn, 'lstm_scan', plain_scan)
  want = jax.jit(jax.grad(loss_fn()))(params)
  for (path, a), b in zip(jax.tree_util.tree_leaves_with_path(got), jax.tree.leaves(want)):
    np.testing.assert_allclose(a, b, atol=1e-5, rtol=1e-5, err_msg=jax.tree_util.keystr(path))

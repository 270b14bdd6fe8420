"""RNN encoder-decoder with attention: the equations in NumPy, padding, step-by-step decoding,
gradients, the parameter count, and learning to reverse strings through the real engine."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from nets import rnn_seq2seq as rs
from nets.mlp import ModelConfigError

KEY = jax.random.key(0)
V, E, H_ENC, H_DEC, A, O = 11, 5, 4, 6, 7, 8  # distinct, so a wrong wiring cannot fit
SMALL = dict(vocab_size=V, embed_dim=E, encoder_size=H_ENC, decoder_size=H_DEC,
             attention_size=A, output_dim=O, dropout_rate=0.0)
# Padded sources (pad id 0 after each row's length) and teacher-forced targets [BOS, ...].
INPUTS = np.array([[4, 5, 6, 7, 3], [8, 9, 3, 0, 0], [10, 3, 0, 0, 0]], np.int32)
TARGETS_IN = np.array([[2, 6, 5, 4, 9, 8], [2, 9, 8, 3, 0, 0], [2, 10, 7, 7, 3, 0]], np.int32)


def normal(seed, shape, scale=1.0):
  return (scale * np.random.default_rng(seed).standard_normal(shape)).astype(np.float32)


def random_variables(model, seed=0, scale=0.5):
  """Every parameter (biases too) from N(0, scale^2), from the shapes of init alone."""
  shapes = jax.eval_shape(lambda: model.init(KEY, INPUTS, TARGETS_IN))
  rng = np.random.default_rng(seed)
  return jax.tree.map(lambda s: (scale * rng.standard_normal(s.shape)).astype(np.float32),
                      shapes)


@functools.cache
def compiled(cell, attention):
  """(model, variables, forward, step): jitted teacher forcing and one decode_step."""
  model = rs.RNNSeq2Seq(cell=cell, attention=attention, **SMALL)
  variables = random_variables(model)
  forward = jax.jit(lambda variables, x, y: model.apply(variables, x, y,
                                                         mutable=['intermediates']))
  start = jax.jit(lambda variables, x: model.apply(variables, x, method='start_decoding'))
  step = jax.jit(lambda variables, memory, y: model.apply(
      variables, memory, y, method='decode_step', mutable=['cache']))
  return model, variables, forward, start, step


# --- NumPy references of the module docstring's equations, in float64.

def sigmoid(z):
  return 1.0 / (1.0 + np.exp(-z))


def np_gru(p, h, xw):
  """One GRU step (nets/rnn.py: gates z, r, h~) given xw = W x + b."""
  u_z, u_r, u_h = np.split(p['recurrent']['kernel'], 3, axis=1)
  xw_z, xw_r, xw_h = np.split(xw, 3, axis=-1)
  z, r = sigmoid(xw_z + h @ u_z), sigmoid(xw_r + h @ u_r)
  return (1 - z) * h + z * np.tanh(xw_h + (r * h) @ u_h)


def np_encoder_direction(p, x_SxE, reverse):
  h = np.zeros(H_ENC)
  out = np.zeros((len(x_SxE), H_ENC))
  for s in (reversed(range(len(x_SxE))) if reverse else range(len(x_SxE))):
    h = np_gru(p, h, x_SxE[s] @ p['input']['kernel'] + p['input']['bias'])
    out[s] = h
  return out, h


def np_translate(p, source, targets_in, attention):
  """Logits of one example (its source without padding), and the attention weights."""
  x = p['embed']['embedding'][source]
  fwd, fwd_final = np_encoder_direction(p['encoder']['layer_0']['forward'], x, False)
  bwd, bwd_final = np_encoder_direction(p['encoder']['layer_0']['backward'], x, True)
  m = np.concatenate([fwd, bwd], axis=1)  # S x C
  bridge = p['bridge']['part_0']
  s = np.tanh(np.concatenate([fwd_final, bwd_final]) @ bridge['kernel'] + bridge['bias'])
  context = np.zeros(2 * H_ENC)
  dec = p['decoder']
  logits, weights = [], []
  for y_prev in targets_in:
    e = p['embed']['embedding'][y_prev]
    xw = (np.concatenate([e, context]) @ np.concatenate([dec['input']['kernel'],
                                                         dec['context_input']['kernel']])
          + dec['input']['bias'])
    s = h = np_gru(dec, s, xw)
    if attention == 'additive':  # v^T tanh(W_q h + W_k m_s)
      scores = np.tanh(h @ dec['attention_query']['kernel']
                       + m @ p['attention_keys']['kernel']) @ dec['attention_v']
    else:  # h^T W m_s, with W = W_k^T the keys' projection
      scores = m @ p['attention_keys']['kernel'] @ h
    a = np.exp(scores - scores.max())
    a /= a.sum()
    context = a @ m
    o = np.tanh(np.concatenate([h, context]) @ p['attentional']['kernel']
                + p['attentional']['bias'])
    logits.append(o @ p['output']['kernel'] + p['output']['bias'])
    weights.append(a)
  return np.array(logits), np.array(weights)


def test_attention_scores_match_numpy():
  query, keys_a, keys_h = normal(1, (3, H_DEC)), normal(2, (3, 5, A)), normal(3, (3, 5, H_DEC))
  w_q, v = normal(4, (H_DEC, A)), normal(5, (A,))
  q, ka, kh, wq, v64 = (np.float64(a) for a in (query, keys_a, keys_h, w_q, v))
  want = np.array([[v64 @ np.tanh(wq.T @ q[b] + ka[b, s]) for s in range(5)] for b in range(3)])
  np.testing.assert_allclose(rs.additive_scores(query, keys_a, w_q, v), want, rtol=1e-5)
  want = np.array([[q[b] @ kh[b, s] for s in range(5)] for b in range(3)])
  np.testing.assert_allclose(rs.multiplicative_scores(query, keys_h), want, rtol=1e-5)

  scores, values, mask = normal(6, (3, 5), 3.0), normal(7, (3, 5, 2)), INPUTS != 0
  context, weights = rs.attend(scores, values, mask)
  for b in range(3):
    real = mask[b]
    a = np.exp(np.float64(scores[b, real]) - scores[b, real].max())
    a /= a.sum()
    np.testing.assert_allclose(weights[b, real], a, rtol=1e-5)
    np.testing.assert_array_equal(weights[b, ~real], 0.0)  # exactly zero on padding
    np.testing.assert_allclose(context[b], a @ values[b, real], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize('attention', rs.ATTENTIONS)
def test_model_follows_its_equations(attention):
  _, variables, forward, _, _ = compiled('gru', attention)
  logits, state = forward(variables, INPUTS, TARGETS_IN)
  (weights,) = state['intermediates']['attention_weights']
  p = jax.tree.map(np.float64, variables['params'])
  for b, source in enumerate(INPUTS):
    length = int(np.sum(source != 0))
    want_logits, want_weights = np_translate(p, source[:length], TARGETS_IN[b], attention)
    np.testing.assert_allclose(logits[b], want_logits, atol=1e-4, rtol=1e-4)
    np.testing.assert_allclose(weights[b, :, :length], want_weights, atol=1e-5)
    np.testing.assert_array_equal(weights[b, :, length:], 0.0)


def test_extra_source_padding_changes_nothing():
  # (gru, additive) is checked row by row against unpadded NumPy above.
  _, variables, forward, _, _ = compiled('lstm', 'multiplicative')
  logits, _ = forward(variables, INPUTS, TARGETS_IN)
  padded = np.pad(INPUTS, ((0, 0), (0, 3)))
  logits_padded, state = forward(variables, padded, TARGETS_IN)
  np.testing.assert_allclose(logits_padded, logits, atol=1e-5)
  (weights,) = state['intermediates']['attention_weights']
  assert weights.shape == (3, TARGETS_IN.shape[1], padded.shape[1])
  np.testing.assert_array_equal(np.asarray(weights)[:, :, INPUTS.shape[1]:], 0.0)
  np.testing.assert_allclose(np.sum(weights, axis=-1), 1.0, rtol=1e-5)


@pytest.mark.parametrize('cell,attention', [('gru', 'additive'), ('lstm', 'multiplicative')])
def test_step_by_step_decoding_equals_teacher_forcing(cell, attention):
  model, variables, forward, start, step = compiled(cell, attention)
  logits, _ = forward(variables, INPUTS, TARGETS_IN)
  memory = start(variables, INPUTS)
  batch, length = TARGETS_IN.shape
  # The task's recipe: the cache's shapes for max_len tokens, every leaf zero.
  shapes = jax.eval_shape(lambda: model.apply(
      variables, memory, jnp.zeros((batch, length + 2), jnp.int32), method='decode_step',
      mutable=['cache'])[1]['cache'])
  cache = jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), shapes)
  assert all(leaf.shape[0] == batch for leaf in jax.tree.leaves(cache))  # beams reorder it
  assert all(leaf.shape[0] == batch for leaf in jax.tree.leaves(memory))
  one_by_one = []
  for t in range(length):
    out, mutated = step({**variables, 'cache': cache}, memory, TARGETS_IN[:, t:t + 1])
    cache = mutated['cache']
    one_by_one.append(out)
  np.testing.assert_allclose(np.concatenate(one_by_one, axis=1), logits, atol=1e-5)
  np.testing.assert_array_equal(cache['decoder']['position'], length)


def test_gradients_match_finite_differences():
  model = rs.RNNSeq2Seq(cell='lstm', attention='additive', **SMALL)
  params = random_variables(model, seed=1)['params']  # shapes traced in float32
  with jax.enable_x64(True):
    params = jax.tree.map(np.float64, params)
    w_out = np.float64(normal(2, TARGETS_IN.shape + (V,)))

    def loss(params):
      return jnp.sum(model.apply({'params': params}, INPUTS, TARGETS_IN) * w_out)

    value_and_grad = jax.jit(jax.value_and_grad(loss))
    grads = value_and_grad(params)[1]
    leaves, treedef = jax.tree.flatten(params)
    direction = jax.tree.unflatten(treedef, [np.float64(normal(3 + i, a.shape))
                                             for i, a in enumerate(leaves)])
    analytic = sum(np.vdot(g, d) for g, d in zip(jax.tree.leaves(grads),
                                               jax.tree.leaves(direction)))
    eps = 1e-5
    shifted = lambda sign: jax.tree.map(lambda a, d: a + sign * eps * d, params, direction)
    numeric = (value_and_grad(shifted(1))[0] - value_and_grad(shifted(-1))[0]) / (2 * eps)
    np.testing.assert_allclose(analytic, numeric, rtol=1e-7)
    # Every parameter array takes part: none has an all-zero gradient.
    for path, g in jax.tree_util.tree_leaves_with_path(grads):
      assert np.abs(g).max() > 1e-6, jax.tree_util.keystr(path)


@pytest.mark.parametrize('cell,gates', [('gru', 3), ('lstm', 4)])
def test_parameter_count(cell, gates):
  model = rs.RNNSeq2Seq(cell=cell, attention='additive', **SMALL)
  params = jax.eval_shape(lambda: model.init(KEY, INPUTS, TARGETS_IN))['params']
  C = 2 * H_ENC
  encoder = 2 * gates * H_ENC * (E + H_ENC + 1)  # two directions: W, U, b
  bridge = (gates // 2 if cell == 'lstm' else 1) * (C + 1) * H_DEC  # h (and c) of the LSTM
  decoder = gates * H_DEC * (E + C + H_DEC + 1)  # W_e, W_c, U, b
  attention = C * A + H_DEC * A + A  # W_k, W_q, v
  want = (V * E + encoder + bridge + decoder + attention + (H_DEC + C + 1) * O
          + (O + 1) * V)
  assert sum(np.size(a) for a in jax.tree.leaves(params)) == want


def test_bad_settings_are_named():
  for field, value in [('cell', 'elman'), ('attention', 'dot')]:
    model = rs.RNNSeq2Seq(**{**SMALL, field: value})
    with pytest.raises(ModelConfigError, match=field):
      jax.eval_shape(lambda: model.init(KEY, INPUTS, TARGETS_IN))


def test_learns_to_reverse_strings(tmp_path):
  """The real engine and the 'seq2seq' task: greedy decoding reverses held-out strings."""
  from experiments.configs import reverse_transformer
  from train import loop
  c = reverse_transformer.get_config()
  c.data.update(num_train=2000, num_eval=200, num_test=200, max_len=5, num_symbols=5)
  c.model = {'name': 'rnn_seq2seq', 'cell': 'gru', 'embed_dim': 16, 'encoder_size': 32,
             'decoder_size': 32, 'attention_size': 32, 'output_dim': 32,
             'dropout_rate': 0.0}
  c.update(num_steps=300, batch_size=32, eval_batch_size=200, log_every=100, eval_every=300,
           checkpoint_every=300, progress_bar=False)
  c.optimizer.update(learning_rate=1e-2, warmup_steps=20)
  _, test = loop.train_and_evaluate(c, tmp_path, devices=jax.devices()[:1])
  assert test['exact_match'] > 0.9  # a model ignoring the source: about 1/5^length

"""Attention against NumPy references: masks, activations, weights, heads, cache, positions."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from nets import attention
from nets.mlp import ModelConfigError

KEY = jax.random.key(0)


def normal(seed, shape):
  return np.random.default_rng(seed).normal(size=shape).astype(np.float32)


def reference_mask(batch, t, s, lengths=None, causal=False, window=None):
  """BxTxS, True where query i may see key j, by the definitions, one entry at a time."""
  allowed = np.ones((batch, t, s), bool)
  for b in range(batch):
    for i in range(t):
      for j in range(s):
        if lengths is not None and j >= lengths[b]:
          allowed[b, i, j] = False
        if causal and j > i:
          allowed[b, i, j] = False
        if window is not None and abs(i - j) > window:
          allowed[b, i, j] = False
  return allowed


REFERENCE_ACTIVATIONS = {
    'relu': lambda s: np.maximum(s, 0),
    'sigmoid': lambda s: 1 / (1 + np.exp(-s)),
    'squared_relu': lambda s: np.maximum(s, 0) ** 2,
}


def reference_attention(q, k, v, allowed_BxTxS, activation):
  """softmax(Q K^T / sqrt(d) + M) V, or f(s) masked and divided by the visible count."""
  q, k, v = (np.asarray(a, np.float64) for a in (q, k, v))
  scores = np.einsum('btnh,bsnh->bnts', q, k) / np.sqrt(q.shape[-1])
  allowed = allowed_BxTxS[:, None]
  if activation == 'softmax':
    scores = np.where(allowed, scores, -np.inf)
    weights = np.exp(scores - scores.max(-1, keepdims=True))
    weights /= weights.sum(-1, keepdims=True)
  else:
    weights = REFERENCE_ACTIVATIONS[activation](scores) * allowed
    weights /= np.maximum(allowed.sum(-1, keepdims=True), 1)
  return np.einsum('bnts,bsnh->btnh', weights, v), weights


# (T, S, key lengths per batch row, causal, window)
MASKS = {
    'none': (6, 6, None, False, None),
    'padding': (6, 6, [6, 3], False, None),
    'causal': (6, 6, None, True, None),
    'padding_causal': (6, 6, [4, 2], True, None),
    'cross_padding': (4, 6, [6, 2], False, None),
    'window': (6, 6, None, False, 1),
    'causal_window_padding': (6, 6, [6, 4], True, 2),
}
ACTIVATIONS = ['softmax', 'relu', 'sigmoid', 'squared_relu']


def built_mask(t, s, lengths, causal, window):
  """The same mask from nets.attention's builders (None when nothing is masked)."""
  key_mask = None if lengths is None else np.arange(s)[None, :] < np.array(lengths)[:, None]
  return attention.combine_masks(
      attention.position_mask(jnp.arange(t), jnp.arange(s), causal=causal, window=window),
      None if key_mask is None else attention.padding_mask(jnp.asarray(key_mask)))


@pytest.mark.parametrize('case', list(MASKS))
def test_mask_builders_match_definitions(case):
  t, s, lengths, causal, window = MASKS[case]
  mask = built_mask(t, s, lengths, causal, window)
  expected = reference_mask(2, t, s, lengths, causal, window)
  if mask is None:
    assert expected.all()
  else:
    assert mask.ndim == 4 and mask.dtype == bool
    np.testing.assert_array_equal(np.broadcast_to(mask, (2, 1, t, s))[:, 0], expected)
  if case == 'causal':
    np.testing.assert_array_equal(attention.causal_mask(t), mask)


@jax.jit
def every_activation(q, k, v, mask):
  """One compilation per shape: each activation, and softmax with its weights."""
  out = {a: attention.dot_product_attention(q, k, v, mask, activation=a) for a in ACTIVATIONS}
  out['softmax_weights'] = attention.dot_product_attention(q, k, v, mask, return_weights=True)
  return out


@pytest.mark.parametrize('case', list(MASKS))
def test_attention_matches_numpy(case):
  t, s, lengths, causal, window = MASKS[case]
  q, k, v = normal(1, (2, t, 3, 4)), normal(2, (2, s, 3, 4)), normal(3, (2, s, 3, 4))
  allowed = reference_mask(2, t, s, lengths, causal, window)
  outputs = every_activation(q, k, v, allowed[:, None])
  for activation in ACTIVATIONS:
    expected, _ = reference_attention(q, k, v, allowed, activation)
    np.testing.assert_allclose(outputs[activation], expected, rtol=1e-5, atol=1e-5,
                               err_msg=activation)
  # The explicit path that returns the weights agrees with the fused one.
  out, weights = outputs['softmax_weights']
  np.testing.assert_allclose(weights, reference_attention(q, k, v, allowed, 'softmax')[1],
                             atol=1e-6)
  np.testing.assert_allclose(out, outputs['softmax'], rtol=1e-5, atol=1e-6)


def test_weights_sum_to_one_and_vanish_on_masked_keys():
  t, s, lengths, causal, window = MASKS['causal_window_padding']
  q, k, v = normal(4, (2, t, 2, 8)), normal(5, (2, s, 2, 8)), normal(6, (2, s, 2, 8))
  mask = built_mask(t, s, lengths, causal, window)
  _, weights = jax.jit(lambda *a: attention.dot_product_attention(*a, return_weights=True))(
      q, k, v, mask)
  np.testing.assert_allclose(np.sum(weights, axis=-1), 1.0, rtol=1e-6)
  hidden = ~np.broadcast_to(reference_mask(2, t, s, lengths, causal, window)[:, None],
                            weights.shape)
  assert hidden.sum() > 0 and np.all(np.asarray(weights)[hidden] == 0.0)


def random_variables(module, *args, seed=7, **kwargs):
  """The module's variables with random params (biases too, so each one matters) and zero
  caches, from shapes alone: tracing `init` is cheaper than compiling it."""
  shapes = nn.meta.unbox(jax.eval_shape(lambda: module.init(KEY, *args, **kwargs)))
  rng = np.random.default_rng(seed)
  params = jax.tree.map(lambda a: 0.5 * rng.normal(size=a.shape).astype(a.dtype),
                        shapes.pop('params', {}))
  return {'params': params, **jax.tree.map(lambda a: np.zeros(a.shape, a.dtype), shapes)}


@pytest.mark.parametrize('fused', [False, True], ids=['separate', 'fused'])
@pytest.mark.parametrize('cross', [False, True], ids=['self', 'cross'])
def test_multi_head_attention_matches_numpy(fused, cross):
  x = normal(8, (2, 4, 5))
  context = normal(9, (2, 6, 7)) if cross else None
  s, lengths = (6, [6, 3]) if cross else (4, [4, 2])
  key_mask = np.arange(s)[None, :] < np.array(lengths)[:, None]
  module = attention.MultiHeadAttention(num_heads=2, head_dim=3, fused_qkv=fused)
  params = random_variables(module, x, context, key_mask_BxS=key_mask)['params']
  out = jax.jit(module.apply)({'params': params}, x, context, key_mask_BxS=key_mask)

  p = jax.tree.map(lambda a: np.asarray(a, np.float64), params)
  source = x if context is None else context
  project = lambda inp, layer: np.einsum('btd,d...->bt...', inp, layer['kernel']) + layer['bias']
  if fused and not cross:
    qkv = project(x, p['qkv'])  # B x T x 3 x N x H
    q, k, v = qkv[:, :, 0], qkv[:, :, 1], qkv[:, :, 2]
  elif fused:
    q, kv = project(x, p['query']), project(source, p['kv'])
    k, v = kv[:, :, 0], kv[:, :, 1]
  else:
    q, k, v = (project(inp, p[n]) for inp, n in ((x, 'query'), (source, 'key'),
                                                  (source, 'value')))
  allowed = reference_mask(2, x.shape[1], source.shape[1], lengths)
  heads, _ = reference_attention(q, k, v, allowed, 'softmax')
  expected = np.einsum('btnh,nhd->btd', heads, p['out']['kernel']) + p['out']['bias']
  np.testing.assert_allclose(out, expected, rtol=1e-4, atol=1e-4)
  # Fused or not, the same number of parameters.
  count = sum(np.size(a) for a in jax.tree.leaves(params))
  c = source.shape[-1]
  assert count == (5 * 6 + 6) + 2 * (c * 6 + 6) + (6 * 5 + 5)


@pytest.mark.parametrize('rotary,window,fused,chunks', [
    (False, None, False, (1,) * 6),
    (True, None, True, (1,) * 6),
    (True, 2, False, (3, 1, 2)),  # a prompt of 3 tokens at once, then 1, then 2
])
def test_cache_decoding_equals_full_causal_attention(rotary, window, fused, chunks):
  x = normal(10, (2, 6, 8))
  module = attention.MultiHeadAttention(num_heads=2, causal=True, rotary=rotary,
                                        window=window, fused_qkv=fused)
  variables = random_variables(module, x, decode=True)  # the cache is as long as x
  params = variables['params']
  full = jax.jit(module.apply)({'params': params}, x)
  step = jax.jit(lambda cache, chunk: module.apply({'params': params, 'cache': cache}, chunk,
                                                   decode=True, mutable=['cache']))
  cache, outputs, start = variables['cache'], [], 0
  np.testing.assert_array_equal(cache['cache_index'], [0, 0])
  for size in chunks:
    out, state = step(cache, x[:, start:start + size])
    cache, start = state['cache'], start + size
    outputs.append(out)
  np.testing.assert_array_equal(cache['cache_index'], [6, 6])
  np.testing.assert_allclose(np.concatenate(outputs, axis=1), full, rtol=1e-5, atol=1e-5)


def test_rotary_score_depends_only_on_relative_position():
  q, k = normal(11, (1, 1, 1, 16)), normal(12, (1, 1, 1, 16))
  rotated_score = jax.jit(lambda m, n: jnp.sum(attention.rotary_embedding(q, m[None]) *
                                               attention.rotary_embedding(k, n[None])))
  score = lambda m, n: float(rotated_score(jnp.array(m), jnp.array(n)))
  for m, n in [(0, 0), (3, 1), (2, 7)]:
    for shift in (1, 5, 40):
      assert score(m + shift, n + shift) == pytest.approx(score(m, n), rel=1e-4, abs=1e-4)
  assert score(3, 1) != pytest.approx(score(3, 2), abs=1e-3)  # the offset does matter
  assert score(0, 0) == pytest.approx(float(np.sum(q * k)), rel=1e-6)  # position 0: identity


def test_rotary_rotates_each_pair_by_position_times_frequency():
  x = normal(13, (1, 3, 1, 4))
  positions = np.array([0, 2, 5])
  out = np.asarray(jax.jit(attention.rotary_embedding)(x, jnp.asarray(positions)))
  for t, p in enumerate(positions):
    for i, theta in enumerate([1.0, 10000.0 ** -0.5]):  # theta_i = 10000^(-2i/H), H = 4
      a, b = x[0, t, 0, i], x[0, t, 0, i + 2]
      c, s = np.cos(p * theta), np.sin(p * theta)
      np.testing.assert_allclose(out[0, t, 0, [i, i + 2]], [c * a - s * b, s * a + c * b],
                                 rtol=1e-5, atol=1e-6)


def test_sinusoidal_encoding_matches_the_paper():
  pe = np.asarray(jax.jit(attention.sinusoidal_encoding, static_argnums=1)(jnp.arange(7), 6))
  for pos in range(7):
    for i in range(3):
      angle = pos / 10000 ** (2 * i / 6)
      np.testing.assert_allclose(pe[pos, [2 * i, 2 * i + 1]], [np.sin(angle), np.cos(angle)],
                                 atol=1e-6)


@pytest.mark.parametrize('kind', ['sinusoidal', 'learned'])
def test_positional_encoding_counts_positions_while_decoding(kind):
  x = normal(14, (2, 5, 6))
  module = attention.AddPositionalEncoding(kind, max_len=8)
  variables = random_variables(module, x, decode=True)
  full = np.asarray(jax.jit(module.apply)(variables, x))
  if kind == 'learned':
    np.testing.assert_allclose(full - x, np.broadcast_to(
        variables['params']['embedding'][None, :5], x.shape), atol=1e-6)
  else:
    np.testing.assert_allclose(full - x, np.broadcast_to(
        attention.sinusoidal_encoding(jnp.arange(5), 6)[None], x.shape), atol=1e-6)
  step = jax.jit(lambda cache, x_t: module.apply({**variables, 'cache': cache}, x_t,
                                                 decode=True, mutable=['cache']))
  cache, steps = variables['cache'], []
  for t in range(5):
    out, state = step(cache, x[:, t:t + 1])
    cache = state['cache']
    steps.append(out)
  np.testing.assert_allclose(np.concatenate(steps, axis=1), full, atol=1e-6)
  with pytest.raises(ModelConfigError, match='max_len=8'):
    jax.eval_shape(module.init, KEY, normal(0, (1, 9, 6)))


def test_bad_settings_are_named():
  x = jnp.zeros((1, 3, 4))
  init = lambda module, *args, **kwargs: jax.eval_shape(
      lambda: module.init(KEY, x, *args, **kwargs))
  with pytest.raises(ModelConfigError, match="activation='tanh'"):
    init(attention.MultiHeadAttention(2, activation='tanh'))
  with pytest.raises(ValueError, match='causal=True'):
    init(attention.MultiHeadAttention(2), decode=True)
  with pytest.raises(ValueError, match='rotary'):
    init(attention.MultiHeadAttention(2, rotary=True), x)
  with pytest.raises(ModelConfigError, match='num_heads=3'):
    init(attention.MultiHeadAttention(3))
  with pytest.raises(ModelConfigError, match='positional='):
    init(attention.AddPositionalEncoding('alibi'))

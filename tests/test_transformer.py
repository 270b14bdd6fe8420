"""Transformer: causality, padding, cached decoding, the block equations, tying, the NAT."""

import functools

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from nets import transformer as tr
from nets.mlp import ModelConfigError

KEY = jax.random.key(0)
SMALL = dict(vocab_size=13, num_layers=2, num_heads=2, model_dim=16, mlp_dim=32, max_len=8,
             dropout_rate=0.2)


def random_variables(module, *args, seed=0, scale=0.3, **kwargs):
  """Random params (biases and norms too, so each one matters), from shapes alone:
  tracing `init` is much cheaper than compiling it."""
  shapes = nn.meta.unbox(jax.eval_shape(lambda: module.init(KEY, *args, **kwargs)))
  rng = np.random.default_rng(seed)
  return jax.tree.map(lambda a: scale * rng.normal(size=a.shape).astype(a.dtype), shapes)


def tokens(seed, lengths, width, vocab=13):
  """Token ids in 1..vocab-1, then pad id 0 after each row's length."""
  ids = np.random.default_rng(seed).integers(1, vocab, size=(len(lengths), width))
  return np.where(np.arange(width)[None, :] < np.array(lengths)[:, None], ids, 0).astype(np.int32)


def count(tree):
  return sum(np.size(a) for a in jax.tree.leaves(tree))


# Three models that the tests share, so that each compiles once. INPUTS are padded.
CONFIGS = {
    'post_sinusoidal': dict(norm='post', positional='sinusoidal'),
    'pre_learned_fused': dict(norm='pre', positional='learned', fused_qkv=True, num_layers=1),
    'pre_rotary_window': dict(norm='pre', positional='rotary', attention_window=2,
                              num_layers=1),
}
INPUTS, TARGETS = tokens(1, [5, 3], 5), tokens(2, [6, 4], 6)


@functools.cache
def compiled(name):
  """(model, variables, forward): forward(variables, x, y, train) -> (encoded, logits)."""
  model = tr.Transformer(**{**SMALL, **CONFIGS[name]})
  variables = random_variables(model, INPUTS, TARGETS)

  def encode_decode(m, x, y, train):
    encoded = m.encode(x, x != 0, train=train)
    return encoded, m.decode(encoded, x != 0, y, train=train)
  forward = jax.jit(lambda variables, x, y, train=False, key=KEY: model.apply(
      variables, x, y, train, method=encode_decode, rngs={'dropout': key}),
      static_argnames='train')
  return model, variables, forward


@pytest.mark.parametrize('name', ['post_sinusoidal', 'pre_rotary_window'])
def test_future_targets_do_not_change_earlier_logits(name):
  _, variables, forward = compiled(name)
  changed = TARGETS.copy()
  changed[:, 3] = (changed[:, 3] % 12) + 1  # another real token at position 3
  (_, before), (_, after) = forward(variables, INPUTS, TARGETS), forward(variables, INPUTS,
                                                                           changed)
  np.testing.assert_allclose(after[:, :3], before[:, :3], rtol=1e-6, atol=1e-6)
  assert not np.allclose(after[:, 3:], before[:, 3:], atol=1e-3)


@pytest.mark.parametrize('name', ['pre_learned_fused', 'pre_rotary_window'])
def test_source_padding_changes_nothing(name):
  _, variables, forward = compiled(name)
  padded = np.pad(INPUTS, ((0, 0), (0, 3)))  # three more pads at the end
  (encoded, logits), (encoded_padded, logits_padded) = (forward(variables, INPUTS, TARGETS),
                                                        forward(variables, padded, TARGETS))
  for b, length in enumerate([5, 3]):
    np.testing.assert_allclose(encoded_padded[b, :length], encoded[b, :length],
                               rtol=1e-5, atol=1e-5)
  np.testing.assert_allclose(logits_padded, logits, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize('name', list(CONFIGS))
def test_cached_decoding_equals_full_recomputation(name):
  model, variables, forward = compiled(name)
  encoded, logits = forward(variables, INPUTS, TARGETS)
  mask = INPUTS != 0
  cache = tr.init_cache(model, variables['params'], encoded, mask, max_len=6)
  # Every cache leaf has a leading batch axis (what beam search tiles and reorders).
  assert all(np.shape(a)[0] == 2 for a in jax.tree.leaves(cache))
  step = jax.jit(lambda cache, encoded, mask, y_t: model.apply(
      {**variables, 'cache': cache}, encoded, mask, y_t, decode=True, method='decode',
      mutable=['cache']))
  targets, order = TARGETS, np.arange(2)
  for t in range(6):
    if t == 3:  # reorder the batch mid-way, as beam search does: rows must follow
      order, flip = order[::-1], lambda tree: jax.tree.map(lambda a: a[::-1], tree)
      cache, encoded, mask, targets = flip((cache, encoded, mask, targets))
    logits_t, state = step(cache, encoded, mask, targets[:, t:t + 1])
    cache = state['cache']
    np.testing.assert_allclose(logits_t[:, 0], logits[order, t], rtol=1e-4, atol=1e-4,
                               err_msg=f'position {t}')


def layer_norm(x, p):
  return (x - x.mean(-1, keepdims=True)) / np.sqrt(x.var(-1, keepdims=True) + 1e-6) * \
      p['scale'] + p['bias']


def self_attention(x, p, key_mask):
  proj = lambda n: np.einsum('btd,dnh->btnh', x, p[n]['kernel']) + p[n]['bias']
  q, k, v = proj('query'), proj('key'), proj('value')
  scores = np.einsum('btnh,bsnh->bnts', q, k) / np.sqrt(q.shape[-1])
  scores = np.where(key_mask[:, None, None, :], scores, -np.inf)
  weights = np.exp(scores - scores.max(-1, keepdims=True))
  weights /= weights.sum(-1, keepdims=True)
  heads = np.einsum('bnts,bsnh->btnh', weights, v)
  return np.einsum('btnh,nhd->btd', heads, p['out']['kernel']) + p['out']['bias']


def feed_forward(x, p):
  hidden = np.maximum(x @ p['wi']['kernel'] + p['wi']['bias'], 0)
  return hidden @ p['wo']['kernel'] + p['wo']['bias']


@pytest.mark.parametrize('norm', ['post', 'pre'])
def test_encoder_block_follows_its_equations(norm):
  block = tr.EncoderBlock(num_heads=2, mlp_dim=12, norm=norm)
  x = np.random.default_rng(7).normal(size=(2, 5, 8)).astype(np.float32)
  key_mask = np.array([[1, 1, 1, 1, 1], [1, 1, 1, 0, 0]], bool)
  variables = random_variables(block, x, key_mask, scale=0.5)
  out = jax.jit(block.apply)(variables, x, key_mask)
  p = jax.tree.map(lambda a: np.asarray(a, np.float64), variables['params'])
  norm_1, norm_2 = p['attention_residual']['norm'], p['mlp_residual']['norm']
  attend = lambda y: self_attention(y, p['self_attention'], key_mask)
  mlp = lambda y: feed_forward(y, p['mlp'])
  if norm == 'post':  # x <- LN(x + sublayer(x))
    h = layer_norm(x + attend(x), norm_1)
    expected = layer_norm(h + mlp(h), norm_2)
  else:  # x <- x + sublayer(LN(x))
    h = x + attend(layer_norm(x, norm_1))
    expected = h + mlp(layer_norm(h, norm_2))
  np.testing.assert_allclose(out, expected, rtol=1e-4, atol=1e-4)


def test_pre_and_post_norm_models_both_run_and_differ():
  logits = {}
  for name in ('post_sinusoidal', 'pre_learned_fused'):
    _, variables, forward = compiled(name)
    logits[name] = np.asarray(forward(variables, INPUTS, TARGETS)[1])
    assert logits[name].shape == (2, 6, 13) and np.all(np.isfinite(logits[name]))
    # Only a pre-norm stack needs a layer norm after its last block.
    assert ('final_norm' in variables['params']['encoder']) == name.startswith('pre')
  assert not np.allclose(logits['post_sinusoidal'], logits['pre_learned_fused'], atol=1e-2)


def test_dropout_only_in_training():
  _, variables, forward = compiled('post_sinusoidal')
  evaluated = forward(variables, INPUTS, TARGETS)[1]
  np.testing.assert_array_equal(evaluated, forward(variables, INPUTS, TARGETS,
                                                   key=jax.random.key(2))[1])
  trained_1, trained_2 = (forward(variables, INPUTS, TARGETS, train=True,
                                  key=jax.random.key(k))[1] for k in (1, 2))
  assert not np.allclose(trained_1, evaluated, atol=1e-3)
  assert not np.allclose(trained_1, trained_2, atol=1e-3)


def hand_count(v_source, v_target, d, f, layers, shared_vocab_and_tied, tied, pre):
  """Parameters of the Transformer, counted from the paper's equations."""
  attention = 4 * (d * d + d)  # W^Q, W^K, W^V, W^O (N*H = D) and their biases
  ffn = d * f + f + f * d + d
  norm = 2 * d  # scale and offset
  encoder = layers * (attention + ffn + 2 * norm) + (norm if pre else 0)
  decoder = layers * (2 * attention + ffn + 3 * norm) + (norm if pre else 0)
  if shared_vocab_and_tied:
    embeddings = v_source * d  # one table: source, target and output
  else:
    embeddings = v_source * d + v_target * d + (0 if tied else d * v_target + v_target)
  return encoder + decoder + embeddings


@pytest.mark.parametrize('target_vocab,share,norm', [
    (None, True, 'post'), (None, False, 'post'), (7, True, 'pre'), (7, False, 'post')])
def test_parameter_count_and_tied_output(target_vocab, share, norm):
  model = tr.Transformer(**SMALL, target_vocab_size=target_vocab, share_embeddings=share,
                         norm=norm, positional='sinusoidal')  # sinusoids have no parameters
  inputs, targets = tokens(12, [3], 3), tokens(13, [2], 2, vocab=7)
  params = jax.eval_shape(model.init, KEY, inputs, targets)['params']
  assert count(params) == hand_count(13, target_vocab or 13, 16, 32, 2,
                                     share and target_vocab is None, share, norm == 'pre')
  assert ('output' not in params) == share
  if share:  # logits = h E^T with E the target embedding
    variables = random_variables(model, inputs, targets)
    table = variables['params']['embed' if target_vocab is None else 'target_embed']['embedding']
    h = np.random.default_rng(14).normal(size=(2, 3, 16)).astype(np.float32)
    logits = model.apply(variables, h, method='logits')
    np.testing.assert_allclose(logits, h @ np.asarray(table).T, rtol=1e-5, atol=1e-5)


def test_decoder_block_without_encoder_is_a_gpt_block():
  y = jnp.zeros((2, 5, 16))
  params = jax.eval_shape(tr.DecoderBlock(num_heads=2, mlp_dim=32).init, KEY, y)['params']
  assert set(params) == {'self_attention', 'self_attention_residual', 'mlp', 'mlp_residual'}
  with_encoder = jax.eval_shape(tr.DecoderBlock(num_heads=2, mlp_dim=32).init, KEY, y, y,
                                jnp.ones((2, 5), bool))['params']
  assert {'cross_attention', 'cross_attention_residual'} <= set(with_encoder)


def test_non_autoregressive_shapes_length_and_unmasked_decoder():
  model = tr.NonAutoregressiveTransformer(**{**SMALL, 'num_layers': 1})
  lengths = [3, 5]
  targets_mask = np.arange(5)[None, :] < np.array(lengths)[:, None]
  variables = random_variables(model, INPUTS, targets_mask)
  run = jax.jit(lambda x, mask: model.apply(variables, x, mask, method=lambda m, x, mask: (
      *m(x, mask), m.encode(x, x != 0))))
  logits, length_logits, encoded = run(INPUTS, targets_mask)
  assert logits.shape == (2, 5, 13) and length_logits.shape == (2, 8)
  default = jax.eval_shape(model.apply, variables, INPUTS)  # no mask: max_len positions
  assert default[0].shape == (2, 8, 13) and default[1].shape == (2, 8)
  # Padding the source or the target changes nothing on the real positions.
  logits_p, length_logits_p, _ = run(np.pad(INPUTS, ((0, 0), (0, 3))),
                                     np.pad(targets_mask, ((0, 0), (0, 2))))
  np.testing.assert_allclose(length_logits_p, length_logits, rtol=1e-5, atol=1e-5)
  for b, length in enumerate(lengths):
    np.testing.assert_allclose(logits_p[b, :length], logits[b, :length], rtol=1e-4, atol=1e-4)
  # The decoder is not causal: a longer target changes the first position's logits.
  longer = targets_mask.copy()
  longer[0, 3] = True
  logits_longer, _, _ = run(INPUTS, longer)
  assert not np.allclose(logits_longer[0, 0], logits[0, 0], atol=1e-4)
  np.testing.assert_allclose(logits_longer[1], logits[1], rtol=1e-6, atol=1e-6)
  # The length classifier is a linear map of the mean encoding over the real positions.
  p = variables['params']['length_head']
  pooled = np.stack([np.asarray(encoded[b, :n]).mean(0) for b, n in enumerate([5, 3])])
  np.testing.assert_allclose(length_logits, pooled @ p['kernel'] + p['bias'], rtol=1e-4,
                             atol=1e-4)


def test_bad_settings_are_named():
  inputs, targets = tokens(0, [2], 2), tokens(0, [2], 2)
  for fields, pattern in [(dict(norm='sandwich'), "norm='sandwich'"),
                          (dict(positional='alibi'), "positional='alibi'"),
                          (dict(num_heads=3), 'num_heads=3'),
                          (dict(mlp_activation='swish'), "mlp_activation='swish'"),
                          (dict(max_len=1), r'config\.model\.max_len=1')]:
    with pytest.raises(ModelConfigError, match=pattern):
      jax.eval_shape(tr.Transformer(**{**SMALL, **fields}).init, KEY, inputs, targets)

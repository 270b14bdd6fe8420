"""Kim's text CNN (nets/text_cnn.py): convolution and max-over-time pooling against NumPy,
padding that changes nothing, sentences shorter than a filter, word2vec loading."""

import jax
import jax.numpy as jnp
import numpy as np
from ml_collections import ConfigDict

import nets
from train import pretrained

V, K, D, F = 12, 3, 6, 4
# Right-padded rows of 7, 2 (shorter than every filter), 4 (shorter than 5) and 0 words.
TOKENS_BxT = np.array([[3, 5, 7, 2, 9, 11, 4],
                       [6, 8, 0, 0, 0, 0, 0],
                       [2, 2, 10, 3, 0, 0, 0],
                       [0, 0, 0, 0, 0, 0, 0]], np.int32)


def model_and_params(widths=(3, 4, 5)):
  model = nets.create('text_cnn', vocab_size=V, num_outputs=K, embed_dim=D, widths=widths,
                      features=F)
  params = model.init(jax.random.key(0), jnp.asarray(TOKENS_BxT))
  # Non-zero biases, so that a pooled padded window (relu(b)) would show.
  params = jax.tree.map(lambda p: p + 0.3 if p.ndim == 1 else p, params)
  return model, params


def numpy_logits(params, tokens_BxT, widths):
  """z_h[f] = max over windows t <= n-h+1 (or t = 1 if n < h) of relu(b + W_h . x[t:t+h])."""
  p = jax.tree.map(np.asarray, params['params'])
  rows = []
  for tokens_T in tokens_BxT:
    words = tokens_T[tokens_T != 0]
    n = len(words)
    z = []
    for i, h in enumerate(widths):
      x_SxD = np.zeros((max(n, h), D))  # the words, then zero vectors up to one window
      x_SxD[:n] = p['embed']['embedding'][words]
      kernel_HxDxF, bias_F = p[f'conv_{i}']['kernel'], p[f'conv_{i}']['bias']
      c_WxF = np.array([np.maximum(0, bias_F + np.einsum('ud,udf->f', x_SxD[t:t + h],
                                                         kernel_HxDxF))
                        for t in range(max(n - h + 1, 1))])
      z.append(c_WxF.max(axis=0))
    rows.append(np.concatenate(z) @ p['output']['kernel'] + p['output']['bias'])
  return np.stack(rows)


def test_convolution_and_max_over_time_match_numpy():
  widths = (3, 4, 5)
  model, params = model_and_params(widths)
  got_BxK = model.apply(params, jnp.asarray(TOKENS_BxT))
  np.testing.assert_allclose(got_BxK, numpy_logits(params, TOKENS_BxT, widths), atol=1e-5)
  assert params['params']['conv_2']['kernel'].shape == (5, D, F)
  assert params['params']['output']['kernel'].shape == (len(widths) * F, K)


def test_extra_padding_never_changes_the_logits():
  model, params = model_and_params()
  apply = jax.jit(model.apply)
  base_BxK = apply(params, jnp.asarray(TOKENS_BxT))
  padded_BxT = np.pad(TOKENS_BxT, ((0, 0), (0, 9)))
  np.testing.assert_allclose(apply(params, jnp.asarray(padded_BxT)), base_BxK, atol=1e-6)


def test_a_batch_shorter_than_the_widest_filter():
  model, params = model_and_params()
  short_BxT = TOKENS_BxT[1:2, :2]  # two words, filters up to 5 wide
  got_1xK = model.apply(params, jnp.asarray(short_BxT))
  assert got_1xK.shape == (1, K) and np.all(np.isfinite(got_1xK))
  np.testing.assert_allclose(got_1xK, model.apply(params, jnp.asarray(TOKENS_BxT))[1:2],
                             atol=1e-6)
  # Training mode (dropout on the pooled features) runs on it too, and differs.
  dropped_1xK = model.apply(params, jnp.asarray(short_BxT), train=True,
                            rngs={'dropout': jax.random.key(1)})
  assert dropped_1xK.shape == (1, K) and not np.allclose(dropped_1xK, got_1xK)


def test_word2vec_vectors_load_into_the_embedding_table(tmp_path):
  path = tmp_path / 'vectors.txt'
  path.write_text(f'1 {D}\nfilm ' + ' '.join(['1'] * D) + '\n')

  class Tokenizer:
    tokens = ['<pad>', '<unk>', 'film'] + [f'w{i}' for i in range(V - 3)]

  init_params = pretrained.word_vectors(ConfigDict({'pretrained_embeddings': str(path)}),
                                        {'tokenizer': Tokenizer()})
  _, params = model_and_params()
  table_VxD = init_params(params['params'])['embed']['embedding']
  assert np.ptp(np.asarray(table_VxD[2])) == 0 and table_VxD[2, 0] > 0  # all-ones, rescaled
  np.testing.assert_array_equal(table_VxD[3:], params['params']['embed']['embedding'][3:])

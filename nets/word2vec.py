"""word2vec (Mikolov et al. 2013): skip-gram and CBOW, scored on chunks of a word stream.

Two tables: the input vectors v_w (the word vectors that are kept, [V, D], drawn from
Uniform(-0.5/D, 0.5/D) as in word2vec.c) and the output vectors u ([V, D] for negative
sampling and the full softmax, one per inner node of the Huffman tree, [V - 1, D], for
hierarchical softmax; zeros at first). A centre word w with contexts C(w) gives

    skip-gram  every context c in C(w) predicts w:    h = v_c             (|C(w)| pairs)
    CBOW       their mean predicts w:                 h = (1/|C(w)|) sum_{c in C(w)} v_c

and each prediction costs, with sigma(x) = 1 / (1 + e^-x),

    negative sampling     -log sigma(h.u_w) - sum_{k=1..K} log sigma(-h.u_{n_k}),  n_k ~ P_n
    hierarchical softmax  -sum_l log sigma((1 - 2 c_l) h.u_{n_l})   (the Huffman path of w)
    full softmax          -log softmax(U h)_w

`Word2Vec.__call__` returns the word vectors v of the ids it is given (what evaluation
and export read). The functions below compute h and the scores for a batch of *chunks*:
G consecutive centres of the stream with W words of context on either side, rows
e_BxSxD (S = G + 2W) gathered once per chunk, the centres at e[:, W:W+G] (see
train/word2vec_pairs.py). The train step gathers only the rows a batch touches, applies
these functions and scatters the update back; that loop lives in train/word2vec_task.py.
"""

import flax.linen as nn
import jax
import jax.numpy as jnp

from nets.mlp import ModelConfigError, check_choice

ARCHITECTURES = {'skipgram': 'every context predicts the centre',
                 'cbow': 'the mean of the contexts predicts the centre'}
OUTPUTS = {'negative': 'negative sampling', 'hierarchical': 'hierarchical softmax',
           'softmax': 'full softmax'}


def pair_matrix(pair_mask_BxGxC):
  """m[b, j, W + j + offset_o] = pair_mask[b, j, o], zero elsewhere: [B, G, S].

  The pairs of a chunk as a band of the [G, S] matrix of centre-by-row scores u_j . e_s
  (one matrix product gives them all). Built by reshapes alone: row j padded to S + 1
  entries and the rows laid end to end put entry k of row j at j (S + 1) + k
  = j S + (j + k), i.e. at [j, j + k] of a [G, S] matrix.
  """
  batch, num_centers, num_offsets = pair_mask_BxGxC.shape
  window = num_offsets // 2
  length = num_centers + 2 * window
  row_BxGx2W1 = jnp.concatenate([pair_mask_BxGxC[:, :, :window],
                                 jnp.zeros((batch, num_centers, 1), pair_mask_BxGxC.dtype),
                                 pair_mask_BxGxC[:, :, window:]], axis=-1)
  flat = jnp.pad(row_BxGx2W1, ((0, 0), (0, 0), (0, length - 2 * window))).reshape(batch, -1)
  return flat[:, :num_centers * length].reshape(batch, num_centers, length)


def cbow_hidden(e_BxSxD, pair_mask_BxGxC):
  """h_j = (1/|C_j|) sum_{c in C_j} v_c for every centre j, [B, G, D] (0 if C_j is empty).

  As in word2vec.c (and gensim), every context word receives the whole gradient of h,
  not 1/|C_j| of it: h = s - stop_gradient(s - s/|C_j|) has the mean's value and the
  sum's gradient. The learning rate of CBOW (0.05) is tuned for that rule.
  """
  sum_BxGxD = jnp.einsum('bgs,bsd->bgd', pair_matrix(pair_mask_BxGxC), e_BxSxD)
  count_BxGx1 = jnp.maximum(jnp.sum(pair_mask_BxGxC, -1, keepdims=True), 1.0)
  return sum_BxGxD - jax.lax.stop_gradient(sum_BxGxD - sum_BxGxD / count_BxGx1)


class Word2Vec(nn.Module):
  """Word ids [...] -> their word vectors [..., D]; holds the input and output tables."""
  vocab_size: int
  embed_dim: int = 100
  architecture: str = 'skipgram'
  output: str = 'negative'

  def setup(self):
    check_choice('architecture', self.architecture, ARCHITECTURES)
    check_choice('output', self.output, OUTPUTS)
    if self.vocab_size < 2:
      raise ModelConfigError(f'vocab_size={self.vocab_size}: word2vec needs at least 2 '
                             'words; lower config.data.min_count.')
    bound = 0.5 / self.embed_dim
    self.input_embedding = self.param(
        'input_embedding',
        lambda key, shape: jax.random.uniform(key, shape, jnp.float32, -bound, bound),
        (self.vocab_size, self.embed_dim))
    rows = self.vocab_size - 1 if self.output == 'hierarchical' else self.vocab_size
    self.output_embedding = self.param('output_embedding', nn.initializers.zeros,
                                       (rows, self.embed_dim))

  def __call__(self, words, *, train: bool = False):
    del train
    return self.input_embedding[words]

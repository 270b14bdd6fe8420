"""The window classifier (Collobert & Weston 2008; Collobert et al. 2011): a word, judged by
the words around it.

For the centre word w_t and a half-width k, the window's word vectors are concatenated
(positions outside the sentence read PAD, whose vector is learned like any other), passed
through one hidden layer, and scored:

    x_t = [E w_{t-k} ; ... ; E w_t ; ... ; E w_{t+k}]          (2k+1) D inputs
          (and per-token features, embedded the same way, appended: [F f_{t-k} ; ...])
    h_t = f(W x_t + b)                                          f = tanh by default
    s_t = U h_t + c                                             num_outputs scores

num_outputs = K gives a softmax tagger over the CoNLL classes; num_outputs = 1 gives the
single score s(window) of the max-margin objective (train/tagging_tasks.py), where a
window whose centre is a location must outscore, by 1, the same window with a random
centre word. `centres_BxTxS` asks for those corrupted windows: S copies of each window with
the centre word replaced, scored by the same network: the model then returns the true windows'
scores [B, T, num_outputs] and the corrupted ones' [B, T, S, num_outputs]. Since W x_t is a
sum of one block of W per slot of the window, a corrupted window's is W x_t + W_k (E c - E w_t)
(W_k: the centre word's block).

Dropout (rate p) falls on each embedded position (all windows that hold it see the same
vector, a corrupted centre its own) and on h_t.
"""

from typing import Sequence

import flax.linen as nn
import jax.numpy as jnp

from nets.mlp import ACTIVATIONS, ModelConfigError, check_choice


class WindowClassifier(nn.Module):
  """Token ids [B, T] (and feature ids [B, T] each) -> scores [B, T, num_outputs]."""
  vocab_size: int
  num_outputs: int = 1
  half_width: int = 2  # k: words each side of the centre
  embed_dim: int = 50
  feature_sizes: Sequence[int] = ()  # vocabulary size of each feature (set by the task)
  feature_dim: int = 8
  hidden: int = 100
  activation: str = 'tanh'
  dropout_rate: float = 0.0
  pad_id: int = 0

  @nn.compact
  def __call__(self, tokens_BxT, *features_BxT, centres_BxTxS=None, train: bool = False):
    check_choice('activation', self.activation, ACTIVATIONS)
    if len(features_BxT) != len(self.feature_sizes):
      raise ModelConfigError(f'config.model.feature_sizes has {len(self.feature_sizes)} '
                             f'entries but the model was given {len(features_BxT)} feature '
                             'arrays; name one size per feature.')
    k, length = self.half_width, tokens_BxT.shape[1]
    f = ACTIVATIONS[self.activation]
    dropout = nn.Dropout(self.dropout_rate, deterministic=not train)
    embed = nn.Embed(self.vocab_size, self.embed_dim, name='embed')
    tables = [embed] + [nn.Embed(size, self.feature_dim, name=f'feature_{i}')
                        for i, size in enumerate(self.feature_sizes)]
    # Each position is embedded once (PAD k times on either side of the row); window t is
    # then the slices t..t+2k of the padded rows, words first, then each feature.
    parts = []
    for table, ids_BxT in zip(tables, (tokens_BxT, *features_BxT)):
      padded_BxT2k = jnp.pad(ids_BxT, ((0, 0), (k, k)), constant_values=self.pad_id)
      e_BxT2kxD = dropout(table(padded_BxT2k))
      parts += [e_BxT2kxD[:, j:j + length] for j in range(2 * k + 1)]
    hidden = nn.Dense(self.hidden, name='hidden')
    output = nn.Dense(self.num_outputs, name='output')
    pre_BxTxH = hidden(jnp.concatenate(parts, axis=-1))
    scores_BxTxK = output(dropout(f(pre_BxTxH)))
    if centres_BxTxS is None:
      return scores_BxTxK
    # W x is a sum of one block of W per window slot, so a new centre word c changes it by
    # W_k (E c - E w_t): S corrupted windows cost S matmuls of D, not of (2k+1) D.
    w_k_DxH = hidden.variables['params']['kernel'][k * self.embed_dim:(k + 1) * self.embed_dim]
    change_BxTxSxD = dropout(embed(centres_BxTxS)) - parts[k][:, :, None, :]
    corrupt_pre_BxTxSxH = pre_BxTxH[:, :, None, :] + change_BxTxSxD @ w_k_DxH
    return scores_BxTxK, output(dropout(f(corrupt_pre_BxTxSxH)))

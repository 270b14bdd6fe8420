"""Recurrent taggers and sentence classifiers: embeddings -> (Bi)RNN -> a tag per token, or a class.

Both read token ids w_1..w_T (PAD where a row is shorter) and, optionally, per-token
feature ids f_t^(1), f_t^(2), ... (part-of-speech, chunk tags) embedded beside the words:

    x_t = [E w_t ; F_1 f_t^(1) ; F_2 f_t^(2) ; ...]
    h_t = [h->_t ; h<-_t] = BiRNN(x_1..x_T)_t        (nets.rnn.RNN: stacked, dropout between
                                                      layers, padded steps skipped)

    RNNTagger       z_t = W h_t + b                  logits over the K tags of token t
    RNNClassifier   s = pool_t h_t,  z = W s + b     logits over the K classes of the sentence
                    pool: 'max' (per unit, over real tokens), 'mean' (over real tokens), or
                    'last' ([h->_T ; h<-_1]: each direction's final state)

Dropout (rate p) is applied to x_t, between RNN layers and to h_t (or s) before the output
layer. Padding never changes a real token's output: the RNN skips padded steps, and the
pools read real tokens only.
"""

from typing import Sequence

import flax.linen as nn
import jax.numpy as jnp

from nets.mlp import ModelConfigError, check_choice
from nets.rnn import RNN, CELLS


class Encoder(nn.Module):
  """x_t (words and features embedded), then the RNN: (h_BxTxH, final states, real_BxT)."""
  vocab_size: int
  embed_dim: int
  feature_sizes: Sequence[int]
  feature_dim: int
  cell: str
  hidden_size: int
  num_layers: int
  bidirectional: bool
  dropout_rate: float
  pad_id: int

  @nn.compact
  def __call__(self, tokens_BxT, features, train: bool):
    check_choice('cell', self.cell, CELLS)
    if len(features) != len(self.feature_sizes):
      raise ModelConfigError(f'config.model.feature_sizes has {len(self.feature_sizes)} '
                             f'entries but the model was given {len(features)} feature '
                             'arrays; name one size per feature.')
    real_BxT = tokens_BxT != self.pad_id
    parts = [nn.Embed(self.vocab_size, self.embed_dim, name='embed')(tokens_BxT)]
    for i, (ids_BxT, size) in enumerate(zip(features, self.feature_sizes)):
      parts.append(nn.Embed(size, self.feature_dim, name=f'feature_{i}')(ids_BxT))
    x_BxTxD = nn.Dropout(self.dropout_rate, deterministic=not train)(
        jnp.concatenate(parts, axis=-1))
    h_BxTxH, finals = RNN(self.cell, self.hidden_size, self.num_layers, self.bidirectional,
                          dropout_rate=self.dropout_rate, name='rnn')(
                              x_BxTxD, real_BxT, train=train)
    h_BxTxH = nn.Dropout(self.dropout_rate, deterministic=not train)(h_BxTxH)
    return h_BxTxH, finals, real_BxT


class _RNNModel(nn.Module):
  """The fields the tagger and the classifier share; `vocab_size`, `pad_id` come from the data."""
  vocab_size: int
  num_outputs: int = 2
  embed_dim: int = 100
  feature_sizes: Sequence[int] = ()  # vocabulary size of each feature (set by the task)
  feature_dim: int = 16
  cell: str = 'lstm'
  hidden_size: int = 128
  num_layers: int = 1
  bidirectional: bool = True
  dropout_rate: float = 0.0
  pad_id: int = 0

  def encoder(self) -> Encoder:
    return Encoder(self.vocab_size, self.embed_dim, tuple(self.feature_sizes), self.feature_dim,
                   self.cell, self.hidden_size, self.num_layers, self.bidirectional,
                   self.dropout_rate, self.pad_id, name='encoder')


class RNNTagger(_RNNModel):
  """Token ids [B, T] (and feature ids [B, T] each) -> tag logits [B, T, num_outputs]."""

  @nn.compact
  def __call__(self, tokens_BxT, *features_BxT, train: bool = False):
    h_BxTxH, _, _ = self.encoder()(tokens_BxT, features_BxT, train)
    return nn.Dense(self.num_outputs, name='output')(h_BxTxH)


POOLS = ('max', 'mean', 'last')


class RNNClassifier(_RNNModel):
  """Token ids [B, T] -> class logits [B, num_outputs], pooling the RNN's outputs."""
  pool: str = 'max'

  @nn.compact
  def __call__(self, tokens_BxT, *features_BxT, train: bool = False):
    if self.pool not in POOLS:
      raise ModelConfigError(f'config.model.pool={self.pool!r} is not one of {list(POOLS)}.')
    h_BxTxH, finals, real_BxT = self.encoder()(tokens_BxT, features_BxT, train)
    real_BxTx1 = real_BxT[:, :, None]
    if self.pool == 'max':
      s_BxH = jnp.max(jnp.where(real_BxTx1, h_BxTxH, -jnp.inf), axis=1)
      s_BxH = jnp.where(jnp.any(real_BxT, axis=1)[:, None], s_BxH, 0.0)  # an empty row: 0
    elif self.pool == 'mean':
      count_Bx1 = jnp.maximum(jnp.sum(real_BxTx1, axis=1), 1)
      s_BxH = jnp.sum(h_BxTxH * real_BxTx1, axis=1) / count_Bx1
    else:
      s_BxH = jnp.concatenate([_output(state) for state in _directions(finals[-1])], axis=-1)
      s_BxH = nn.Dropout(self.dropout_rate, deterministic=not train)(s_BxH)
    return nn.Dense(self.num_outputs, name='output')(s_BxH)


def _directions(final):
  """The top layer's final state as a tuple of directions."""
  return final if isinstance(final, tuple) and not hasattr(final, 'h') else (final,)


def _output(state):
  """A cell's output from its final state (the LSTM's h; the others' state itself)."""
  return state.h if hasattr(state, 'h') else state

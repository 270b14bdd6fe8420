"""A neural bag of words: the simplest sentence classifier that learns its word vectors.

The deep averaging network of Iyyer et al. (2015): a sentence is the mean of the
embeddings of its real (non-padding) tokens, passed through an MLP:

    s = (1 / n) sum_{t : w_t != PAD} E[w_t],      z = MLP(s)        (logits over K classes)

Word order is ignored, which is why it is the baseline every sequence model must beat.
"""

from typing import Sequence

import flax.linen as nn
import jax.numpy as jnp

from nets.mlp import ACTIVATIONS, check_choice


class BagOfWords(nn.Module):
  """Token ids [B, L] -> logits [B, num_outputs]; `vocab_size` and `pad_id` come from the data."""
  vocab_size: int
  num_outputs: int = 2
  embed_dim: int = 64
  hidden: Sequence[int] = (64,)
  activation: str = 'relu'
  dropout_rate: float = 0.0
  pad_id: int = 0

  @nn.compact
  def __call__(self, tokens_BxL, *, train: bool = False):
    check_choice('activation', self.activation, ACTIVATIONS)
    real_BxL = (tokens_BxL != self.pad_id).astype(jnp.float32)
    e_BxLxD = nn.Embed(self.vocab_size, self.embed_dim)(tokens_BxL)
    e_BxLxD = nn.Dropout(self.dropout_rate, deterministic=not train)(e_BxLxD)
    count_Bx1 = jnp.maximum(real_BxL.sum(axis=1, keepdims=True), 1.0)
    h_BxD = jnp.einsum('bld,bl->bd', e_BxLxD, real_BxL) / count_Bx1
    for width in self.hidden:
      h_BxD = ACTIVATIONS[self.activation](nn.Dense(width)(h_BxD))
      h_BxD = nn.Dropout(self.dropout_rate, deterministic=not train)(h_BxD)
    return nn.Dense(self.num_outputs)(h_BxD)

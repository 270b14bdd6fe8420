"""The convolutional sentence classifier of Kim (2014): filters over word windows, max over time.

A sentence of n real words w_1..w_n (right-padded with PAD to T) is embedded, PAD rows set
to zero, x_t = E[w_t] in R^D. For each filter width h (3, 4, 5) a bank of F filters
W_h in R^{h x D x F} slides over the windows of h consecutive words (a narrow convolution):

    c_h[t, f] = relu(b_h[f] + sum_{u<h, d} W_h[u, d, f] * x[t + u, d]),   t = 1..n-h+1

and max-over-time pooling keeps each filter's strongest window, over real windows only:

    z_h[f] = max_{t <= n-h+1} c_h[t, f]        (a sentence shorter than h, n < h, has one
                                                 window: its words followed by zero vectors)
    z = [z_3 ; z_4 ; z_5]                       (3F features)
    logits = W_o dropout_p(z) + b_o             (softmax over K classes in the loss)

A window that reaches past the sentence's end is never pooled, and PAD embeds to zero, so
more padding never changes the logits. Kim regularised with dropout p = 0.5 on z (here)
and a max-norm constraint on the columns of W_o (not here: the engine has none); the
embeddings start random or from word2vec vectors (config.pretrained_embeddings, loaded by
the task) and are trained (Kim's 'non-static').
"""

from typing import Sequence

import flax.linen as nn
import jax.numpy as jnp

from nets.mlp import ModelConfigError


def max_over_time(c_BxWxF, length_B, width: int):
  """z[b, f] = max of c[b, t, f] over the windows t < max(length_b - width + 1, 1)."""
  windows_B = jnp.maximum(length_B - width + 1, 1)
  real_BxW = jnp.arange(c_BxWxF.shape[1])[None, :] < windows_B[:, None]
  return jnp.max(jnp.where(real_BxW[:, :, None], c_BxWxF, -jnp.inf), axis=1)


class TextCNN(nn.Module):
  """Token ids [B, T] -> logits [B, num_outputs]; `vocab_size` and `pad_id` come from the data."""
  vocab_size: int
  num_outputs: int = 2
  embed_dim: int = 300
  widths: Sequence[int] = (3, 4, 5)
  features: int = 100  # filters (feature maps) per width
  dropout_rate: float = 0.5
  pad_id: int = 0

  @nn.compact
  def __call__(self, tokens_BxT, *, train: bool = False):
    if not self.widths or min(self.widths) < 1 or self.features < 1:
      raise ModelConfigError(f'config.model.widths={tuple(self.widths)} and features='
                             f'{self.features} must be positive; e.g. widths=(3, 4, 5), '
                             'features=100.')
    real_BxT = tokens_BxT != self.pad_id
    length_B = jnp.sum(real_BxT, axis=1)
    x_BxTxD = nn.Embed(self.vocab_size, self.embed_dim, name='embed')(tokens_BxT)
    x_BxTxD = x_BxTxD * real_BxT[:, :, None]
    short = max(self.widths) - x_BxTxD.shape[1]  # a batch shorter than the widest filter
    x_BxTxD = jnp.pad(x_BxTxD, ((0, 0), (0, max(short, 0)), (0, 0)))
    pooled = []
    for i, h in enumerate(self.widths):
      conv = nn.Conv(self.features, (h,), padding='VALID', name=f'conv_{i}')
      pooled.append(max_over_time(nn.relu(conv(x_BxTxD)), length_B, h))
    z_BxZ = nn.Dropout(self.dropout_rate, deterministic=not train)(
        jnp.concatenate(pooled, axis=-1))
    return nn.Dense(self.num_outputs, name='output')(z_BxZ)

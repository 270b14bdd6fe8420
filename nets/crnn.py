"""CRNN (Shi et al., 2015): convolutions read an image line, a BiLSTM reads its columns.

    f = ConvBlocks(x)                       x: B x H x W x C  ->  B x H' x T x C'
    z_t = [f[:, 0, t, :], ..., f[:, H'-1, t, :]]     frame t = one column of feature maps
    h_t = BiLSTM(z)_t                       (nets.rnn; concat of both directions)
    logits_t = V h_t + c                    K classes, class 0 CTC's blank

Each conv block (nets.cnn.ConvBlock) pools by pool_size, so T = W // s with
s = pool_size ** len(features): frame t sees columns [s t, s (t + 1)) most directly. An
image holds content only up to its `width` (the rest is blank padding), so frame t is
real iff s t < width; the BiLSTM skips padded frames (its backward direction starts at
the last real one) and the model returns the frame mask for the loss and the decoders.
"""

from typing import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from nets.cnn import ConvBlock
from nets.mlp import ACTIVATIONS, INITIALIZERS, ModelConfigError, check_choice
from nets.rnn import RNN


class CRNN(nn.Module):
  """Conv blocks of widths `features` -> columns as frames -> BiLSTM -> per-frame logits."""
  features: Sequence[int] = (16, 32, 64)
  kernel_size: int = 3
  batch_norm: bool = True
  pool: str = 'max'
  pool_size: int = 2
  activation: str = 'relu'
  initializer: str = 'he'
  cell: str = 'lstm'
  hidden_size: int = 128
  num_layers: int = 1
  dropout_rate: float = 0.0
  num_classes: int = 11  # K, the blank included
  batch_axis_name: str | None = None

  def downsampling(self) -> int:
    """s: image columns per output frame."""
    return self.pool_size ** len(self.features)

  @nn.compact
  def __call__(self, x_BxHxWxC: jax.Array, width_B: jax.Array, *, train: bool = False):
    """Returns (logits_BxTxK, frame_mask_BxT)."""
    check_choice('activation', self.activation, ACTIVATIONS)
    check_choice('initializer', self.initializer, INITIALIZERS)
    check_choice('pool', self.pool, ('avg', 'max'))  # every block pools: that makes frames
    if x_BxHxWxC.shape[2] < self.downsampling():
      raise ModelConfigError(
          f'config.model.features={tuple(self.features)} with pool_size={self.pool_size} '
          f'shrinks the width by {self.downsampling()}, more than the images are wide '
          f'({x_BxHxWxC.shape[2]}); use fewer conv blocks.')
    f = x_BxHxWxC
    for width in self.features:
      f = ConvBlock(width, self.kernel_size, 1, 'SAME', self.batch_norm, self.pool,
                    self.pool_size, self.activation, self.initializer,
                    self.batch_axis_name)(f, train=train)
    B, H, T, C = f.shape
    z_BxTxD = f.transpose(0, 2, 1, 3).reshape(B, T, H * C)
    mask_BxT = jnp.arange(T)[None, :] * self.downsampling() < width_B[:, None]
    z_BxTxD = nn.Dropout(self.dropout_rate, deterministic=not train)(z_BxTxD)
    h_BxTx2H, _ = RNN(self.cell, self.hidden_size, self.num_layers, bidirectional=True,
                      dropout_rate=self.dropout_rate)(z_BxTxD, mask_BxT, train=train)
    h_BxTx2H = nn.Dropout(self.dropout_rate, deterministic=not train)(h_BxTx2H)
    return nn.Dense(self.num_classes)(h_BxTx2H), mask_BxT

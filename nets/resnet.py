"""Residual networks (He et al. 2016, the CIFAR-10 family) and the same nets without shortcuts.

A basic block of width F and stride s maps x to

    h = relu(BN(conv3x3_s(x)))
    y = relu(BN(conv3x3(h)) + shortcut(x))

    shortcut(x) = x                      if the block keeps the shape (identity),
                  BN(conv1x1_s(x))       if it changes the width or strides (projection).

The convolutions only have to learn the residual F(x) = y_pre - shortcut(x): a block whose
weights are driven to zero passes its input on, so stacking more blocks can always fall back
on the shallower net. Without shortcuts (`residual=False`, the "plain" net: identical layers,
y = relu(BN(conv3x3(h))) and no projections) a deeper net has to learn the identity through
its nonlinear layers, and in practice trains to a HIGHER training loss than a shallower one
(the degradation problem the paper shows; experiments/science/depth.py measures it).

The network: a stem conv3x3 (stem_features) - BN - ReLU; stage i holds stage_blocks[i]
blocks of width features[i], and the first block of every stage after the first has stride 2
(28 -> 14 -> 7 on MNIST, 32 -> 16 -> 8 on CIFAR-10); global average pooling over H x W; a
dense layer to the logits. Weighted layers: depth = 2 * sum(stage_blocks) + 2, so
(3, 3, 3) is ResNet-20 and (9, 9, 9) ResNet-56 (0.27 M and 0.86 M parameters at widths
16, 32, 64, the paper's).

Convolutions pad k // 2 zeros on each side (the paper's Torch convention, not TensorFlow's
'SAME'): with stride 2 the 3x3 windows are then centred on the even pixels 0, 2, 4, ...,
which are the pixels the 1x1 projection samples, so a block's two branches stay aligned
('SAME' pads an even-sized input only at its end and centres them on the odd pixels).

Batch norm is nets/cnn.py's: batch statistics in training, running averages (momentum 0.9)
in evaluation, kept in the 'batch_stats' collection and averaged across the pmapped axis
`batch_axis_name`; a convolution followed by batch norm has no bias (BN's beta is one).
"""

from typing import Sequence

import flax.linen as nn
import jax.numpy as jnp

from nets.cnn import BatchNorm
from nets.conv import Conv
from nets.mlp import INITIALIZERS, ModelConfigError, check_choice


class ConvBN(nn.Module):
  """conv k x k, stride s, k // 2 zeros of padding, no bias -> batch norm."""
  features: int
  kernel_size: int = 3
  stride: int = 1
  initializer: str = 'he'
  batch_axis_name: str | None = None

  @nn.compact
  def __call__(self, x_BxHxWxC, *, train: bool):
    x = Conv(self.features, (self.kernel_size,) * 2, strides=self.stride,
             padding=self.kernel_size // 2, use_bias=False,
             kernel_init=INITIALIZERS[self.initializer])(x_BxHxWxC)
    return BatchNorm(not train, momentum=0.9, axis_name=self.batch_axis_name)(x)


class BasicBlock(nn.Module):
  """relu(BN(conv(relu(BN(conv(x))))) + shortcut(x)); no shortcut when not `residual`."""
  features: int
  stride: int = 1
  residual: bool = True
  initializer: str = 'he'
  batch_axis_name: str | None = None

  @nn.compact
  def __call__(self, x_BxHxWxC, *, train: bool):
    def conv_bn(kernel_size, stride, name):
      return ConvBN(self.features, kernel_size, stride, self.initializer,
                    self.batch_axis_name, name=name)
    h = nn.relu(conv_bn(3, self.stride, 'conv1')(x_BxHxWxC, train=train))
    y = conv_bn(3, 1, 'conv2')(h, train=train)
    if self.residual:
      if self.stride != 1 or x_BxHxWxC.shape[-1] != self.features:
        y = y + conv_bn(1, self.stride, 'projection')(x_BxHxWxC, train=train)
      else:
        y = y + x_BxHxWxC
    return nn.relu(y)


class ResNet(nn.Module):
  """Stem, stages of basic blocks (stride 2 from the second stage on), average pool, dense."""
  stage_blocks: Sequence[int] = (3, 3, 3)
  features: Sequence[int] = (16, 32, 64)
  stem_features: int = 16
  residual: bool = True
  num_outputs: int = 10
  initializer: str = 'he'
  batch_axis_name: str | None = None

  @nn.compact
  def __call__(self, x_BxHxWxC, *, train: bool = False):
    check_choice('initializer', self.initializer, INITIALIZERS)
    if len(self.stage_blocks) != len(self.features):
      raise ModelConfigError(
          f'config.model.stage_blocks={tuple(self.stage_blocks)} and config.model.features='
          f'{tuple(self.features)} must have one entry per stage; give them equal lengths.')
    x = nn.relu(ConvBN(self.stem_features, 3, 1, self.initializer, self.batch_axis_name,
                       name='stem')(x_BxHxWxC, train=train))
    for stage, (blocks, width) in enumerate(zip(self.stage_blocks, self.features)):
      for block in range(blocks):
        stride = 2 if stage > 0 and block == 0 else 1
        x = BasicBlock(width, stride, self.residual, self.initializer, self.batch_axis_name,
                       name=f'stage{stage}_block{block}')(x, train=train)
    features_BxC = jnp.mean(x, axis=(1, 2))  # global average pooling
    return nn.Dense(self.num_outputs, name='head')(features_BxC)

"""Self-attention over image patches: a small Vision Transformer (Dosovitskiy et al. 2021).

An H x W x C image is cut into N = (H/P)(W/P) non-overlapping P x P patches, read row by row,
each flattened to a vector p_n of P*P*C pixels and embedded linearly; a learned [CLS] vector
is put in front and a position is added to each of the N + 1 tokens:

    z^0 = [x_cls; E p_1; ...; E p_N] + E_pos           (E: D x P^2 C, E_pos: (N+1) x D)
    z^l = EncoderBlock(z^{l-1}),  l = 1..L             (nets/transformer.py, self-attention)
    logits = W z^L_0 + b        (pool='cls'),   or   W mean_n z^L_n + b      (pool='mean')

(the stack ends in a layer norm: after each block with norm='post', a final one with 'pre').

Every patch attends to every other with weights computed from the data, so nothing tells the
model which patches are neighbours: that is learned from the positions (positional='learned'
or 'sinusoidal'); with positional='none' and either pooling the logits do not change when the
patches are shuffled. A CNN (nets/cnn.py) builds locality and translation equivariance in;
attention must learn them, which takes more data (experiments/science/attention_vs_cnn.py).
All N + 1 tokens are real, so no attention mask is needed.
"""

import flax.linen as nn
import jax
import jax.numpy as jnp

from nets import attention
from nets.mlp import ModelConfigError, check_choice
from nets.transformer import Encoder

POOLS = ('cls', 'mean')


def patchify(images_BxHxWxC: jax.Array, patch_size: int) -> jax.Array:
  """B x N x P*P*C: the P x P patches of each image, row by row, each flattened (y, x, c)."""
  b, h, w, c = images_BxHxWxC.shape
  if h % patch_size or w % patch_size:
    raise ModelConfigError(f'config.model.patch_size={patch_size} does not divide the {h} x '
                           f'{w} images; choose a divisor (e.g. 7 or 4 for 28 x 28).')
  rows, cols = h // patch_size, w // patch_size
  x = images_BxHxWxC.reshape(b, rows, patch_size, cols, patch_size, c)
  return x.transpose(0, 1, 3, 2, 4, 5).reshape(b, rows * cols, patch_size * patch_size * c)


class PatchTransformer(nn.Module):
  """A small ViT: patch embeddings, [CLS] and positions -> encoder blocks -> pooled logits."""
  patch_size: int = 7
  num_layers: int = 2
  num_heads: int = 4
  model_dim: int = 64
  mlp_dim: int = 128
  dropout_rate: float = 0.0
  norm: str = 'pre'
  positional: str = 'learned'
  pool: str = 'cls'
  mlp_activation: str = 'gelu'
  num_outputs: int = 10

  @nn.compact
  def __call__(self, images_BxHxWxC, *, train: bool = False):
    check_choice('pool', self.pool, dict.fromkeys(POOLS))
    if self.positional == 'rotary':
      raise ModelConfigError("config.model.positional='rotary' is for sequences; use "
                             "'learned', 'sinusoidal' or 'none' for patches.")
    patches_BxNxF = patchify(images_BxHxWxC, self.patch_size)
    x_BxNxD = nn.Dense(self.model_dim, name='patch_embedding')(patches_BxNxF)
    cls_D = self.param('cls', nn.initializers.normal(stddev=0.02), (self.model_dim,))
    cls_Bx1xD = jnp.broadcast_to(cls_D, (x_BxNxD.shape[0], 1, self.model_dim))
    x_BxTxD = jnp.concatenate([cls_Bx1xD.astype(x_BxNxD.dtype), x_BxNxD], axis=1)
    x_BxTxD = attention.AddPositionalEncoding(self.positional, max_len=x_BxTxD.shape[1],
                                              name='positions')(x_BxTxD)
    x_BxTxD = nn.Dropout(self.dropout_rate, deterministic=not train)(x_BxTxD)
    block = dict(num_heads=self.num_heads, mlp_dim=self.mlp_dim,
                 dropout_rate=self.dropout_rate, norm=self.norm,
                 mlp_activation=self.mlp_activation)
    x_BxTxD = Encoder(self.num_layers, block, name='encoder')(x_BxTxD, None, train=train)
    pooled_BxD = x_BxTxD[:, 0] if self.pool == 'cls' else jnp.mean(x_BxTxD[:, 1:], axis=1)
    return nn.Dense(self.num_outputs, name='head')(pooled_BxD)

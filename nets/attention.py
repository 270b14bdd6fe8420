"""Scaled dot-product attention, multi-head attention, masks, a decoding cache, positions.

Attention mixes values by how well each query matches each key:

    Attention(Q, K, V) = softmax(Q K^T / sqrt(d) + M) V

with d the head dimension and M = 0 where a query may see a key and -inf where it may not
(here a large negative number, as in `jax.nn.dot_product_attention`, so a row with every key
masked is uniform instead of NaN). The masks are boolean, True = "may attend":

    padding      key j is a real token:                    key_mask[b, j]
    causal       query i sees no future key:               j <= i
    local window query i sees keys within +-w:             |i - j| <= w
                 (causal and windowed: i - w <= j <= i, itself and the w previous keys)

and combine by logical and. Only keys are masked: the output at a padded *query* position
is computed like any other and is ignored by the losses.

The softmax may be replaced by an elementwise activation f (ReLU, sigmoid, ...). Such
weights do not sum to one, so we divide by the number of keys the query may see,

    w_ij = f(s_ij) [j visible] / #{visible j},        s = Q K^T / sqrt(d),

which keeps the output's scale independent of the sequence length (ReLU attention divided
by the length, Wortsman et al. 2023) and, because only visible keys count, keeps padding
and causal decoding exact.

Multi-head attention projects the inputs into N heads of dimension H, attends in each
head, and projects the concatenated heads back:

    head_n = Attention(X W_n^Q, C W_n^K, C W_n^V),    MHA(X, C) = [head_1 ... head_N] W^O

with C = X for self-attention and C another sequence for cross-attention. Kernels keep the
heads as their own axis; their logical axes are query/key/value ('embed', 'heads', 'kv'),
fused qkv ('embed', None, 'heads', 'kv'), out ('heads', 'kv', 'embed').

Positions. Sinusoidal (Vaswani et al. 2017), added to the embeddings:

    PE[p, 2i] = sin(p / 10000^(2i/D)),     PE[p, 2i+1] = cos(p / 10000^(2i/D))

learned (a table of `max_len` rows, added likewise), or rotary (RoPE, Su et al. 2021),
which rotates each pair (x_i, x_{i+H/2}) of a query or key at position p by the angle
p * theta_i, theta_i = 10000^(-2i/H). A rotation R(a) satisfies R(a)^T R(b) = R(b - a), so

    (R(m theta) q) . (R(n theta) k) = q . R((n - m) theta) k

depends only on the relative position n - m.

Decoding cache. With `decode=True`, self-attention keeps every key and value it has seen in
the 'cache' collection (as flax examples/wmt): a step with T new tokens writes them at
`cache_index`, attends over the whole cache under the causal mask (which hides the slots
not yet written) and advances the index by T. The index is kept per example, so every
cache leaf has a leading batch axis and beam search can tile and reorder the cache leaf by
leaf. The cache is created, zero, by one call on a full-length input; its length is the
longest sequence that can be decoded (writes past it are clamped by
`dynamic_update_slice`, silently, so the caller must stop in time).
"""

from typing import Callable

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from nets import scale
from nets.mlp import ModelConfigError, check_choice

# Elementwise replacements of the softmax; None marks the softmax itself.
ATTENTION_ACTIVATIONS: dict[str, Callable | None] = {
    'softmax': None,
    'relu': nn.relu,
    'sigmoid': nn.sigmoid,
    'squared_relu': lambda s: jnp.square(nn.relu(s)),
}

POSITIONAL = ('sinusoidal', 'learned', 'rotary', 'none')


# ----------------------------------------------------------------------------- masks

def combine_masks(*masks: jax.Array | None) -> jax.Array | None:
  """Logical and of the masks that are not None (each 4-D, broadcastable to BxNxTxS)."""
  masks = [m for m in masks if m is not None]
  if not masks:
    return None
  out = masks[0]
  for m in masks[1:]:
    out = jnp.logical_and(out, m)
  return out


def padding_mask(key_mask_BxS: jax.Array) -> jax.Array:
  """Bx1x1xS: every query may see key j iff key j is a real token."""
  return key_mask_BxS.astype(bool)[:, None, None, :]


def position_mask(q_positions: jax.Array, k_positions_S: jax.Array, *,
                  causal: bool = False, window: int | None = None) -> jax.Array | None:
  """Causal (k <= q) and/or local-window (|q - k| <= w) mask from positions.

  Args:
    q_positions: the queries' positions, [T] or per example [B, T].
    k_positions_S: the keys' positions.
    causal: mask the keys after each query.
    window: mask the keys more than `window` positions away; None: none.

  Returns:
    1x1xTxS (or Bx1xTxS) boolean mask, or None when nothing is masked.
  """
  if not causal and window is None:
    return None
  q_positions_BxT = jnp.atleast_2d(q_positions)  # B is 1 for shared positions
  offset_BxTxS = q_positions_BxT[:, :, None] - k_positions_S[None, None, :]  # i - j
  mask_BxTxS = jnp.ones(offset_BxTxS.shape, bool)
  if causal:
    mask_BxTxS &= offset_BxTxS >= 0
  if window is not None:
    mask_BxTxS &= jnp.abs(offset_BxTxS) <= window
  return mask_BxTxS[:, None]


def causal_mask(length: int) -> jax.Array:
  """1x1xTxT lower-triangular mask."""
  positions = jnp.arange(length)
  return position_mask(positions, positions, causal=True)


# ------------------------------------------------------------------------- attention

def large_negative(dtype) -> float:
  # The value jax.nn.dot_product_attention uses, so both paths agree: exp underflows to
  # exactly 0, and a row with every key masked becomes uniform instead of NaN.
  return -0.7 * float(jnp.finfo(dtype).max)


def dot_product_attention(q_BxTxNxH: jax.Array, k_BxSxNxH: jax.Array, v_BxSxNxH: jax.Array,
                          mask: jax.Array | None = None, *, activation: str = 'softmax',
                          return_weights: bool = False, implementation: str | None = None):
  """Attention of each head's queries over its keys and values.

  Args:
    q_BxTxNxH: queries.
    k_BxSxNxH: keys.
    v_BxSxNxH: values.
    mask: boolean, 4-D, broadcastable to BxNxTxS; True where a query may see a key.
    activation: a key of ATTENTION_ACTIVATIONS (see the module docstring).
    return_weights: also return the attention weights (for plotting).
    implementation: passed to `jax.nn.dot_product_attention` ('xla', 'cudnn', None).

  Returns:
    out_BxTxNxH, or (out_BxTxNxH, weights_BxNxTxS) when `return_weights`.
  """
  check_choice('activation', activation, ATTENTION_ACTIVATIONS)
  if activation == 'softmax' and not return_weights:
    # The fused kernel (cuDNN flash attention on GPUs) never materialises the weights.
    return jax.nn.dot_product_attention(q_BxTxNxH, k_BxSxNxH, v_BxSxNxH, mask=mask,
                                        implementation=implementation)
  head_dim = q_BxTxNxH.shape[-1]
  scores_BxNxTxS = jnp.einsum('btnh,bsnh->bnts', q_BxTxNxH, k_BxSxNxH) / np.sqrt(head_dim)
  if activation == 'softmax':
    if mask is not None:
      scores_BxNxTxS = jnp.where(mask, scores_BxNxTxS, large_negative(scores_BxNxTxS.dtype))
    weights_BxNxTxS = jax.nn.softmax(scores_BxNxTxS, axis=-1)
  else:
    weights_BxNxTxS = ATTENTION_ACTIVATIONS[activation](scores_BxNxTxS)
    if mask is None:
      visible = k_BxSxNxH.shape[1]
    else:
      weights_BxNxTxS = jnp.where(mask, weights_BxNxTxS, 0.0)
      visible = jnp.maximum(jnp.sum(mask, axis=-1, keepdims=True), 1)
    weights_BxNxTxS = weights_BxNxTxS / visible
  out_BxTxNxH = jnp.einsum('bnts,bsnh->btnh', weights_BxNxTxS, v_BxSxNxH)
  return (out_BxTxNxH, weights_BxNxTxS) if return_weights else out_BxTxNxH


# ------------------------------------------------------------------------- positions

def sinusoidal_encoding(positions: jax.Array, dim: int) -> jax.Array:
  """PE[p, 2i] = sin(p / 10000^(2i/D)), PE[p, 2i+1] = cos(p / 10000^(2i/D)).

  positions of any shape ([T], [B, T]) -> PE of that shape + [D].
  """
  if dim % 2:
    raise ModelConfigError(f'sinusoidal positions need an even model dimension, got {dim}; '
                           'change config.model.model_dim.')
  inv_freq_D2 = 10000.0 ** (-jnp.arange(0, dim, 2, dtype=jnp.float32) / dim)
  inv_freq = inv_freq_D2.reshape((1,) * positions.ndim + (-1,))  # explicit rank
  angles = positions.astype(jnp.float32)[..., None] * inv_freq
  # Interleave: sin in the even columns, cos in the odd ones.
  return jnp.stack([jnp.sin(angles), jnp.cos(angles)], axis=-1).reshape(*positions.shape, dim)


def rotary_embedding(x_BxTxNxH: jax.Array, positions: jax.Array,
                     base: float = 10000.0) -> jax.Array:
  """Rotates each pair (x_i, x_{i+H/2}) at position p by p * base^(-2i/H) (RoPE).

  positions: [T], or per example [B, T].
  """
  head_dim = x_BxTxNxH.shape[-1]
  if head_dim % 2:
    raise ModelConfigError(f'rotary positions need an even head dimension, got {head_dim}; '
                           'change config.model.model_dim or num_heads.')
  half = head_dim // 2
  inv_freq_H2 = base ** (-jnp.arange(0, head_dim, 2, dtype=jnp.float32) / head_dim)
  positions_BxT = jnp.atleast_2d(positions).astype(jnp.float32)  # B is 1 for shared positions
  angles_BxTx1xH2 = (positions_BxT[:, :, None] * inv_freq_H2[None, None, :])[:, :, None, :]
  sin = jnp.sin(angles_BxTx1xH2).astype(x_BxTxNxH.dtype)
  cos = jnp.cos(angles_BxTx1xH2).astype(x_BxTxNxH.dtype)
  x1, x2 = x_BxTxNxH[..., :half], x_BxTxNxH[..., half:]
  return jnp.concatenate([x1 * cos - x2 * sin, x2 * cos + x1 * sin], axis=-1)


def decode_positions(module: nn.Module, batch: int, length: int, decode: bool) -> jax.Array:
  """Positions of `length` new tokens: [T] 0..T-1, or [B, T] after those already decoded.

  In decode mode a 'cache' counter `position` [B] remembers how many tokens each example
  has seen. Every cache leaf has a leading batch axis, so beam search can tile and reorder
  the cache leaf by leaf.
  """
  positions_T = jnp.arange(length)
  if not decode:
    return positions_T
  initialized = module.has_variable('cache', 'position')
  start_B = module.variable('cache', 'position', jnp.zeros, (batch,), jnp.int32)
  if not initialized:  # the creating call (on a full-length input) counts from 0
    return positions_T
  positions_BxT = start_B.value[:, None] + positions_T[None, :]
  start_B.value = start_B.value + length
  return positions_BxT


class AddPositionalEncoding(nn.Module):
  """x + PE[positions] for 'sinusoidal' or 'learned'; x unchanged for 'rotary' or 'none'."""
  kind: str = 'sinusoidal'
  max_len: int = 512

  @nn.compact
  def __call__(self, x_BxTxD, *, decode: bool = False):
    check_choice('positional', self.kind, dict.fromkeys(POSITIONAL))
    if self.kind in ('rotary', 'none'):  # rotary acts inside the attention
      return x_BxTxD
    length, dim = x_BxTxD.shape[1:]
    if length > self.max_len:
      raise ModelConfigError(f'a sequence of length {length} is longer than '
                             f'config.model.max_len={self.max_len}; raise max_len.')
    positions = decode_positions(self, x_BxTxD.shape[0], length, decode)  # [T] or [B, T]
    if self.kind == 'sinusoidal':
      pe = sinusoidal_encoding(positions, dim)
    else:
      table_LxD = self.param('embedding', scale.named(nn.initializers.normal(stddev=0.02),
                                                      None, 'embed'), (self.max_len, dim))
      pe = jnp.take(table_LxD, positions, axis=0)
    pe_BxTxD = pe if pe.ndim == 3 else pe[None]
    return x_BxTxD + pe_BxTxD.astype(x_BxTxD.dtype)


# ------------------------------------------------------------------ multi-head attention

class MultiHeadAttention(nn.Module):
  """Multi-head self- or cross-attention with masks, a decoding cache and RoPE.

  Attributes:
    num_heads: N.
    head_dim: H; None means D / N.
    out_features: the output width; None means the input's D.
    fused_qkv: one [D, 3, N, H] projection for self-attention (and a [D, 2, N, H] one for
      the keys and values of cross-attention) instead of separate query, key and value.
    causal: queries see no later key.
    window: local window w: a query sees keys at most w positions away (None: all).
    activation: the softmax, or an elementwise replacement (ATTENTION_ACTIVATIONS).
    rotary: rotate queries and keys by their positions (self-attention only).
    use_bias: biases on the projections.
    implementation: backend of `jax.nn.dot_product_attention` ('xla', 'cudnn', None).
    dtype: the computation's dtype (parameters stay float32; nets/scale.py).
  """
  num_heads: int
  head_dim: int | None = None
  out_features: int | None = None
  fused_qkv: bool = False
  causal: bool = False
  window: int | None = None
  activation: str = 'softmax'
  rotary: bool = False
  rotary_base: float = 10000.0
  use_bias: bool = True
  kernel_init: Callable = nn.initializers.xavier_uniform()
  implementation: str | None = None
  dtype: jnp.dtype = jnp.float32

  @nn.compact
  def __call__(self, x_BxTxD, context_BxSxC=None, *, key_mask_BxS=None, mask=None,
               decode: bool = False, return_weights: bool = False):
    """Attends from `x_BxTxD` to itself, or to `context_BxSxC` when it is given.

    Args:
      x_BxTxD: the sequence the queries come from.
      context_BxSxC: the sequence of keys and values for cross-attention; None for self.
      key_mask_BxS: True on the real (not padded) keys.
      mask: any further boolean mask, 4-D, broadcastable to BxNxTxS.
      decode: self-attention over the 'cache' collection (see the module docstring).
      return_weights: also return the BxNxTxS attention weights.

    Returns:
      out_BxTxD (D = out_features), or (out_BxTxD, weights_BxNxTxS).
    """
    check_choice('activation', self.activation, ATTENTION_ACTIVATIONS)
    cross = context_BxSxC is not None
    if self.rotary and cross:
      raise ValueError('rotary=True is for self-attention: a query and a key of two '
                       'different sequences have no relative position.')
    length, features = x_BxTxD.shape[1:]
    if self.head_dim is None and features % self.num_heads:
      raise ModelConfigError(f'config.model.num_heads={self.num_heads} does not divide the '
                             f'model dimension {features}; set head_dim.')
    heads = (self.num_heads, self.head_dim or features // self.num_heads)
    def dense(shape, name):  # logical axes ('embed', [None,] 'heads', 'kv')
      fused = (None,) * (len(shape) - 2)
      return nn.DenseGeneral(
          shape, use_bias=self.use_bias, dtype=self.dtype, name=name,
          kernel_init=scale.named(self.kernel_init, 'embed', *fused, 'heads', 'kv'),
          bias_init=scale.named(nn.initializers.zeros, *fused, 'heads', 'kv'))
    if self.fused_qkv and not cross:
      qkv_BxTx3xNxH = dense((3, *heads), 'qkv')(x_BxTxD)
      q_BxTxNxH, k_BxSxNxH, v_BxSxNxH = (qkv_BxTx3xNxH[:, :, i] for i in range(3))
    elif self.fused_qkv:
      q_BxTxNxH = dense(heads, 'query')(x_BxTxD)
      kv_BxSx2xNxH = dense((2, *heads), 'kv')(context_BxSxC)
      k_BxSxNxH, v_BxSxNxH = kv_BxSx2xNxH[:, :, 0], kv_BxSx2xNxH[:, :, 1]
    else:
      source = context_BxSxC if cross else x_BxTxD
      q_BxTxNxH = dense(heads, 'query')(x_BxTxD)
      k_BxSxNxH = dense(heads, 'key')(source)
      v_BxSxNxH = dense(heads, 'value')(source)

    q_positions = jnp.arange(length)  # [T], or [B, T] when decoding with the cache
    cache = None
    if decode and not cross:
      if not self.causal:
        raise ValueError('decode=True needs causal=True: the cache slots not yet written '
                         'are hidden by the causal mask.')
      if key_mask_BxS is not None:
        raise ValueError('decode=True takes no key_mask_BxS: the cache holds only real tokens.')
      initialized = self.has_variable('cache', 'cached_key')
      cache = (self.variable('cache', 'cached_key', jnp.zeros, k_BxSxNxH.shape, k_BxSxNxH.dtype),
               self.variable('cache', 'cached_value', jnp.zeros, v_BxSxNxH.shape,
                             v_BxSxNxH.dtype),
               # One index per example: every cache leaf has a leading batch axis.
               self.variable('cache', 'cache_index', jnp.zeros, (x_BxTxD.shape[0],),
                             jnp.int32))
      if initialized:
        q_positions = cache[2].value[:, None] + q_positions[None, :]
      else:  # the creating call (on a full-length input) is ordinary causal attention
        cache = None
    if self.rotary:  # before caching: a cached key keeps the rotation of its own position
      # (self-attention: the new keys are the queries' tokens, at the same positions)
      q_BxTxNxH = rotary_embedding(q_BxTxNxH, q_positions, self.rotary_base)
      k_BxSxNxH = rotary_embedding(k_BxSxNxH, q_positions, self.rotary_base)
    k_positions_S = jnp.arange(k_BxSxNxH.shape[1])
    if cache is not None:  # write the new keys and values, attend over the whole cache
      cached_k, cached_v, index = cache
      write = jax.vmap(lambda c_LxNxH, new_TxNxH, i: jax.lax.dynamic_update_slice(
          c_LxNxH, new_TxNxH, (i, 0, 0)))  # each example at its own index
      cached_k.value = write(cached_k.value, k_BxSxNxH, index.value)
      cached_v.value = write(cached_v.value, v_BxSxNxH, index.value)
      index.value = index.value + length
      k_BxSxNxH, v_BxSxNxH = cached_k.value, cached_v.value
      k_positions_S = jnp.arange(k_BxSxNxH.shape[1])  # the cache's L slots

    mask = combine_masks(
        position_mask(q_positions, k_positions_S, causal=self.causal, window=self.window),
        None if key_mask_BxS is None else padding_mask(key_mask_BxS),
        mask)
    result = dot_product_attention(q_BxTxNxH, k_BxSxNxH, v_BxSxNxH, mask,
                                   activation=self.activation, return_weights=return_weights,
                                   implementation=self.implementation)
    out_BxTxNxH, weights = result if return_weights else (result, None)
    out_BxTxD = nn.DenseGeneral(
        self.out_features or features, axis=(-2, -1), use_bias=self.use_bias, dtype=self.dtype,
        kernel_init=scale.named(self.kernel_init, 'heads', 'kv', 'embed'),
        bias_init=scale.named(nn.initializers.zeros, 'embed'), name='out')(out_BxTxNxH)
    return (out_BxTxD, weights) if return_weights else out_BxTxD

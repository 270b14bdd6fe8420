"""The Transformer (Vaswani et al. 2017): encoder and decoder blocks, encoder-decoder model,
and a non-autoregressive variant.

An encoder block is self-attention then a position-wise feed-forward network,

    FFN(x) = W_2 f(W_1 x + b_1) + b_2          (f = ReLU in the paper, width mlp_dim)

each sub-layer wrapped in dropout, a residual connection and layer norm, either after the
residual (norm='post', the paper) or before the sub-layer (norm='pre', which trains deep
stacks without warm-up and needs one more layer norm at the end of the stack):

    post:  x <- LN(x + Dropout(sublayer(x)))
    pre:   x <- x + Dropout(sublayer(LN(x)))

A decoder block has three sub-layers: causal (masked) self-attention, cross-attention from
the decoder's positions to the encoder's outputs, and the feed-forward network. Given no
encoder output it skips the cross-attention: the GPT block.

The model embeds tokens (scaled by sqrt(D), as the paper, so that embeddings initialised
with variance 1/D have unit scale), adds positions (sinusoidal, learned, or rotary inside
the attention), encodes the source under its padding mask (pad id 0), and decodes the
shifted target `targets_in` into logits over the target vocabulary,

    p(y_t | y_<t, x) = softmax(h_t W_out),     W_out = E^T  when share_embeddings.

Sharing also makes source and target one table when the vocabulary is shared
(target_vocab_size=None), as in the paper. The decoder's self-attention needs no target
padding mask: padding sits at the end, so a real query never sees a pad key under the
causal mask, and what pad queries see is ignored by the loss (and pad id 0 may double as
the start token of `targets_in`).

The non-autoregressive variant (after Gu et al. 2018) predicts the target length with a
classifier over 0..max_len-1 from the mean of the encoder outputs over real positions,

    p(length | x) = softmax(W_len mean_{j real} enc_j + b_len),

and emits every target token at once: its decoder's inputs are learned position queries,
its self-attention is unmasked except for positions past the target length, and it
cross-attends to the encoder.
"""

import jax
import jax.numpy as jnp
import flax.linen as nn

from nets import attention, scale
from nets.mlp import ACTIVATIONS, ModelConfigError, check_choice

# 'gelu' is the tanh approximation (GPT-2's); 'gelu_exact' is x Phi(x) (BERT's).
MLP_ACTIVATIONS = {**ACTIVATIONS, 'gelu': nn.gelu, 'silu': nn.silu,
                   'gelu_exact': lambda x: nn.gelu(x, approximate=False)}
NORMS = ('post', 'pre')


class FeedForward(nn.Module):
  """W_2 f(W_1 x + b_1) + b_2, position-wise; kernels ('embed', 'mlp') and ('mlp', 'embed')."""
  mlp_dim: int
  activation: str = 'relu'
  dtype: jnp.dtype = jnp.float32

  @nn.compact
  def __call__(self, x_BxTxD):
    check_choice('mlp_activation', self.activation, MLP_ACTIVATIONS)
    dense = lambda features, axes, name: nn.Dense(
        features, dtype=self.dtype, name=name,
        kernel_init=scale.named(nn.initializers.lecun_normal(), *axes),
        bias_init=scale.named(nn.initializers.zeros, axes[1]))
    h_BxTxF = MLP_ACTIVATIONS[self.activation](dense(self.mlp_dim, ('embed', 'mlp'), 'wi')(x_BxTxD))
    return dense(x_BxTxD.shape[-1], ('mlp', 'embed'), 'wo')(h_BxTxF)


class Residual(nn.Module):
  """post: LN(x + Dropout(f(x)));  pre: x + Dropout(f(LN(x)))."""
  norm: str = 'post'
  dropout_rate: float = 0.0
  norm_epsilon: float = 1e-6  # LN's eps in x / sqrt(var + eps); BERT 1e-12, GPT-2 1e-5
  dtype: jnp.dtype = jnp.float32

  @nn.compact
  def __call__(self, x_BxTxD, sublayer, *, train: bool):
    check_choice('norm', self.norm, dict.fromkeys(NORMS))
    dropout = nn.Dropout(self.dropout_rate, deterministic=not train)
    layer_norm = scale.layer_norm(self.norm_epsilon, self.dtype, name='norm')
    if self.norm == 'pre':
      return x_BxTxD + dropout(sublayer(layer_norm(x_BxTxD)))
    return layer_norm(x_BxTxD + dropout(sublayer(x_BxTxD)))


class _Block(nn.Module):
  """The fields every Transformer block shares."""
  num_heads: int
  mlp_dim: int
  dropout_rate: float = 0.0
  norm: str = 'post'
  mlp_activation: str = 'relu'
  attention_activation: str = 'softmax'
  rotary: bool = False
  fused_qkv: bool = False
  window: int | None = None
  norm_epsilon: float = 1e-6
  dtype: jnp.dtype = jnp.float32

  def residual(self, name: str) -> Residual:
    return Residual(self.norm, self.dropout_rate, self.norm_epsilon, self.dtype, name=name)

  def attention(self, name: str, **kwargs) -> attention.MultiHeadAttention:
    return attention.MultiHeadAttention(
        self.num_heads, fused_qkv=self.fused_qkv, activation=self.attention_activation,
        dtype=self.dtype, name=name, **kwargs)

  def mlp(self) -> FeedForward:
    return FeedForward(self.mlp_dim, self.mlp_activation, self.dtype, name='mlp')


class EncoderBlock(_Block):
  """Self-attention and feed-forward, each a residual sub-layer."""

  @nn.compact
  def __call__(self, x_BxTxD, mask_BxT=None, train: bool = False):
    """mask_BxT: True on real tokens (the keys that may be attended to)."""
    attend = self.attention('self_attention', window=self.window, rotary=self.rotary)
    x_BxTxD = self.residual('attention_residual')(
        x_BxTxD, lambda y: attend(y, key_mask_BxS=mask_BxT), train=train)
    return self.residual('mlp_residual')(x_BxTxD, self.mlp(), train=train)


class DecoderBlock(_Block):
  """Masked self-attention, cross-attention (if there is an encoder), feed-forward.

  `causal=False` (non-autoregressive decoding) unmasks the self-attention; then
  `self_mask_BxT` masks the target positions past its length.
  """
  causal: bool = True

  @nn.compact
  def __call__(self, y_BxTxD, encoded_BxSxD=None, encoded_mask_BxS=None,
               self_mask_BxT=None, decode: bool = False, train: bool = False):
    attend_self = self.attention('self_attention', causal=self.causal, window=self.window,
                                 rotary=self.rotary)
    y_BxTxD = self.residual('self_attention_residual')(
        y_BxTxD, lambda z: attend_self(z, key_mask_BxS=self_mask_BxT, decode=decode),
        train=train)
    if encoded_BxSxD is not None:
      attend_encoder = self.attention('cross_attention')
      y_BxTxD = self.residual('cross_attention_residual')(
          y_BxTxD, lambda z: self.cross_attend(attend_encoder, z, encoded_BxSxD,
                                               encoded_mask_BxS), train=train)
    return self.residual('mlp_residual')(y_BxTxD, self.mlp(), train=train)

  def cross_attend(self, attend, z_BxTxD, encoded_BxSxD, encoded_mask_BxS):
    """Cross-attention; its weights_BxNxTxS are sown as 'intermediates' when that
    collection is mutable (for plotting: experiments/attention_plot.py)."""
    if not self.is_mutable_collection('intermediates'):
      return attend(z_BxTxD, encoded_BxSxD, key_mask_BxS=encoded_mask_BxS)
    out_BxTxD, weights_BxNxTxS = attend(z_BxTxD, encoded_BxSxD, key_mask_BxS=encoded_mask_BxS,
                                        return_weights=True)
    self.sow('intermediates', 'cross_attention_weights', weights_BxNxTxS)
    return out_BxTxD


def block_fields(model: nn.Module) -> dict:
  """The block fields of a model, by the blocks' names for them."""
  return dict(num_heads=model.num_heads, mlp_dim=model.mlp_dim,
              dropout_rate=model.dropout_rate, norm=model.norm,
              mlp_activation=model.mlp_activation,
              attention_activation=model.attention_activation,
              rotary=model.positional == 'rotary', fused_qkv=model.fused_qkv,
              window=model.attention_window, dtype=model.dtype)


class Encoder(nn.Module):
  """A stack of encoder blocks (and the final layer norm of a pre-norm stack)."""
  num_layers: int
  block: dict  # EncoderBlock's fields
  remat: str = 'none'  # nets/scale.py

  @nn.compact
  def __call__(self, x_BxSxD, mask_BxS, *, train: bool = False):
    blocks = scale.BlockStack(lambda name: EncoderBlock(**self.block, name=name),
                              self.num_layers, remat=self.remat)
    x_BxSxD = blocks(x_BxSxD, mask_BxS, train)
    if self.block['norm'] == 'pre':
      # In the dtype the blocks computed in (that of the residual stream).
      x_BxSxD = scale.layer_norm(1e-6, x_BxSxD.dtype, name='final_norm')(x_BxSxD)
    return x_BxSxD


class Decoder(nn.Module):
  """A stack of decoder blocks (and the final layer norm of a pre-norm stack)."""
  num_layers: int
  block: dict  # DecoderBlock's fields
  remat: str = 'none'

  @nn.compact
  def __call__(self, y_BxTxD, encoded_BxSxD, encoded_mask_BxS, *, self_mask_BxT=None,
               decode: bool = False, train: bool = False):
    blocks = scale.BlockStack(lambda name: DecoderBlock(**self.block, name=name),
                              self.num_layers, remat=self.remat)
    y_BxTxD = blocks(y_BxTxD, encoded_BxSxD, encoded_mask_BxS, self_mask_BxT, decode, train)
    if self.block['norm'] == 'pre':
      # In the dtype the blocks computed in (that of the residual stream).
      y_BxTxD = scale.layer_norm(1e-6, y_BxTxD.dtype, name='final_norm')(y_BxTxD)
    return y_BxTxD


class Transformer(nn.Module):
  """Encoder-decoder Transformer; `__call__(inputs_BxS, targets_in_BxT)` -> logits_BxTxV.

  Attributes:
    vocab_size: source vocabulary (and target vocabulary when target_vocab_size is None).
    target_vocab_size: the target vocabulary; None shares the source's.
    num_layers: blocks in the encoder and in the decoder.
    num_heads: attention heads (model_dim must be a multiple).
    model_dim: D, the width of every residual stream.
    mlp_dim: the feed-forward network's hidden width.
    dropout_rate: on embeddings + positions and on every sub-layer's output.
    norm: 'post' (the paper) or 'pre'.
    positional: 'sinusoidal', 'learned' or 'rotary'.
    share_embeddings: tie the output projection to the target embedding (and source and
      target embeddings when the vocabulary is shared).
    max_len: the longest sequence (the learned position tables' size; length classes of
      the non-autoregressive variant).
    mlp_activation, attention_activation, fused_qkv, attention_window: passed to the blocks.
    dtype, remat: the computation's dtype and the blocks' rematerialisation (nets/scale.py).
  """
  vocab_size: int
  target_vocab_size: int | None = None
  num_layers: int = 6
  num_heads: int = 8
  model_dim: int = 512
  mlp_dim: int = 2048
  dropout_rate: float = 0.1
  norm: str = 'post'
  positional: str = 'sinusoidal'
  share_embeddings: bool = True
  max_len: int = 256
  mlp_activation: str = 'relu'
  attention_activation: str = 'softmax'
  fused_qkv: bool = False
  attention_window: int | None = None
  dtype: str = 'float32'
  remat: str = 'none'

  causal_decoder = True  # a class constant: False in the non-autoregressive variant

  def setup(self):
    check_choice('norm', self.norm, dict.fromkeys(NORMS))
    check_choice('positional', self.positional, dict.fromkeys(('sinusoidal', 'learned',
                                                               'rotary')))
    if self.model_dim % self.num_heads:
      raise ModelConfigError(f'config.model.num_heads={self.num_heads} does not divide '
                             f'config.model.model_dim={self.model_dim}.')
    embed = lambda vocab, name: scale.embed(
        vocab, self.model_dim, nn.initializers.normal(stddev=self.model_dim ** -0.5),
        self.dtype, name=name)
    if self.share_embeddings and self.target_vocab_size is None:
      self.source_embed = self.target_embed = embed(self.vocab_size, 'embed')
    else:
      self.source_embed = embed(self.vocab_size, 'source_embed')
      self.target_embed = embed(self.target_vocab_size or self.vocab_size, 'target_embed')
    if not self.share_embeddings:
      self.output = nn.Dense(
          self.target_vocab_size or self.vocab_size, dtype=self.dtype, name='output',
          kernel_init=scale.named(nn.initializers.lecun_normal(), 'embed', 'vocab'),
          bias_init=scale.named(nn.initializers.zeros, 'vocab'))
    positions = lambda name: attention.AddPositionalEncoding(self.positional, self.max_len,
                                                             name=name)
    self.source_positions = positions('source_positions')
    self.target_positions = positions('target_positions')
    self.dropout = nn.Dropout(self.dropout_rate)
    fields = block_fields(self)
    self.encoder = Encoder(self.num_layers, fields, self.remat, name='encoder')
    self.decoder = Decoder(self.num_layers, {**fields, 'causal': self.causal_decoder},
                           self.remat, name='decoder')

  def embed_tokens(self, embed: nn.Embed, tokens_BxT) -> jax.Array:
    return embed(tokens_BxT) * self.model_dim ** 0.5

  def encode(self, inputs_BxS, inputs_mask_BxS, *, train: bool = False) -> jax.Array:
    """encoded_BxSxD of the source tokens; inputs_mask_BxS is True on real tokens."""
    x_BxSxD = self.source_positions(self.embed_tokens(self.source_embed, inputs_BxS))
    x_BxSxD = self.dropout(x_BxSxD, deterministic=not train)
    return self.encoder(x_BxSxD, inputs_mask_BxS, train=train)

  def logits(self, h_BxTxD) -> jax.Array:
    """logits_BxTxV = h W_out (W_out = E^T when the embeddings are shared), float32."""
    if self.share_embeddings:
      return self.target_embed.attend(h_BxTxD).astype(jnp.float32)
    return self.output(h_BxTxD).astype(jnp.float32)

  def decode(self, encoded_BxSxD, inputs_mask_BxS, targets_in_BxT, decode: bool = False, *,
             train: bool = False) -> jax.Array:
    """logits_BxTxV of the next token at every position of `targets_in_BxT`.

    With decode=True, the tokens continue those decoded before (the 'cache' collection,
    which must be mutable); the cache is created by a first call on a full-length target
    (see `init_cache`).
    """
    y_BxTxD = self.embed_tokens(self.target_embed, targets_in_BxT)
    y_BxTxD = self.target_positions(y_BxTxD, decode=decode)
    y_BxTxD = self.dropout(y_BxTxD, deterministic=not train)
    h_BxTxD = self.decoder(y_BxTxD, encoded_BxSxD, inputs_mask_BxS, decode=decode,
                           train=train)
    return self.logits(h_BxTxD)

  def __call__(self, inputs_BxS, targets_in_BxT, *, train: bool = False) -> jax.Array:
    inputs_mask_BxS = inputs_BxS != 0
    encoded_BxSxD = self.encode(inputs_BxS, inputs_mask_BxS, train=train)
    return self.decode(encoded_BxSxD, inputs_mask_BxS, targets_in_BxT, train=train)

  # The decoding protocol of train/seq2seq_tasks.py.

  def start_decoding(self, inputs_BxS) -> dict:
    """What every decoding step reads: the encoder outputs and the source mask."""
    inputs_mask_BxS = inputs_BxS != 0
    return {'encoded': self.encode(inputs_BxS, inputs_mask_BxS), 'mask': inputs_mask_BxS}

  def decode_step(self, memory: dict, tokens_BxT) -> jax.Array:
    """logits_BxTxV of the tokens after those in the 'cache' collection."""
    return self.decode(memory['encoded'], memory['mask'], tokens_BxT, decode=True)


def init_cache(model: Transformer, params, encoded_BxSxD, inputs_mask_BxS,
               max_len: int) -> dict:
  """The zero decoding cache for targets of up to `max_len` tokens (no computation)."""
  targets_BxT = jnp.zeros((encoded_BxSxD.shape[0], max_len), jnp.int32)
  shapes = jax.eval_shape(lambda: model.apply(
      {'params': params}, encoded_BxSxD, inputs_mask_BxS, targets_BxT, decode=True,
      method='decode', mutable=['cache'])[1]['cache'])
  return jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), shapes)


class NonAutoregressiveTransformer(Transformer):
  """Predicts the target length, then every target token at once (module docstring).

  `__call__(inputs_BxS, targets_mask_BxT=None)` -> (logits_BxTxV, length_logits_BxL), with
  L = max_len length classes (class l = length l). targets_mask_BxT (True on the target's
  real positions) sets T; None means T = max_len, all positions real. At inference, build
  it from the predicted length: arange(max_len) < argmax(length_logits).
  """
  causal_decoder = False

  def setup(self):
    super().setup()
    self.length_head = nn.Dense(self.max_len, name='length_head')
    self.position_queries = scale.embed(self.max_len, self.model_dim,
                                        nn.initializers.normal(stddev=1.0), self.dtype,
                                        row_axis=None, name='position_queries')

  def predict_length(self, encoded_BxSxD, inputs_mask_BxS) -> jax.Array:
    """length_logits_BxL from the mean of the encoder outputs over the real positions."""
    mask_BxSx1 = inputs_mask_BxS.astype(encoded_BxSxD.dtype)[:, :, None]
    count_Bx1 = jnp.maximum(jnp.sum(mask_BxSx1, axis=1), 1.0)
    pooled_BxD = jnp.sum(encoded_BxSxD * mask_BxSx1, axis=1) / count_Bx1
    return self.length_head(pooled_BxD)

  def decode_all(self, encoded_BxSxD, inputs_mask_BxS, targets_mask_BxT, *,
                 train: bool = False) -> jax.Array:
    """logits_BxTxV of every target position at once, from position queries."""
    batch, length = targets_mask_BxT.shape
    if length > self.max_len:
      raise ModelConfigError(f'a target of length {length} is longer than '
                             f'config.model.max_len={self.max_len}.')
    queries_TxD = self.position_queries(jnp.arange(length))
    y_BxTxD = jnp.broadcast_to(queries_TxD[None], (batch, length, self.model_dim))
    y_BxTxD = self.dropout(y_BxTxD, deterministic=not train)
    h_BxTxD = self.decoder(y_BxTxD, encoded_BxSxD, inputs_mask_BxS,
                           self_mask_BxT=targets_mask_BxT, train=train)
    return self.logits(h_BxTxD)

  def __call__(self, inputs_BxS, targets_mask_BxT=None, *, train: bool = False):
    inputs_mask_BxS = inputs_BxS != 0
    if targets_mask_BxT is None:
      targets_mask_BxT = jnp.ones((inputs_BxS.shape[0], self.max_len), bool)
    encoded_BxSxD = self.encode(inputs_BxS, inputs_mask_BxS, train=train)
    length_logits_BxL = self.predict_length(encoded_BxSxD, inputs_mask_BxS)
    logits_BxTxV = self.decode_all(encoded_BxSxD, inputs_mask_BxS, targets_mask_BxT,
                                   train=train)
    return logits_BxTxV, length_logits_BxL

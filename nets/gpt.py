"""GPT: a decoder-only Transformer language model with tied input and output embeddings.

    h_0 = E[w_t] + P[t]                                  (token and position embeddings)
    h_l = h_{l-1} + MHA(LN(h_{l-1}))  (causal);  h_l += FFN(LN(h_l))     (pre-norm blocks)
    p(w_{t+1} | w_<=t) = softmax(LN(h_L) E^T)            (the output layer is E itself)

The blocks are nets.transformer's decoder blocks without cross-attention; `decode=True`
runs one position at a time from the key-value cache (the 'cache' collection), which is
what generation uses. `dtype`, `remat` and `scan_layers` are nets/scale.py's.
"""

import flax.linen as nn
import jax
import jax.numpy as jnp

from nets import attention, scale, transformer


class GPT(nn.Module):
  """Token ids [B, T] -> next-token logits [B, T, vocab_size] (float32)."""
  vocab_size: int
  num_layers: int = 4
  num_heads: int = 4
  model_dim: int = 128
  mlp_dim: int | None = None  # None: 4 * model_dim, as in GPT-2
  max_len: int = 256
  dropout_rate: float = 0.0
  positional: str = 'learned'
  mlp_activation: str = 'gelu'
  norm_epsilon: float = 1e-6  # GPT-2 checkpoints use 1e-5
  dtype: str = 'float32'
  remat: str = 'none'
  scan_layers: bool = False

  @nn.compact
  def __call__(self, tokens_BxT, *, train: bool = False, decode: bool = False) -> jax.Array:
    embed = scale.embed(self.vocab_size, self.model_dim, nn.initializers.normal(stddev=0.02),
                        self.dtype, name='embed')
    h_BxTxD = attention.AddPositionalEncoding(self.positional, self.max_len)(
        embed(tokens_BxT), decode=decode)
    h_BxTxD = nn.Dropout(self.dropout_rate, deterministic=not train)(h_BxTxD)
    blocks = scale.BlockStack(
        lambda name: transformer.DecoderBlock(
            self.num_heads, self.mlp_dim or 4 * self.model_dim, self.dropout_rate, norm='pre',
            mlp_activation=self.mlp_activation, rotary=self.positional == 'rotary',
            norm_epsilon=self.norm_epsilon, dtype=self.dtype, name=name),
        self.num_layers, scan=self.scan_layers, remat=self.remat)
    h_BxTxD = blocks(h_BxTxD, None, None, None, decode, train)
    h_BxTxD = scale.layer_norm(self.norm_epsilon, self.dtype, name='final_norm')(h_BxTxD)
    return embed.attend(h_BxTxD).astype(jnp.float32)

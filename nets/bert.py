"""BERT (Devlin et al. 2019): a Transformer encoder pre-trained on unlabelled text, then
fine-tuned with a small head per task.

Input: [CLS] A [SEP] (B [SEP]), token ids w_t with segment ids s_t in {0 (A), 1 (B)}, pad 0.

    h_0 = LN(E[w_t] + S[s_t] + P[t])                (token, segment, position embeddings)
    h_l = LN(a + FFN(a)),  a = LN(h_{l-1} + MHA(h_{l-1}))   (post-norm blocks, GELU FFN;
                                                     norm='pre' puts LN before MHA, FFN)
    pooled = tanh(W_p h_L[CLS] + b_p)               (the pooler: a sentence vector)

Heads (`head`):
  'pretraining'  masked LM, tied to the input embeddings, and a 2-way pair head:
                   p(w | h_t) = softmax(E LN(GELU(W_m h_t + b_m)) + b_v)
                   p(pair | x) = softmax(W_n pooled + b_n)
                 the pair head is next-sentence prediction (0: B follows A, 1: random B)
                 or sentence-order prediction (0: A then B, 1: swapped), by the data.
  'sequence'     one label per input from `pooled` (a sentence, or a sentence pair), or
                   with pool='mean' from the mean of h_L over the real tokens.
  'token'        one label per token from h_L (tagging: the first sub-word of each word).
  'span'         extractive QA: a start vector u and an end vector v scored against every
                   token, start logits u . h_t and end logits v . h_t; the answer is the
                   span i <= j that maximises start_i + end_j (train/bert_tasks.py).
  'none'         the hidden states h_L themselves (contextual embeddings).

The encoder's parameters live under 'encoder' (and the pooler under 'pooler') whatever the
head, so a pre-trained run's encoder initialises any fine-tuning head (config.init_from),
and converted Hugging Face checkpoints land in the same place (train/hf_convert.py).
"""

import flax.linen as nn
import jax
import jax.numpy as jnp

from nets import scale, transformer
from nets.mlp import ModelConfigError, check_choice

HEADS = ('pretraining', 'sequence', 'token', 'span', 'none')
POOLS = ('cls', 'mean')
_INIT = nn.initializers.normal(stddev=0.02)  # BERT's initialiser for every weight


class BertEncoder(nn.Module):
  """(tokens, segments) -> h_L [B, T, D]: the embeddings and the post-norm block stack."""
  vocab_size: int
  num_layers: int
  num_heads: int
  model_dim: int
  mlp_dim: int
  max_len: int
  type_vocab_size: int
  dropout_rate: float
  norm_epsilon: float
  norm: str
  dtype: str
  remat: str
  scan_layers: bool

  def setup(self):
    embed = lambda rows, row_axis: scale.embed(rows, self.model_dim, _INIT, self.dtype,
                                               row_axis)
    self.token_embed = embed(self.vocab_size, 'vocab')
    self.segment_embed = embed(self.type_vocab_size, None)
    self.position_embed = embed(self.max_len, None)
    self.embed_norm = scale.layer_norm(self.norm_epsilon, self.dtype)
    self.dropout = nn.Dropout(self.dropout_rate)
    self.blocks = scale.BlockStack(
        lambda name: transformer.EncoderBlock(
            self.num_heads, self.mlp_dim, self.dropout_rate, norm=self.norm,
            mlp_activation='gelu_exact', norm_epsilon=self.norm_epsilon, dtype=self.dtype,
            name=name),
        self.num_layers, scan=self.scan_layers, remat=self.remat)
    if self.norm == 'pre':
      self.final_norm = scale.layer_norm(self.norm_epsilon, self.dtype)

  def __call__(self, tokens_BxT, segments_BxT, *, train: bool):
    length = tokens_BxT.shape[1]
    if length > self.max_len:
      raise ModelConfigError(f'a sequence of length {length} is longer than '
                             f'config.model.max_len={self.max_len}; raise max_len.')
    h_BxTxD = (self.token_embed(tokens_BxT) + self.segment_embed(segments_BxT)
               + self.position_embed(jnp.arange(length))[None])
    h_BxTxD = self.dropout(self.embed_norm(h_BxTxD), deterministic=not train)
    h_BxTxD = self.blocks(h_BxTxD, tokens_BxT != 0, train)
    return self.final_norm(h_BxTxD) if self.norm == 'pre' else h_BxTxD


class BERT(nn.Module):
  """Token ids [B, T] (and segment ids [B, T]) -> the outputs of `head` (module docstring)."""
  vocab_size: int
  head: str = 'sequence'
  num_outputs: int | None = None  # labels of a 'sequence' or 'token' head
  num_layers: int = 4
  num_heads: int = 4
  model_dim: int = 256
  mlp_dim: int | None = None  # None: 4 * model_dim
  max_len: int = 128
  type_vocab_size: int = 2
  dropout_rate: float = 0.1
  norm_epsilon: float = 1e-12
  # 'post' is BERT's (and every Hugging Face checkpoint's); 'pre' (LN before each sub-layer
  # and once after the stack, nets/transformer.py) trains faster from scratch.
  norm: str = 'post'
  # The 'sequence' head reads the pooled [CLS] vector (BERT), or with pool='mean' the mean
  # of h_L over the real tokens (no pooler).
  pool: str = 'cls'
  dtype: str = 'float32'  # the computation's; nets/scale.py
  remat: str = 'none'
  scan_layers: bool = False

  @nn.compact
  def __call__(self, tokens_BxT, segments_BxT=None, mlm_positions_BxP=None, *,
               train: bool = False):
    """`mlm_positions_BxP` (pre-training): the masked LM scores only these positions."""
    check_choice('head', self.head, dict.fromkeys(HEADS))
    if self.head in ('sequence', 'token') and not self.num_outputs:
      raise ModelConfigError(f"config.model.head={self.head!r} needs num_outputs (the "
                             'number of labels); the task sets it from the dataset.')
    if segments_BxT is None:
      segments_BxT = jnp.zeros_like(tokens_BxT)
    encoder = BertEncoder(self.vocab_size, self.num_layers, self.num_heads, self.model_dim,
                          self.mlp_dim or 4 * self.model_dim, self.max_len,
                          self.type_vocab_size, self.dropout_rate, self.norm_epsilon,
                          self.norm, self.dtype, self.remat, self.scan_layers, name='encoder')
    h_BxTxD = encoder(tokens_BxT, segments_BxT, train=train)
    if self.head == 'none':
      return h_BxTxD
    dropout = nn.Dropout(self.dropout_rate, deterministic=not train)
    # Heads compute in float32 (they are small) and return float32 logits.
    h_BxTxD = h_BxTxD.astype(jnp.float32)
    dense = lambda width, name: nn.Dense(width, kernel_init=_INIT, name=name)
    if self.head == 'token':
      return dense(self.num_outputs, 'classifier')(dropout(h_BxTxD))
    if self.head == 'span':
      start_end_BxTx2 = dense(2, 'span')(h_BxTxD)  # columns: the start and end vectors
      return start_end_BxTx2[..., 0], start_end_BxTx2[..., 1]
    check_choice('pool', self.pool, dict.fromkeys(POOLS))
    if self.head == 'sequence' and self.pool == 'mean':
      real_BxTx1 = (tokens_BxT != 0)[..., None].astype(h_BxTxD.dtype)
      mean_BxD = jnp.sum(h_BxTxD * real_BxTx1, 1) / jnp.maximum(jnp.sum(real_BxTx1, 1), 1.0)
      return dense(self.num_outputs, 'classifier')(dropout(mean_BxD))
    pooled_BxD = jnp.tanh(dense(self.model_dim, 'pooler')(h_BxTxD[:, 0]))
    if self.head == 'sequence':
      return dense(self.num_outputs, 'classifier')(dropout(pooled_BxD))
    if mlm_positions_BxP is not None:
      h_BxTxD = jnp.take_along_axis(h_BxTxD, mlm_positions_BxP[..., None], axis=1)
    x_BxTxD = scale.layer_norm(self.norm_epsilon, jnp.float32, name='mlm_norm')(
        nn.gelu(dense(self.model_dim, 'mlm_transform')(h_BxTxD), approximate=False))
    mlm_bias_V = self.param('mlm_bias', scale.named(nn.initializers.zeros, 'vocab'),
                            (self.vocab_size,))
    # T is P when the positions are given; the tied layer computes in the model's dtype.
    mlm_logits_BxTxV = (encoder.token_embed.attend(x_BxTxD).astype(jnp.float32)
                        + mlm_bias_V[None, None])
    return mlm_logits_BxTxV, dense(2, 'pair')(pooled_BxD)


def best_spans(start_BxT: jax.Array, end_BxT: jax.Array, allowed_BxT: jax.Array,
               max_answer_len: int) -> tuple[jax.Array, jax.Array]:
  """(start_B, end_B): argmax over i <= j < i + max_answer_len of start_i + end_j, both
  positions allowed (the context's tokens); so an answer never ends before it starts."""
  length = start_BxT.shape[1]
  i, j = jnp.arange(length)[:, None], jnp.arange(length)[None, :]
  valid_TxT = (j >= i) & (j < i + max_answer_len)
  both_BxTxT = allowed_BxT[:, :, None] & allowed_BxT[:, None, :] & valid_TxT[None]
  score_BxTxT = start_BxT[:, :, None] + end_BxT[:, None, :]
  flat_BxTT = jnp.where(both_BxTxT, score_BxTxT, -jnp.inf).reshape(start_BxT.shape[0], -1)
  best_B = jnp.argmax(flat_BxTT, axis=-1)
  return best_B // length, best_B % length

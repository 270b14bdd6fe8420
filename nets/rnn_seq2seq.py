"""RNN encoder-decoder with attention (Bahdanau et al. 2015; Luong et al. 2015).

Source x_1..x_S, target y_1..y_T (EOS last); E_x, E_y are embedding tables (one table when
`share_embeddings` and the vocabulary is shared). Pad id 0 marks source padding.

Encoder, a bidirectional GRU or LSTM (nets/rnn.py) under the source mask, whose outputs
are the memory the decoder attends over (C = 2 * encoder_size):

    m_s = [->h_s; <-h_s]

Bridge, the decoder's initial state from the encoder's final states (each part of the
state: h, and c for an LSTM),

    s_0 = tanh(W_b [->h_S; <-h_1] + b_b),        c_0 = 0 (the context vector)

Decoder step t, with input feeding (Luong et al. 2015, sec. 3.3: the previous context is
part of the input, so the decoder knows what it attended to):

    s_t, h_t = cell(s_{t-1}, [E_y y_{t-1}; c_{t-1}])        (y_0 = BOS)
    e_ts = v^T tanh(W_q h_t + W_k m_s)       additive (Bahdanau; 'concat' in Luong)
    e_ts = h_t^T W m_s                       multiplicative (Luong's 'general')
    a_ts = exp(e_ts) / sum_{s' real} exp(e_ts')     (a_ts = 0 exactly on source padding)
    c_t = sum_s a_ts m_s

Output, the attentional hidden state and the next-token distribution,

    o_t = tanh(W_o [h_t; c_t] + b_o)
    p(y_t | y_<t, x) = softmax(W_v o_t + b_v)

Speed: the keys' projections (W_k m_s, or W m_s seen as keys m_s^T W^T for the query h_t)
depend only on the source, so `start_decoding` computes them once per sentence. Inside the
step only the context part of the cell's input, W_c c_{t-1}, is computed: the embedding
part W_e E_y y_{t-1} + b is one matmul over all t before the loop (the cell's `project`),
and o_t and the logits are computed for all t after it.

Decoding: `start_decoding` encodes the source into `memory` (every leaf with a leading
batch axis), and `decode_step` continues from the 'cache' collection, which holds the
decoder's carry (s_t, c_t) and a per-example position; a zero cache means nothing has been
decoded, and the carry then comes from `memory` (s_0, c_0 = 0). Steps over T tokens give
exactly the logits of teacher forcing over the same tokens.
"""

import flax.linen as nn
import jax
import jax.numpy as jnp

from nets import rnn
from nets.attention import large_negative
from nets.mlp import check_choice


# --- Attention: scores of one query per example against the projected keys of its source.

def additive_scores(query_BxH, keys_BxSxA, w_q_HxA, v_A):
  """e_s = v^T tanh(W_q h + k_s), with k_s = W_k m_s precomputed."""
  hidden_BxSxA = jnp.tanh((query_BxH @ w_q_HxA)[:, None, :] + keys_BxSxA)
  return hidden_BxSxA @ v_A


def multiplicative_scores(query_BxH, keys_BxSxH):
  """e_s = h^T W m_s = h . k_s, with k_s = W m_s precomputed."""
  return jnp.einsum('bh,bsh->bs', query_BxH, keys_BxSxH)


def attend(scores_BxS, values_BxSxC, mask_BxS):
  """(c, a): a = softmax of the scores over the real positions (exactly 0 on padding),
  c = sum_s a_s m_s."""
  scores_BxS = jnp.where(mask_BxS, scores_BxS, large_negative(scores_BxS.dtype))
  weights_BxS = jax.nn.softmax(scores_BxS, axis=-1)
  return jnp.einsum('bs,bsc->bc', weights_BxS, values_BxSxC), weights_BxS


ATTENTIONS = ('additive', 'multiplicative')


# --- The decoder: a nets.rnn cell whose every step attends.

class AttentionDecoderCell(rnn.Cell):
  """The decoder recurrence with input feeding and attention (module docstring).

  Mixed into a nets.rnn cell (below), so the cell's own input projection and step are
  reused: `input` is W_e and b (embedding part), `context_input` is W_c, `recurrent` is U.
  """
  attention: str = 'additive'
  attention_size: int = 256  # A, the width of v and W_q (additive only)

  def score_fn(self):
    """(h_BxH, keys_BxSxA) -> e_BxS, closing over this cell's attention weights."""
    if self.attention == 'multiplicative':
      return multiplicative_scores
    w_q_HxA, _ = rnn.Weights((self.hidden_size, self.attention_size), rnn.INPUT_INIT,
                             name='attention_query')()
    v_A = self.param('attention_v', nn.initializers.normal(self.attention_size ** -0.5),
                     (self.attention_size,))
    return lambda query_BxH, keys_BxSxA: additive_scores(query_BxH, keys_BxSxA, w_q_HxA, v_A)

  @nn.compact
  def __call__(self, embedded_BxTxE, memory: dict, *, decode: bool = False):
    """Runs the decoder over T target embeddings.

    Returns h_BxTxH, c_BxTxC and the attention weights a_BxTxS. With decode=True the carry
    starts from the 'cache' collection (or from `memory` at position 0) and is saved back.
    """
    check_choice('attention', self.attention, dict.fromkeys(ATTENTIONS))
    values_BxSxC, keys_BxSxA, mask_BxS = memory['values'], memory['keys'], memory['mask']
    xw_BxTxG = self.project(embedded_BxTxE)
    w_c_CxG, _ = rnn.Weights((values_BxSxC.shape[-1], xw_BxTxG.shape[-1]),
                             rnn.per_gate(rnn.INPUT_INIT, self.num_gates),
                             name='context_input')()
    cell_step = self.step_fn()
    score = self.score_fn()
    carry = (self.as_state(memory['state']), memory['context'])
    if decode:
      position = self.variable('cache', 'position',
                               lambda: jnp.zeros(mask_BxS.shape[:1], jnp.int32))
      cached = self.variable('cache', 'carry', lambda: jax.tree.map(jnp.zeros_like, carry))
      start_Bx1 = (position.value == 0)[:, None]
      carry = jax.tree.map(lambda first, later: jnp.where(start_Bx1, first, later),
                           carry, cached.value)

    def step(carry, xw_BxG):
      state, context_BxC = carry
      state, h_BxH = cell_step(state, xw_BxG + context_BxC @ w_c_CxG)
      context_BxC, weights_BxS = attend(score(h_BxH, keys_BxSxA), values_BxSxC, mask_BxS)
      return (state, context_BxC), (h_BxH, context_BxC, weights_BxS)

    carry, outputs = jax.lax.scan(step, carry, jnp.swapaxes(xw_BxTxG, 0, 1))
    if decode:
      cached.value = carry
      position.value = position.value + embedded_BxTxE.shape[1]
    return tuple(jnp.swapaxes(y, 0, 1) for y in outputs)


class AttentionGRU(AttentionDecoderCell, rnn.GRUCell):
  """The GRU of nets/rnn.py as an attention decoder."""


class AttentionLSTM(AttentionDecoderCell, rnn.LSTMCell):
  """The LSTM of nets/rnn.py as an attention decoder."""


DECODER_CELLS: dict[str, type[AttentionDecoderCell]] = {
    'gru': AttentionGRU,
    'lstm': AttentionLSTM,
}


class Bridge(nn.Module):
  """s_0 = tanh(W_b [->h_S; <-h_1] + b_b), one layer per part of the state (`part_i`)."""
  size: int

  @nn.compact
  def __call__(self, forward_state, backward_state):
    parts = [jnp.tanh(nn.Dense(self.size, name=f'part_{i}')(jnp.concatenate([f, b], -1)))
             for i, (f, b) in enumerate(zip(jax.tree.leaves(forward_state),
                                            jax.tree.leaves(backward_state)))]
    return jax.tree.unflatten(jax.tree.structure(forward_state), parts)


class RNNSeq2Seq(nn.Module):
  """`__call__(inputs_BxS, targets_in_BxT)` -> logits_BxTxV (module docstring).

  Attributes:
    vocab_size: source vocabulary (and target vocabulary when target_vocab_size is None).
    target_vocab_size: the target vocabulary; None shares the source's.
    cell: 'gru' or 'lstm', for the encoder and the decoder.
    embed_dim: E, the width of the token embeddings.
    encoder_size: the hidden size of each direction of the encoder (C = 2 * encoder_size).
    encoder_layers: stacked bidirectional layers in the encoder.
    decoder_size: H, the decoder's hidden size.
    attention: 'additive' or 'multiplicative'.
    attention_size: A, the hidden width of additive attention.
    output_dim: the width of the attentional hidden state o_t.
    share_embeddings: one embedding table for source and target (shared vocabulary only).
    dropout_rate: on the embeddings, between encoder layers, and on o_t.
  """
  vocab_size: int
  target_vocab_size: int | None = None
  cell: str = 'gru'
  embed_dim: int = 256
  encoder_size: int = 256
  encoder_layers: int = 1
  decoder_size: int = 512
  attention: str = 'additive'
  attention_size: int = 256
  output_dim: int = 256
  share_embeddings: bool = True
  dropout_rate: float = 0.2

  def setup(self):
    check_choice('cell', self.cell, DECODER_CELLS)
    check_choice('attention', self.attention, dict.fromkeys(ATTENTIONS))
    embed = lambda vocab, name: nn.Embed(vocab, self.embed_dim, name=name)
    if self.share_embeddings and self.target_vocab_size is None:
      self.source_embed = self.target_embed = embed(self.vocab_size, 'embed')
    else:
      self.source_embed = embed(self.vocab_size, 'source_embed')
      self.target_embed = embed(self.target_vocab_size or self.vocab_size, 'target_embed')
    self.encoder = rnn.RNN(self.cell, self.encoder_size, self.encoder_layers,
                           bidirectional=True, dropout_rate=self.dropout_rate, name='encoder')
    self.bridge = Bridge(self.decoder_size, name='bridge')
    key_size = self.attention_size if self.attention == 'additive' else self.decoder_size
    self.attention_keys = nn.Dense(key_size, use_bias=False, name='attention_keys')
    self.decoder = DECODER_CELLS[self.cell](
        hidden_size=self.decoder_size, attention=self.attention,
        attention_size=self.attention_size, name='decoder')
    self.attentional = nn.Dense(self.output_dim, name='attentional')
    self.output = nn.Dense(self.target_vocab_size or self.vocab_size, name='output')
    self.dropout = nn.Dropout(self.dropout_rate)

  def start_decoding(self, inputs_BxS, *, train: bool = False) -> dict:
    """The memory: encoder outputs m, projected keys, source mask, s_0 and c_0 = 0."""
    mask_BxS = inputs_BxS != 0
    x_BxSxE = self.dropout(self.source_embed(inputs_BxS), deterministic=not train)
    values_BxSxC, finals = self.encoder(x_BxSxE, mask_BxS, train=train)
    forward_state, backward_state = finals[-1]
    return {'values': values_BxSxC, 'keys': self.attention_keys(values_BxSxC),
            'mask': mask_BxS, 'state': self.bridge(forward_state, backward_state),
            'context': jnp.zeros((inputs_BxS.shape[0], values_BxSxC.shape[-1]),
                                 values_BxSxC.dtype)}

  def decode(self, memory: dict, targets_in_BxT, *, decode: bool = False,
             train: bool = False):
    """logits_BxTxV of the next token after each of `targets_in_BxT`."""
    y_BxTxE = self.dropout(self.target_embed(targets_in_BxT), deterministic=not train)
    h_BxTxH, context_BxTxC, weights_BxTxS = self.decoder(y_BxTxE, memory, decode=decode)
    self.sow('intermediates', 'attention_weights', weights_BxTxS)
    o_BxTxD = jnp.tanh(self.attentional(jnp.concatenate([h_BxTxH, context_BxTxC], -1)))
    return self.output(self.dropout(o_BxTxD, deterministic=not train))

  def decode_step(self, memory: dict, tokens_BxT):
    """Continues decoding from the 'cache' collection (which must be mutable)."""
    return self.decode(memory, tokens_BxT, decode=True)

  def __call__(self, inputs_BxS, targets_in_BxT, *, train: bool = False):
    return self.decode(self.start_decoding(inputs_BxS, train=train), targets_in_BxT,
                       train=train)

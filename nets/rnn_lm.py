"""A recurrent language model: embedding -> stacked RNN -> dropout -> output layer.

    x_t = dropout(E[w_t])                          E: V x D embedding
    h_t, s_t = RNN(x_t, s_{t-1})                   nets/rnn.py: `num_layers` cells (LSTM, GRU,
                                                   Elman, Jordan), dropout between layers
    z_t = W dropout(h_t) + b                       W: H x V, or E^T with `tie_weights` (D = H)
    p(w_{t+1} = v | w_<=t) = softmax(z_t)_v

Dropout sits on the non-recurrent connections only (Zaremba et al. 2014): the embedding
output, between layers, and before the output layer; never on the path s_{t-1} -> s_t.
Tied weights (Press & Wolf 2017; Inan et al. 2017) reuse the embedding as the output
matrix and keep a separate output bias b.

Carried state (truncated backpropagation through time). With `carry_batch_size` = B > 0 the
initial state s_0 of every layer is read from the variable `carry/state` (B rows, zeros at
first) and the final state is written back to it, whenever the collection 'carry' is
mutable (the training step): window k+1 of a row then starts where window k ended. The
state enters as data, not as a function of the parameters, so gradients stop at the window
boundary. Where 'carry' is not mutable (evaluation) every window starts from zeros.
`decode=True` does the same with the collection 'cache', sized to the batch: that is how
train/generate.py feeds the model one token at a time.
"""

import flax.linen as nn
import jax
import jax.numpy as jnp

from nets import rnn
from nets.mlp import ModelConfigError


class RNNLM(nn.Module):
  vocab_size: int
  embed_dim: int = 128          # D
  hidden_size: int = 256        # H
  num_layers: int = 1
  cell: str = 'lstm'
  peephole: bool = False
  dropout_rate: float = 0.0
  tie_weights: bool = False
  carry_batch_size: int = 0     # B rows of carried state; 0: every call starts from zeros

  def zero_state(self, rows: int) -> tuple:
    """One zero state per layer, as nets.rnn.RNN takes and returns them."""
    cell = rnn.make_cell(self.cell, self.hidden_size, self.peephole, parent=None)
    return tuple(cell.zero_state(rows, jnp.float32) for _ in range(self.num_layers))

  def carried_state(self, rows: int, decode: bool):
    """The variable holding the state carried between calls, or None if there is none."""
    if decode:
      return self.variable('cache', 'state', self.zero_state, rows)
    if self.carry_batch_size and self.is_mutable_collection('carry'):
      return self.variable('carry', 'state', self.zero_state, self.carry_batch_size)
    return None

  @nn.compact
  def __call__(self, tokens_BxT: jax.Array, train: bool = False, decode: bool = False):
    """Next-token logits [B, T, V] for every position of `tokens_BxT`."""
    if self.tie_weights and self.embed_dim != self.hidden_size:
      raise ModelConfigError(
          f'config.model.tie_weights=True uses the embedding as the output layer, so '
          f'embed_dim={self.embed_dim} must equal hidden_size={self.hidden_size}.')
    rows = tokens_BxT.shape[0]
    embed = nn.Embed(self.vocab_size, self.embed_dim, name='embed')
    x_BxTxD = nn.Dropout(self.dropout_rate, deterministic=not train)(embed(tokens_BxT))
    state = self.carried_state(rows, decode)
    # At init the batch is an example's, not the training batch the carry is sized for.
    carried = state is not None and not self.is_initializing()
    if carried and jax.tree.leaves(state.value)[0].shape[0] != rows:
      raise ValueError(f'The carried state has {jax.tree.leaves(state.value)[0].shape[0]} '
                       f'rows but the batch has {rows}: carry_batch_size must be the number '
                       'of rows each call sees.')
    h_BxTxH, finals = rnn.RNN(self.cell, self.hidden_size, self.num_layers,
                              peephole=self.peephole, dropout_rate=self.dropout_rate,
                              name='rnn')(x_BxTxD, None, state.value if carried else None,
                                          train=train)
    if carried:
      state.value = jax.lax.stop_gradient(finals)
    h_BxTxH = nn.Dropout(self.dropout_rate, deterministic=not train)(h_BxTxH)
    if self.tie_weights:
      bias_V = self.param('output_bias', nn.initializers.zeros, (self.vocab_size,))
      return embed.attend(h_BxTxH) + bias_V[None, None, :]
    # As rows (B T, H), for the reason of rnn.Cell.project: a plain matmul for dW.
    logits_NxV = nn.Dense(self.vocab_size, name='output')(h_BxTxH.reshape(-1, self.hidden_size))
    return logits_NxV.reshape(*h_BxTxH.shape[:2], self.vocab_size)

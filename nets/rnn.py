"""Recurrent networks: Elman, Jordan, GRU and LSTM cells, one shared scan, stacking, two directions.

Every cell reads x_t (D inputs) and a state carried from the previous step. With s = sigmoid:

    Elman    h_t = tanh(W x_t + U h_{t-1} + b)                       state h, output h

    Jordan   h_t = tanh(W x_t + U y_{t-1} + b)                       state y (the previous
             y_t = f(V h_t + c)                                      OUTPUT, not h), output y

    GRU      z_t = s(W_z x_t + U_z h_{t-1} + b_z)                    update gate
             r_t = s(W_r x_t + U_r h_{t-1} + b_r)                    reset gate
             h~_t = tanh(W_h x_t + U_h (r_t * h_{t-1}) + b_h)        reset applied BEFORE U_h
             h_t = (1 - z_t) * h_{t-1} + z_t * h~_t                  state h, output h

    LSTM     i_t = s(W_i x_t + U_i h_{t-1} + p_i * c_{t-1} + b_i)    input gate
             f_t = s(W_f x_t + U_f h_{t-1} + p_f * c_{t-1} + b_f)    forget gate (b_f starts at 1)
             g_t = tanh(W_g x_t + U_g h_{t-1} + b_g)                 candidate cell
             c_t = f_t * c_{t-1} + i_t * g_t
             o_t = s(W_o x_t + U_o h_{t-1} + p_o * c_t + b_o)        output gate sees the NEW c_t
             h_t = o_t * tanh(c_t)                                   state (c, h), output h

GRU convention: this is Cho et al. (2014) with the reset gate applied to h_{t-1} before the
matrix U_h (not cuDNN's "reset after", r * (U_h h + b)). Cho et al. write the interpolation
with z and 1 - z swapped, h_t = z h_{t-1} + (1 - z) h~; the form above (Chung et al. 2014,
PyTorch) is the same family with z relabelled 1 - z, and z_t = 1 means "take the new value".
LSTM peepholes (Gers & Schmidhuber 2000) are the diagonal weights p_i, p_f, p_o; without
them (`peephole=False`) those terms are absent.

Speed: the input terms W x_t + b of a gated cell are stacked into one D x (G*H) matrix (G gates)
and computed for ALL time steps in one matmul, x_BxTxD @ W_Dx(GH), before the loop; only
U h_{t-1} (and the gates' elementwise work) runs inside `jax.lax.scan`, which every cell shares.
The loop body is a pure function of the weight arrays, so the parameters exist once. The
LSTM's loop (`lstm_scan`) has a hand-written gradient whose backward loop only propagates
(dc, dh); its recurrent weight gradient is one matmul over all steps after that loop.

Padding: with mask_BxT (1 real, 0 pad, anywhere in the row), a padded step carries the state
unchanged and outputs 0, so padding never changes a result and the final state is the one
after the row's last real token. The backward direction of `Bidirectional` scans t = T-1..0;
because padded steps are no-ops it reads each row's REAL tokens right to left, starting at the
last real one, exactly as if the row had been reversed within its length.

Parameter paths (for weight decay by path): `input/kernel` (W, glorot), `input/bias` (b),
`recurrent/kernel` (U, orthogonal), Jordan's `output/kernel` and `output/bias` (V, c), and the
LSTM's `peephole_i`, `peephole_f`, `peephole_o` (vectors, starting at 0). Gate blocks sit side
by side in the order the equations list them (GRU: z, r, h; LSTM: i, f, g, o), and each block
is initialised as if it were its own matrix (an orthogonal H x H block of U, not a slice of a
wide matrix).
"""

import functools
from typing import Any, Callable, NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp

from nets.mlp import ACTIVATIONS, ModelConfigError, check_choice

State = Any  # an array, or a pytree of arrays (the LSTM's (c, h)), each B x H


class LSTMState(NamedTuple):
  c: jax.Array  # B x H cell
  h: jax.Array  # B x H hidden (the output)


# Glorot keeps the variance of W x_t near that of x_t; an orthogonal U preserves norms, so a
# product of many U's (the gradient through many steps) starts neither exploding nor vanishing.
INPUT_INIT = nn.initializers.glorot_uniform()
RECURRENT_INIT = nn.initializers.orthogonal()


def per_gate(init: Callable, num_gates: int) -> Callable:
  """Initialises a (fan_in, G*H) kernel as G independent (fan_in, H) blocks side by side."""
  def init_fn(key, shape, dtype=jnp.float32):
    fan_in, width = shape
    keys = jax.random.split(key, num_gates)
    return jnp.concatenate([init(k, (fan_in, width // num_gates), dtype) for k in keys], axis=1)
  return init_fn


class Weights(nn.Module):
  """A kernel (and a bias) returned as arrays, for a loop body that is a pure function of them.

  It exists to give the parameters the paths `<name>/kernel` and `<name>/bias`.
  """
  shape: tuple[int, int]
  kernel_init: Callable
  bias_init: Callable | None = None  # None: no bias

  @nn.compact
  def __call__(self):
    kernel = self.param('kernel', self.kernel_init, self.shape)
    if self.bias_init is None:
      return kernel, None
    return kernel, self.param('bias', self.bias_init, (self.shape[1],))


def scan_masked(step: Callable, state: State, xw_BxTxG: jax.Array, mask_BxT: jax.Array,
                reverse: bool = False) -> tuple[jax.Array, State]:
  """Runs `state, y_t = step(state, xw_t)` over t (T-1..0 if `reverse`), skipping padded steps.

  Returns the outputs y_BxTxH (zero where mask is 0) and the state after the last real step.
  """
  def body(state, inputs):
    xw_BxG, real_B = inputs
    new_state, y_BxH = step(state, xw_BxG)
    real_Bx1 = real_B[:, None]
    state = jax.tree.map(lambda new, old: jnp.where(real_Bx1, new, old), new_state, state)
    return state, jnp.where(real_Bx1, y_BxH, jnp.zeros_like(y_BxH))

  # lax.scan walks the leading axis, so time goes first inside the loop.
  final, y_TxBxH = jax.lax.scan(
      body, state, (jnp.swapaxes(xw_BxTxG, 0, 1), jnp.swapaxes(mask_BxT, 0, 1).astype(bool)),
      reverse=reverse)
  return jnp.swapaxes(y_TxBxH, 0, 1), final


class Cell(nn.Module):
  """Base of the cells: a cell says how to project inputs and how to step; this runs the loop.

  Subclasses define `num_gates` G, `input` (a `Weights` of shape D x G*H, made in `project`),
  `step_fn()` returning a pure `(state, xw_BxG) -> (state, y_BxH)`, and `zero_state`.
  """
  hidden_size: int

  def project(self, x_BxTxD: jax.Array) -> jax.Array:
    """W x_t + b for every t at once: the one big matmul that stays out of the loop.

    It multiplies the B * T rows as one 2-D matrix: then the gradient dW = x^T dz is a plain
    matrix product, where on B x T x D arrays XLA:CPU transposes dz and contracts both
    operands on their leading axes: at the shakespeare_lstm size, 38 and 18 ms of a one-core
    step for layers 1 and 0 against 23 and 4 ms as 2-D products (README).
    """
    batch, length, dim = x_BxTxD.shape
    width = self.num_gates * self.hidden_size
    w_DxG, b_G = Weights((dim, width), per_gate(INPUT_INIT, self.num_gates),
                         self.input_bias_init(), name='input')()
    xw_NxG = x_BxTxD.reshape(batch * length, dim) @ w_DxG + b_G[None, :]
    return xw_NxG.reshape(batch, length, width)

  def input_bias_init(self) -> Callable:
    return nn.initializers.zeros

  def zero_state(self, batch_size: int, dtype) -> State:
    return jnp.zeros((batch_size, self.hidden_size), dtype)

  def as_state(self, state) -> State:
    """A passed-in state in the carry's own pytree type (lax.scan needs in == out)."""
    return state

  def step_fn(self) -> Callable:
    raise NotImplementedError

  @nn.compact
  def __call__(self, x_BxTxD: jax.Array, mask_BxT: jax.Array | None = None,
               initial_state: State | None = None, reverse: bool = False):
    """Returns (outputs_BxTxH, final_state); `initial_state` defaults to zeros."""
    batch_size, length = x_BxTxD.shape[:2]
    xw_BxTxG = self.project(x_BxTxD)
    if mask_BxT is None:
      mask_BxT = jnp.ones((batch_size, length), bool)
    if initial_state is None:
      initial_state = self.zero_state(batch_size, xw_BxTxG.dtype)
    return self.recur(self.as_state(initial_state), xw_BxTxG, mask_BxT, reverse)

  def recur(self, state: State, xw_BxTxG: jax.Array, mask_BxT: jax.Array, reverse: bool):
    """The loop over time; a cell with a hand-written gradient (the LSTM) overrides it."""
    return scan_masked(self.step_fn(), state, xw_BxTxG, mask_BxT, reverse)


class ElmanCell(Cell):
  """h_t = tanh(W x_t + U h_{t-1} + b)."""
  num_gates = 1

  def step_fn(self):
    u_HxH, _ = Weights((self.hidden_size,) * 2, RECURRENT_INIT, name='recurrent')()

    def step(h_BxH, xw_BxH):
      h_BxH = jnp.tanh(xw_BxH + h_BxH @ u_HxH)
      return h_BxH, h_BxH
    return step


JORDAN_OUTPUTS: dict[str, Callable] = {**ACTIVATIONS, 'linear': lambda z: z}


class JordanCell(Cell):
  """h_t = tanh(W x_t + U y_{t-1} + b),  y_t = f(V h_t + c): the output is what is fed back."""
  output_size: int | None = None  # O; None means hidden_size
  output_activation: str = 'tanh'  # f
  num_gates = 1

  def zero_state(self, batch_size, dtype):
    return jnp.zeros((batch_size, self.output_size or self.hidden_size), dtype)

  def step_fn(self):
    check_choice('output_activation', self.output_activation, JORDAN_OUTPUTS)
    f = JORDAN_OUTPUTS[self.output_activation]
    size = self.output_size or self.hidden_size
    u_OxH, _ = Weights((size, self.hidden_size), RECURRENT_INIT, name='recurrent')()
    v_HxO, c_O = Weights((self.hidden_size, size), INPUT_INIT, nn.initializers.zeros,
                         name='output')()

    def step(y_BxO, xw_BxH):
      h_BxH = jnp.tanh(xw_BxH + y_BxO @ u_OxH)
      y_BxO = f(h_BxH @ v_HxO + c_O[None, :])
      return y_BxO, y_BxO
    return step


class GRUCell(Cell):
  """Gates [z, r, h~] (Cho et al. 2014, reset before U_h); h_t = (1 - z) h_{t-1} + z h~."""
  num_gates = 3

  def step_fn(self):
    size = self.hidden_size
    u_Hx3H, _ = Weights((size, 3 * size), per_gate(RECURRENT_INIT, 3), name='recurrent')()
    u_zr_Hx2H, u_h_HxH = u_Hx3H[:, :2 * size], u_Hx3H[:, 2 * size:]  # sliced once, not per step

    def step(h_BxH, xw_Bx3H):
      xw_zr_Bx2H, xw_h_BxH = xw_Bx3H[:, :2 * size], xw_Bx3H[:, 2 * size:]
      z_BxH, r_BxH = jnp.split(nn.sigmoid(xw_zr_Bx2H + h_BxH @ u_zr_Hx2H), 2, axis=-1)
      candidate_BxH = jnp.tanh(xw_h_BxH + (r_BxH * h_BxH) @ u_h_HxH)
      h_BxH = (1 - z_BxH) * h_BxH + z_BxH * candidate_BxH
      return h_BxH, h_BxH
    return step


class LSTMWeights(NamedTuple):
  u_Hx4H: jax.Array
  peepholes: tuple[jax.Array, jax.Array, jax.Array] | None  # (p_i, p_f, p_o), each 1 x H


def lstm_cell(w: LSTMWeights, state: LSTMState, xw_Bx4H: jax.Array):
  """One step of the module docstring's LSTM: (new state, gates (i, f, g, o) after activation)."""
  pre_i, pre_f, pre_g, pre_o = jnp.split(xw_Bx4H + state.h @ w.u_Hx4H, 4, axis=-1)
  if w.peepholes is not None:  # without peepholes the p * c terms are absent, not times 0
    p_i, p_f, p_o = w.peepholes
    pre_i, pre_f = pre_i + p_i * state.c, pre_f + p_f * state.c
  i, f, g = nn.sigmoid(pre_i), nn.sigmoid(pre_f), jnp.tanh(pre_g)
  c = f * state.c + i * g
  o = nn.sigmoid(pre_o + (0.0 if w.peepholes is None else w.peepholes[2] * c))
  return LSTMState(c=c, h=o * jnp.tanh(c)), (i, f, g, o)


def lstm_step(w: LSTMWeights) -> Callable:
  """The cell as the `(state, xw_Bx4H) -> (state, h)` step that `scan_masked` runs."""
  def step(state, xw_Bx4H):
    state, _ = lstm_cell(w, state, xw_Bx4H)
    return state, state.h
  return step


@functools.partial(jax.custom_vjp, nondiff_argnums=(4,))
def lstm_scan(w: LSTMWeights, state: LSTMState, xw_BxTx4H: jax.Array, mask_BxT: jax.Array,
              reverse: bool):
  """`scan_masked(lstm_step(w), ...)`, with the hand-written gradient of `_lstm_scan_bwd`.

  JAX's own transpose of the scan adds h_{t-1}^T dz_t to dU inside the backward loop: a thin
  H x B x 4H matmul and an H x 4H accumulation per step. Here the backward loop only carries
  (dc, dh) and keeps each step's dz_t; dU is then one matmul over all T * B rows. At the
  shakespeare_lstm size the train step goes from about 237 ms to 213 (README).
  """
  return scan_masked(lstm_step(w), state, xw_BxTx4H, mask_BxT, reverse)


def _at(array_BxTx_: jax.Array, t: jax.Array) -> jax.Array:
  """Step t of a batch-major array. The custom loops index B x T x G arrays in place rather
  than scanning them time-major: that saves a B x T x 4H transpose each way, 3 to 11 ms of
  the 213 ms step (measured at the shakespeare_lstm size)."""
  return jax.lax.dynamic_index_in_dim(array_BxTx_, t, axis=1, keepdims=False)


def _previous(after_TxBxH: jax.Array, first_BxH: jax.Array, reverse: bool) -> jax.Array:
  """The state entering each step, from the states after each (in the scan's own order)."""
  if reverse:
    return jnp.concatenate([after_TxBxH[1:], first_BxH[None]])
  return jnp.concatenate([first_BxH[None], after_TxBxH[:-1]])


def _lstm_scan_fwd(w, state, xw_BxTx4H, mask_BxT, reverse):
  """The forward loop, keeping what the backward needs (time-major): the gates after their
  activations and the carried (c, h)."""
  real_BxTx1 = mask_BxT.astype(bool)[..., None]

  def body(carried, t):
    new, gates = lstm_cell(w, carried, _at(xw_BxTx4H, t))
    carried = jax.tree.map(lambda a, b: jnp.where(_at(real_BxTx1, t), a, b), new, carried)
    return carried, (carried, gates)

  final, (after, gates) = jax.lax.scan(body, state, jnp.arange(mask_BxT.shape[1]),
                                       reverse=reverse)
  # Where a step is real, the carried h is that step's output; padded steps output 0.
  y_BxTxH = jnp.where(real_BxTx1, jnp.swapaxes(after.h, 0, 1), 0.0)
  c_prev, h_prev = (_previous(a, s, reverse) for a, s in zip(after, state))
  return (y_BxTxH, final), (w, real_BxTx1, gates, after.c, c_prev, h_prev)


def _lstm_scan_bwd(reverse, residuals, cotangents):
  """The backward pass, with the cotangents dc, dh of the state AFTER step t carried in:

      dh   = dh + dy_t                                  (the step's output is its h)
      dz_o = dh * tanh(c_t) * o (1 - o)
      dc   = dc + dh * o (1 - tanh(c_t)^2) + dz_o * p_o
      dz_i = dc * g * i (1 - i)       dz_f = dc * c_{t-1} * f (1 - f)       dz_g = dc * i (1 - g^2)
      dc_{t-1} = dc * f + dz_i * p_i + dz_f * p_f
      dh_{t-1} = dz_t @ U^T                             dz_t = [dz_i dz_f dz_g dz_o] = d(xw_t)

  A padded step passes (dc, dh) through unchanged and has dz_t = 0. After the loop, over all
  t and b at once: dU = sum_t h_{t-1}^T dz_t (one (T*B) x H by (T*B) x 4H matmul), and the
  peepholes' dp_i = sum dz_i * c_{t-1}, dp_f = sum dz_f * c_{t-1}, dp_o = sum dz_o * c_t.
  dz itself is the gradient of xw = W x + b, from which autodiff of the projection gets dW
  and db (sum_t dz_t) outside any loop too.
  """
  w, real_BxTx1, gates_T, c_TxBxH, c_prev_TxBxH, h_prev_TxBxH = residuals
  dy_BxTxH, d_final = cotangents
  p_i, p_f, p_o = w.peepholes if w.peepholes is not None else (0.0,) * 3
  # Materialised once: XLA:CPU's matmul wants U^T row-major, and a dot on the transposed
  # operand repacks U at every step (about 10 ms a layer at the benchmark's size).
  u_t_4HxH = jax.lax.optimization_barrier(w.u_Hx4H.T)

  def body(carry, inputs):
    dc, dh, dz_BxTx4H = carry
    t, (i, f, g, o), c, c_prev = inputs
    real_Bx1 = _at(real_BxTx1, t)
    dh_t = dh + _at(dy_BxTxH, t)
    tanh_c = jnp.tanh(c)
    dz_o = dh_t * tanh_c * o * (1 - o)
    dc_t = dc + dh_t * o * (1 - tanh_c ** 2) + dz_o * p_o
    dz_i, dz_f, dz_g = dc_t * g * i * (1 - i), dc_t * c_prev * f * (1 - f), dc_t * i * (1 - g ** 2)
    dz_Bx4H = jnp.concatenate([dz_i, dz_f, dz_g, dz_o], axis=-1)
    dc = jnp.where(real_Bx1, dc_t * f + dz_i * p_i + dz_f * p_f, dc)
    dh = jnp.where(real_Bx1, dz_Bx4H @ u_t_4HxH, dh)
    dz_BxTx4H = jax.lax.dynamic_update_index_in_dim(
        dz_BxTx4H, jnp.where(real_Bx1, dz_Bx4H, 0.0), t, axis=1)
    return (dc, dh, dz_BxTx4H), None

  # dz is written in place into a batch-major buffer: it is d(xw_BxTx4H) with no transpose.
  batch, length, size = dy_BxTxH.shape
  (dc0, dh0, dz_BxTx4H), _ = jax.lax.scan(
      body, (d_final.c, d_final.h, jnp.zeros((batch, length, 4 * size), dy_BxTxH.dtype)),
      (jnp.arange(length), gates_T, c_TxBxH, c_prev_TxBxH), reverse=not reverse)
  d_u = jnp.einsum('bth,btg->hg', jnp.swapaxes(h_prev_TxBxH, 0, 1), dz_BxTx4H)
  d_peepholes = None
  if w.peepholes is not None:
    dz_i, dz_f, _, dz_o = jnp.split(jnp.swapaxes(dz_BxTx4H, 0, 1), 4, axis=-1)
    d_peepholes = tuple(jnp.sum(dz * c, axis=(0, 1))[None, :] for dz, c in
                        ((dz_i, c_prev_TxBxH), (dz_f, c_prev_TxBxH), (dz_o, c_TxBxH)))
  return LSTMWeights(d_u, d_peepholes), LSTMState(c=dc0, h=dh0), dz_BxTx4H, None


lstm_scan.defvjp(_lstm_scan_fwd, _lstm_scan_bwd)


class LSTMCell(Cell):
  """Gates [i, f, g, o]; optional diagonal peepholes (i, f see c_{t-1}; o sees c_t).

  Its loop is `lstm_scan`, whose gradient is written by hand (all options: padding, both
  directions, peepholes, initial state); the attention decoder of nets/rnn_seq2seq.py runs
  `step_fn` in its own loop and keeps JAX's gradient.
  """
  peephole: bool = False
  num_gates = 4

  def input_bias_init(self):
    # b_f = 1: the cell starts by remembering, so gradients survive early training
    # (Gers et al. 2000; Jozefowicz et al. 2015).
    def init(key, shape, dtype=jnp.float32):
      size = shape[0] // 4
      return jnp.zeros(shape, dtype).at[size:2 * size].set(1.0)
    return init

  def zero_state(self, batch_size, dtype):
    zeros = jnp.zeros((batch_size, self.hidden_size), dtype)
    return LSTMState(c=zeros, h=zeros)

  def as_state(self, state):
    c, h = state  # a plain (c, h) tuple works too
    return LSTMState(c=c, h=h)

  def weights(self) -> LSTMWeights:
    size = self.hidden_size
    u_Hx4H, _ = Weights((size, 4 * size), per_gate(RECURRENT_INIT, 4), name='recurrent')()
    peepholes = None
    if self.peephole:
      peepholes = tuple(self.param(f'peephole_{g}', nn.initializers.zeros, (size,))[None, :]
                        for g in 'ifo')
    return LSTMWeights(u_Hx4H, peepholes)

  def step_fn(self):
    return lstm_step(self.weights())

  def recur(self, state, xw_BxTxG, mask_BxT, reverse):
    return lstm_scan(self.weights(), state, xw_BxTxG, mask_BxT, reverse)


CELLS: dict[str, type[Cell]] = {
    'elman': ElmanCell,
    'jordan': JordanCell,
    'gru': GRUCell,
    'lstm': LSTMCell,
}

MERGES: dict[str, Callable] = {
    'concat': lambda fwd, bwd: jnp.concatenate([fwd, bwd], axis=-1),
    'sum': lambda fwd, bwd: fwd + bwd,
}


def make_cell(cell: str, hidden_size: int, peephole: bool = False, **kwargs) -> Cell:
  check_choice('cell', cell, CELLS)
  if peephole and cell != 'lstm':
    raise ModelConfigError(f"config.model.peephole=True only applies to cell='lstm', not "
                           f'cell={cell!r}.')
  if cell == 'lstm':
    kwargs['peephole'] = peephole
  return CELLS[cell](hidden_size=hidden_size, **kwargs)


class Bidirectional(nn.Module):
  """Two cells over the same rows, merged by 'concat' (2H) or 'sum' (H).

  `forward` reads t = 0..T-1; `backward` reads each row's real tokens right to left. States
  (initial and final) are pairs (forward, backward).
  """
  cell: str = 'lstm'
  hidden_size: int = 128
  merge: str = 'concat'
  peephole: bool = False

  @nn.compact
  def __call__(self, x_BxTxD, mask_BxT=None, initial_state=None):
    check_choice('merge', self.merge, MERGES)
    fwd_state, bwd_state = initial_state if initial_state is not None else (None, None)
    fwd_BxTxH, fwd_final = make_cell(self.cell, self.hidden_size, self.peephole,
                                     name='forward')(x_BxTxD, mask_BxT, fwd_state)
    bwd_BxTxH, bwd_final = make_cell(self.cell, self.hidden_size, self.peephole,
                                     name='backward')(x_BxTxD, mask_BxT, bwd_state, reverse=True)
    return MERGES[self.merge](fwd_BxTxH, bwd_BxTxH), (fwd_final, bwd_final)


class RNN(nn.Module):
  """`num_layers` recurrent layers (`layer_0`, ...), dropout on the inputs of layers 1 and up.

  Returns (outputs_BxTxH', final_states): H' = H, or 2H for a bidirectional 'concat' stack;
  final_states is a tuple with one state per layer ((forward, backward) when bidirectional),
  and can be passed back as `initial_state` to carry state from one window to the next.
  """
  cell: str = 'lstm'
  hidden_size: int = 128
  num_layers: int = 1
  bidirectional: bool = False
  merge: str = 'concat'
  peephole: bool = False
  dropout_rate: float = 0.0

  @nn.compact
  def __call__(self, x_BxTxD, mask_BxT=None, initial_state=None, *, train: bool = False):
    check_choice('cell', self.cell, CELLS)
    check_choice('merge', self.merge, MERGES)
    if self.num_layers < 1:
      raise ModelConfigError(f'config.model.num_layers={self.num_layers}: an RNN needs at '
                             'least one layer.')
    if initial_state is None:
      initial_state = (None,) * self.num_layers
    if len(initial_state) != self.num_layers:
      raise ValueError(f'initial_state has {len(initial_state)} layers; the model has '
                       f'num_layers={self.num_layers}: pass one state per layer.')
    x, finals = x_BxTxD, []
    for layer, state in enumerate(initial_state):
      if layer > 0:
        x = nn.Dropout(self.dropout_rate, deterministic=not train)(x)
      if self.bidirectional:
        module = Bidirectional(self.cell, self.hidden_size, self.merge, self.peephole,
                               name=f'layer_{layer}')
      else:
        module = make_cell(self.cell, self.hidden_size, self.peephole, name=f'layer_{layer}')
      x, final = module(x, mask_BxT, state)
      finals.append(final)
    return x, tuple(finals)

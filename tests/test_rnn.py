"""Recurrent cells against NumPy loops, gradients, padding, directions, stacking, the scan body."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from nets import rnn

KEY = jax.random.key(0)
# Distinct sizes, so a shape in a jaxpr says which dimension it is (D appears nowhere else).
B, T, D, H = 3, 6, 5, 4
# Row 0 is full, row 1 ends in padding, row 2 has holes anywhere (padding need not be at the end).
MASK = np.array([[1, 1, 1, 1, 1, 1],
                 [1, 1, 1, 1, 0, 0],
                 [0, 1, 0, 1, 1, 0]])


def normal(seed, shape, scale=1.0):
  """float32 N(0, scale^2) values from NumPy (jax.random would compile a program per shape)."""
  return (scale * np.random.default_rng(seed).standard_normal(shape)).astype(np.float32)


def random_params(module, x, seed=0, scale=0.5):
  """Every parameter (biases and peepholes too) drawn from N(0, scale^2).

  Only the shapes of init are needed, and abstract evaluation compiles nothing.
  """
  shapes = jax.eval_shape(module.init, KEY, x)['params']
  rng = np.random.default_rng(seed)
  return jax.tree.map(
      lambda s: (scale * rng.standard_normal(s.shape)).astype(np.float32), shapes)


def f64(tree):
  return jax.tree.map(lambda a: np.asarray(a, np.float64), tree)


# --- NumPy references: the docstring's equations, one time step at a time, in float64. ---

def sigmoid(z):
  return 1.0 / (1.0 + np.exp(-z))


def np_elman(p, state, x_BxD):
  h = np.tanh(x_BxD @ p['input']['kernel'] + state @ p['recurrent']['kernel'] + p['input']['bias'])
  return h, h


def np_jordan(p, y_prev, x_BxD):
  h = np.tanh(x_BxD @ p['input']['kernel'] + y_prev @ p['recurrent']['kernel']
              + p['input']['bias'])
  y = np.tanh(h @ p['output']['kernel'] + p['output']['bias'])
  return y, y


def np_gru(p, h, x_BxD):
  w_z, w_r, w_h = np.split(p['input']['kernel'], 3, axis=1)
  u_z, u_r, u_h = np.split(p['recurrent']['kernel'], 3, axis=1)
  b_z, b_r, b_h = np.split(p['input']['bias'], 3)
  z = sigmoid(x_BxD @ w_z + h @ u_z + b_z)
  r = sigmoid(x_BxD @ w_r + h @ u_r + b_r)
  candidate = np.tanh(x_BxD @ w_h + (r * h) @ u_h + b_h)
  h = (1 - z) * h + z * candidate
  return h, h


def np_lstm(p, state, x_BxD):
  c, h = state
  w_i, w_f, w_g, w_o = np.split(p['input']['kernel'], 4, axis=1)
  u_i, u_f, u_g, u_o = np.split(p['recurrent']['kernel'], 4, axis=1)
  b_i, b_f, b_g, b_o = np.split(p['input']['bias'], 4)
  p_i, p_f, p_o = (p.get(f'peephole_{g}', np.zeros(h.shape[1])) for g in 'ifo')
  i = sigmoid(x_BxD @ w_i + h @ u_i + p_i * c + b_i)
  f = sigmoid(x_BxD @ w_f + h @ u_f + p_f * c + b_f)
  g = np.tanh(x_BxD @ w_g + h @ u_g + b_g)
  c = f * c + i * g
  o = sigmoid(x_BxD @ w_o + h @ u_o + p_o * c + b_o)
  h = o * np.tanh(c)
  return (c, h), h


def np_run(step, params, state, x_BxTxD, mask_BxT):
  """Python loop over time; row b skips step t when mask[b, t] = 0 (state kept, output 0)."""
  outputs = []
  for t in range(x_BxTxD.shape[1]):
    new_state, y = step(params, state, x_BxTxD[:, t])
    real = mask_BxT[:, t, None].astype(bool)
    state = jax.tree.map(lambda new, old: np.where(real, new, old), new_state, state)
    outputs.append(np.where(real, y, 0.0))
  return np.stack(outputs, axis=1), state


def random_state(name, seed):
  if name == 'lstm':
    return rnn.LSTMState(normal(seed, (B, H)), normal(seed + 1, (B, H)))
  return normal(seed, (B, H))


CASES = [('elman', np_elman, {}), ('jordan', np_jordan, {}), ('gru', np_gru, {}),
         ('lstm', np_lstm, {}), ('lstm', np_lstm, {'peephole': True})]


@pytest.mark.parametrize('name,reference,kwargs', CASES,
                         ids=['elman', 'jordan', 'gru', 'lstm', 'lstm_peephole'])
def test_cell_matches_numpy_equations(name, reference, kwargs):
  cell = rnn.make_cell(name, H, **kwargs)
  x = normal(1, (B, T, D))
  params = random_params(cell, x)
  state = random_state(name, 2)  # a passed-in initial state, not zeros
  both = jax.jit(lambda params, x, state: (cell.apply({'params': params}, x, MASK, state),
                                           cell.apply({'params': params}, x, MASK)))
  (y, final), (y_default, final_default) = both(params, x, state)
  zeros = jax.tree.map(np.zeros_like, f64(state))
  for got, start in [((y, final), state), ((y_default, final_default), zeros)]:
    start = tuple(start) if name == 'lstm' else start  # the reference's (c, h) is a tuple
    y_ref, final_ref = np_run(reference, f64(params), f64(start), f64(x), MASK)
    assert got[0].shape == (B, T, H)
    np.testing.assert_allclose(got[0], y_ref, atol=1e-5)
    for g, want in zip(jax.tree.leaves(got[1]), jax.tree.leaves(final_ref)):
      np.testing.assert_allclose(g, want, atol=1e-5)
  assert not np.allclose(y_default, y)  # the initial state is used


@pytest.mark.parametrize('name,kwargs', [('lstm', {'peephole': True}), ('gru', {})])
def test_gradients_match_finite_differences(name, kwargs):
  cell = rnn.make_cell(name, 3, **kwargs)
  mask = MASK[1:, :4]  # one row with padding at the end, one with holes
  with jax.enable_x64(True):
    x = np.float64(normal(3, (2, 4, 2)))
    params = f64(random_params(cell, x))
    w_out = np.float64(normal(4, (2, 4, 3)))

    def loss(params, x):
      y, final = cell.apply({'params': params}, x, mask)
      # Weight the outputs and the final state, so every path of the gradient is checked.
      return jnp.sum(y * w_out) + sum(jnp.sum(s ** 2) for s in jax.tree.leaves(final))

    value_and_grad = jax.jit(jax.value_and_grad(loss, argnums=(0, 1)))
    value = lambda params, x: value_and_grad(params, x)[0]  # the same compiled program
    grads = value_and_grad(params, x)[1]
    # Directional derivative along a random direction of (params, x) vs centred differences.
    leaves, treedef = jax.tree.flatten((params, x))
    direction = jax.tree.unflatten(treedef, [np.float64(normal(5 + i, a.shape))
                                             for i, a in enumerate(leaves)])
    analytic = sum(np.vdot(g, v) for g, v in zip(jax.tree.leaves(grads),
                                                 jax.tree.leaves(direction)))
    eps = 1e-5
    shifted = lambda sign: jax.tree.map(lambda a, v: a + sign * eps * v, (params, x), direction)
    numeric = (value(*shifted(1)) - value(*shifted(-1))) / (2 * eps)
    assert max(np.abs(g).max() for g in jax.tree.leaves(grads)) > 1e-2  # not degenerate
    np.testing.assert_allclose(analytic, numeric, rtol=1e-7)
    # And the first coordinate of each parameter array on its own, so that no array's gradient
    # can hide in the sum.
    for path, g in jax.tree_util.tree_leaves_with_path(grads[0]):
      def bump(sign):
        return jax.tree_util.tree_map_with_path(
            lambda p, a: a + sign * eps * (np.arange(a.size) == 0).reshape(a.shape)
            if p == path else a, params)
      numeric = (value(bump(1), x) - value(bump(-1), x)) / (2 * eps)
      np.testing.assert_allclose(np.ravel(g)[0], numeric, rtol=1e-6, atol=1e-9, err_msg=str(path))


@pytest.mark.parametrize('name,num_layers', [('lstm', 2), ('jordan', 1)])
def test_padding_never_changes_a_result(name, num_layers):
  """Padded rows (garbage at padding, anywhere in a row) equal the rows with no padding."""
  model = rnn.RNN(cell=name, hidden_size=H, num_layers=num_layers, bidirectional=True)
  mask = np.array([[1, 1, 1, 1, 0, 0, 0],   # padding at the end,
                   [0, 0, 1, 1, 1, 1, 0],   # at both ends,
                   [1, 0, 1, 0, 0, 1, 1]])  # and in holes: 4 real tokens in every row
  x_BxNxD = normal(6, (B, 4, D))
  x_padded = normal(7, (B, 7, D), scale=100.0)
  x_padded[mask.astype(bool)] = x_BxNxD.reshape(-1, D)
  params = random_params(model, x_BxNxD)
  both = jax.jit(lambda params: (model.apply({'params': params}, x_padded, mask),
                                 model.apply({'params': params}, x_BxNxD)))
  (y, finals), (y_ref, finals_ref) = both(params)
  assert y.shape == (B, 7, 2 * H)
  np.testing.assert_allclose(np.asarray(y)[mask.astype(bool)].reshape(B, 4, 2 * H), y_ref,
                             atol=1e-6)
  np.testing.assert_array_equal(np.asarray(y)[mask == 0], 0.0)
  for got, want in zip(jax.tree.leaves(finals), jax.tree.leaves(finals_ref)):
    np.testing.assert_allclose(got, want, atol=1e-6)


def test_backward_direction_reads_real_tokens_right_to_left():
  mask = MASK[:2]  # row 1: 4 real tokens, then padding
  lengths = mask.sum(1)
  bi = rnn.Bidirectional(cell='gru', hidden_size=H, merge='concat')
  summed = bi.clone(merge='sum')
  x = normal(8, (2, T, D))
  params = random_params(bi, x)
  both = jax.jit(lambda x: (bi.apply({'params': params}, x, mask),
                            summed.apply({'params': params}, x, mask)[0]))
  (y, (fwd_final, bwd_final)), y_sum = both(x)
  fwd, bwd = np.asarray(y[..., :H]), np.asarray(y[..., H:])
  np.testing.assert_allclose(y_sum, fwd + bwd, atol=1e-6)  # 'sum' adds the same two directions
  p_fwd, p_bwd, x64 = f64(params['forward']), f64(params['backward']), f64(x)
  y_fwd, final_fwd = np_run(np_gru, p_fwd, np.zeros((2, H)), x64, mask)
  np.testing.assert_allclose(fwd, y_fwd, atol=1e-5)
  np.testing.assert_allclose(fwd_final, final_fwd, atol=1e-5)
  for b, n in enumerate(lengths):
    # The backward weights run forward over the row's real tokens reversed, no padding.
    y_rev, final_rev = np_run(np_gru, p_bwd, np.zeros((1, H)), x64[b:b + 1, :n][:, ::-1],
                              np.ones((1, n)))
    np.testing.assert_allclose(bwd[b, :n], y_rev[0, ::-1], atol=1e-5)
    np.testing.assert_array_equal(bwd[b, n:], 0.0)
    np.testing.assert_allclose(bwd_final[b], final_rev[0], atol=1e-5)  # after reading token 0
  # Position 0 of the backward output depends on the last real token; the forward one does not.
  jacobian = np.asarray(jax.jit(jax.jacrev(  # 2H x 2 x T x D
      lambda x: bi.apply({'params': params}, x, mask)[0][1, 0]))(x))
  last = lengths[1] - 1
  assert np.abs(jacobian[H:, 1, last]).max() > 1e-3
  np.testing.assert_array_equal(jacobian[:H, 1, last], 0.0)
  np.testing.assert_array_equal(jacobian[:, 1, lengths[1]:], 0.0)  # nor on padding


def test_jordan_feeds_back_its_previous_output():
  cell = rnn.JordanCell(H)
  x = normal(9, (B, T, D))
  params = random_params(cell, x)
  run = jax.jit(lambda mask, state: cell.apply({'params': params}, x, mask, state))
  y, final = run(np.ones((B, T)), np.zeros((B, H)))
  np.testing.assert_array_equal(final, y[:, -1])
  # Restarting at step t from y_{t-1} alone (the steps before t masked out) reproduces y_t and
  # everything after it: the previous output is the whole state.
  for t in range(1, T):
    y_t, _ = run((np.arange(T) >= t)[None, :].repeat(B, 0), y[:, t - 1])
    np.testing.assert_allclose(y_t[:, t:], y[:, t:], atol=1e-6)
  # With padding, the final state is the output at the last real step.
  y_masked, final_masked = run(MASK, np.zeros((B, H)))
  last = [np.flatnonzero(row)[-1] for row in MASK]
  np.testing.assert_array_equal(final_masked, np.asarray(y_masked)[np.arange(B), last])


def test_stacked_shapes_and_parameter_paths():
  model = rnn.RNN(cell='lstm', hidden_size=H, num_layers=2, bidirectional=True, peephole=True)
  x = jnp.zeros((B, T, D))
  (y, finals), variables = jax.eval_shape(lambda: model.init_with_output(KEY, x))
  assert y.shape == (B, T, 2 * H)
  assert len(finals) == 2
  for fwd, bwd in finals:
    assert isinstance(fwd, rnn.LSTMState)
    assert [s.shape for s in (*fwd, *bwd)] == [(B, H)] * 4
  shapes = {'/'.join(k.key for k in path): leaf.shape
            for path, leaf in jax.tree_util.tree_leaves_with_path(variables['params'])}
  assert shapes['layer_0/forward/input/kernel'] == (D, 4 * H)
  assert shapes['layer_1/backward/input/kernel'] == (2 * H, 4 * H)  # reads both directions
  assert shapes['layer_1/forward/recurrent/kernel'] == (H, 4 * H)
  assert shapes['layer_0/backward/input/bias'] == (4 * H,)
  assert shapes['layer_0/forward/peephole_f'] == (H,)
  assert len(shapes) == 2 * 2 * 6  # layers x directions x (W, b, U, 3 peepholes)
  # 'sum' keeps H; a unidirectional stack names its layers directly.
  summed = rnn.RNN(cell='gru', hidden_size=H, num_layers=3, bidirectional=True, merge='sum')
  assert jax.eval_shape(lambda: summed.init_with_output(KEY, x)[0][0]).shape == (B, T, H)
  plain = jax.eval_shape(rnn.RNN(cell='elman', hidden_size=H, num_layers=2).init, KEY, x)
  assert plain['params']['layer_1']['input']['kernel'].shape == (H, H)


def test_initialisers():
  cell = rnn.LSTMCell(16, peephole=True)
  params = jax.jit(cell.init)(KEY, jnp.zeros((1, 1, 48)))['params']
  u = np.asarray(params['recurrent']['kernel'])
  for block in np.split(u, 4, axis=1):  # each gate's U is orthogonal on its own
    np.testing.assert_allclose(block.T @ block, np.eye(16), atol=1e-5)
  # Glorot per gate (fan_out H): Var = 2 / (D + H), within the uniform bound sqrt(6 / (D + H)).
  w = np.asarray(params['input']['kernel'])
  assert w.var() == pytest.approx(2 / (48 + 16), rel=0.1)
  assert np.abs(w).max() <= np.sqrt(6 / (48 + 16)) + 1e-6
  b_i, b_f, b_g, b_o = np.split(np.asarray(params['input']['bias']), 4)
  np.testing.assert_array_equal(b_f, 1.0)
  np.testing.assert_array_equal(np.concatenate([b_i, b_g, b_o]), 0.0)
  np.testing.assert_array_equal(params['peephole_o'], 0.0)


def test_carried_state_continues_the_sequence():
  """A language model's next window, started from the last window's state, continues it."""
  model = rnn.RNN(cell='lstm', hidden_size=H, num_layers=2)
  x = normal(10, (B, T, D))
  params = random_params(model, x)

  @jax.jit
  def whole_and_windows(params):
    apply = lambda *args: model.apply({'params': params}, *args)
    y_1, finals_1 = apply(x[:, :T // 2])
    as_tuples = tuple(tuple(state) for state in finals_1)  # plain (c, h) tuples work too
    return apply(x), apply(x[:, T // 2:], None, as_tuples), y_1
  (y, finals), (y_2, finals_2), y_1 = whole_and_windows(params)
  np.testing.assert_allclose(jnp.concatenate([y_1, y_2], axis=1), y, atol=1e-6)
  for got, want in zip(jax.tree.leaves(finals_2), jax.tree.leaves(finals)):
    np.testing.assert_allclose(got, want, atol=1e-6)


def test_dropout_between_layers_only_in_training():
  x = normal(11, (B, T, D))
  model = rnn.RNN(cell='gru', hidden_size=32, num_layers=2, dropout_rate=0.5)
  params = random_params(model, x)
  run = lambda train: jax.jit(lambda key: model.apply(
      {'params': params}, x, train=train, rngs={'dropout': key}, capture_intermediates=True,
      mutable=['intermediates'])[1]['intermediates'])
  # What layer 0 hands on, and what layer 1 reads after dropout.
  handed = lambda inter: np.asarray(inter['layer_0']['__call__'][0][0])
  read = lambda inter: np.asarray(inter['Dropout_0']['__call__'][0])
  evaluated = run(False)(KEY)
  np.testing.assert_array_equal(read(evaluated), handed(evaluated))
  train_step = run(True)
  state_1, state_2 = train_step(jax.random.key(1)), train_step(jax.random.key(2))
  np.testing.assert_array_equal(handed(state_1), handed(evaluated))  # no dropout before layer 0
  ratio = read(state_1) / handed(state_1)
  # Each unit is dropped (0) or kept and scaled by 1 / (1 - rate) = 2; a fresh mask per rng.
  np.testing.assert_allclose(ratio, np.where(ratio == 0, 0.0, 2.0), rtol=1e-5)
  assert 0.4 < np.mean(ratio == 0) < 0.6
  assert not np.array_equal(read(state_1), read(state_2))
  out = lambda inter: np.asarray(inter['__call__'][0][0])
  assert not np.allclose(out(state_1), out(evaluated))
  # One layer has no "between": no dropout at all.
  single = rnn.RNN(cell='gru', hidden_size=4, num_layers=1, dropout_rate=0.5)
  inter = jax.eval_shape(lambda: single.init_with_output(
      {'params': KEY, 'dropout': KEY}, x, train=True, capture_intermediates=True)[1])
  assert 'Dropout_0' not in inter['intermediates']


def sub_jaxprs(eqn):
  for value in eqn.params.values():
    for v in value if isinstance(value, (tuple, list)) else (value,):
      if hasattr(v, 'eqns'):
        yield v
      elif hasattr(getattr(v, 'jaxpr', None), 'eqns'):
        yield v.jaxpr


def dot_shapes(jaxpr, in_scan=False, found=None):
  """[(inside a scan?, operand shapes)] for every dot_general, however deeply nested."""
  found = [] if found is None else found
  for eqn in jaxpr.eqns:
    if eqn.primitive.name == 'dot_general':
      found.append((in_scan, tuple(tuple(v.aval.shape) for v in eqn.invars)))
    for sub in sub_jaxprs(eqn):
      dot_shapes(sub, in_scan or eqn.primitive.name == 'scan', found)
  return found


@pytest.mark.parametrize('name,gates,dots_in_loop', [('elman', 1, 1), ('jordan', 1, 2),
                                                     ('gru', 3, 2), ('lstm', 4, 1)])
def test_input_projection_runs_outside_the_scan(name, gates, dots_in_loop):
  cell = rnn.make_cell(name, H)
  x = jnp.zeros((B, T, D))
  params = jax.eval_shape(cell.init, KEY, x)['params']
  jaxpr = jax.make_jaxpr(cell.apply)({'params': params}, x, MASK).jaxpr
  dots = dot_shapes(jaxpr)
  outside = [shapes for in_scan, shapes in dots if not in_scan]
  inside = [shapes for in_scan, shapes in dots if in_scan]
  # One matmul for all time steps and gates: the B * T rows at once, (B T, D) @ (D, G*H) ...
  assert outside == [((B * T, D), (D, gates * H))]
  # ... and the loop only multiplies B x H states by H-row matrices (never by W).
  assert len(inside) == dots_in_loop
  assert all(D not in np.ravel(shapes) for shapes in inside), inside


@pytest.mark.parametrize('kwargs,pattern', [
    ({'cell': 'lstn'}, r"cell='lstn'"),
    ({'cell': 'gru', 'peephole': True}, r"peephole=True only applies to cell='lstm'"),
    ({'cell': 'lstm', 'bidirectional': True, 'merge': 'mean'}, r"merge='mean'"),
])
def test_bad_choices_name_the_field(kwargs, pattern):
  with pytest.raises(ValueError, match=pattern):
    rnn.RNN(hidden_size=2, **kwargs).init(KEY, jnp.zeros((1, 2, 3)))


def test_initial_state_needs_one_state_per_layer():
  with pytest.raises(ValueError, match='num_layers=2'):
    rnn.RNN(hidden_size=2, num_layers=2).init(KEY, jnp.zeros((1, 2, 3)), None, (None,))
  with pytest.raises(ValueError, match='num_layers=0'):
    rnn.RNN(hidden_size=2, num_layers=0).init(KEY, jnp.zeros((1, 2, 3)))

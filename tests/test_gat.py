"""GAT and GCN: dense NumPy references, attention support, parameter counts, equivariance."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from nets import gat

KEY = jax.random.key(0)
N, F = 7, 5


def random_graph(seed, num_nodes=N, num_features=F, p=0.35):
  """Features and a random undirected graph (both directions, no self loops), shuffled."""
  rng = np.random.default_rng(seed)
  upper = np.triu(rng.random((num_nodes, num_nodes)) < p, k=1)
  receivers, senders = np.nonzero(upper | upper.T)  # edge j -> i where adjacency[i, j]
  order = rng.permutation(len(senders))
  x = rng.normal(size=(num_nodes, num_features)).astype(np.float32)
  return x, senders[order].astype(np.int32), receivers[order].astype(np.int32)


def dense_adjacency(senders, receivers, num_nodes=N, self_loops=True):
  """A[i, j] = 1 for an edge j -> i (plus the identity)."""
  a = np.zeros((num_nodes, num_nodes))
  a[receivers, senders] = 1.0
  return a + np.eye(num_nodes) if self_loops else a


def leaky_relu(x, slope=0.2):
  return np.where(x > 0, x, slope * x)


def gat_layer_reference(x, adjacency, kernel, attention, bias, heads, concat):
  """Every pair's score e_ij, then a softmax over j masked to the neighbourhood."""
  x, kernel, attention = (np.asarray(v, np.float64) for v in (x, kernel, attention))
  feats = kernel.shape[1] // heads
  z = (x @ kernel).reshape(len(x), heads, feats)
  outputs, alphas = [], []
  for k in range(heads):
    a_1, a_2 = attention[k, :feats], attention[k, feats:]
    e = leaky_relu((z[:, k] @ a_1)[:, None] + (z[:, k] @ a_2)[None, :])  # [i, j]
    e = np.where(adjacency > 0, e, -np.inf)
    alpha = np.exp(e - e.max(axis=1, keepdims=True))
    alpha /= alpha.sum(axis=1, keepdims=True)
    alphas.append(alpha)
    outputs.append(alpha @ z[:, k])
  h = np.concatenate(outputs, axis=1) if concat else np.mean(outputs, axis=0)
  return h + np.asarray(bias), np.stack(alphas, axis=-1)


def apply_layer(layer, x, senders, receivers, **kwargs):
  variables = jax.jit(layer.init)(KEY, x, senders, receivers)
  # A nonzero bias, so that adding it is tested too.
  params = {**variables['params'], 'bias': 0.1 * jnp.arange(
      variables['params']['bias'].shape[0], dtype=jnp.float32)}
  return params, jax.jit(lambda p: layer.apply({'params': p}, x, senders, receivers,
                                               **kwargs))(params)


@pytest.mark.parametrize('concat', [True, False])
def test_gat_layer_matches_dense_masked_softmax(concat):
  x, senders, receivers = random_graph(0)
  loops_s, loops_r = (np.asarray(v) for v in gat.with_self_loops(senders, receivers, N))
  layer = gat.GATLayer(features=3, num_heads=2, concat=concat)
  params, (h, alpha_ExK) = apply_layer(layer, x, loops_s, loops_r, return_attention=True)
  expected_h, expected_alpha = gat_layer_reference(
      x, dense_adjacency(senders, receivers), params['kernel'], params['attention'],
      params['bias'], heads=2, concat=concat)
  assert h.shape == ((N, 6) if concat else (N, 3))
  np.testing.assert_allclose(h, expected_h, rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(alpha_ExK, expected_alpha[loops_r, loops_s], rtol=1e-5, atol=1e-7)


def test_attention_is_zero_off_edges_and_sums_to_one():
  x, senders, receivers = random_graph(1)
  model = gat.GAT(num_classes=3, hidden_features=4, num_heads=2)
  variables = jax.jit(model.init)(KEY, x, senders, receivers)
  _, alphas = jax.jit(lambda v: model.apply(v, x, senders, receivers, return_attention=True))(
      variables)
  loops_s, loops_r = (np.asarray(v) for v in gat.with_self_loops(senders, receivers, N))
  adjacency = dense_adjacency(senders, receivers)
  for alpha_ExK in alphas:
    dense_NxNxK = np.zeros((N, N, alpha_ExK.shape[1]))
    np.add.at(dense_NxNxK, (loops_r, loops_s), np.asarray(alpha_ExK))
    np.testing.assert_allclose(dense_NxNxK.sum(axis=1), 1.0, rtol=1e-6)
    assert np.all(dense_NxNxK[adjacency > 0] > 0)
  # Zero off the edges in effect, not just in bookkeeping: one layer's output at i does not
  # move with the features of a node outside N(i), and does move with those inside.
  layer = gat.GATLayer(features=3, num_heads=2)
  params = jax.jit(layer.init)(KEY, x, loops_s, loops_r)
  jacobian = jax.jit(jax.jacobian(lambda x: layer.apply(params, x, loops_s, loops_r)))(x)
  influence_NxN = np.abs(np.asarray(jacobian)).sum(axis=(1, 3))  # [i, :, j, :] -> [i, j]
  np.testing.assert_array_equal(influence_NxN[adjacency == 0], 0.0)
  assert np.all(influence_NxN[adjacency > 0] > 0)


def test_segment_softmax_is_stable_for_large_logits():
  logits = jnp.array([[1000.0], [1001.0], [-1000.0], [5.0]])
  segments = jnp.array([0, 0, 1, 1])
  out = np.asarray(jax.jit(gat.segment_softmax, static_argnums=2)(logits, segments, 2))[:, 0]
  e = np.exp([-1.0, 0.0])
  np.testing.assert_allclose(out, [e[0] / e.sum(), e[1] / e.sum(), 0.0, 1.0], atol=1e-7)


def test_gcn_layer_matches_normalised_adjacency():
  x, senders, receivers = random_graph(2)
  loops_s, loops_r = (np.asarray(v) for v in gat.with_self_loops(senders, receivers, N))
  layer = gat.GCNLayer(features=4)
  params = jax.jit(layer.init)(KEY, x, loops_s, loops_r)
  h = jax.jit(layer.apply)(params, x, loops_s, loops_r)
  a_tilde = dense_adjacency(senders, receivers)
  d_inv_sqrt = np.diag(1 / np.sqrt(a_tilde.sum(axis=1)))
  kernel = np.asarray(params['params']['kernel'], np.float64)
  expected = d_inv_sqrt @ a_tilde @ d_inv_sqrt @ x.astype(np.float64) @ kernel
  np.testing.assert_allclose(h, expected, rtol=1e-5, atol=1e-6)


def count_params(model, num_features):
  x, senders, receivers = random_graph(3, num_nodes=4, num_features=num_features, p=1.0)
  shapes = jax.eval_shape(model.init, KEY, x, senders, receivers)['params']
  return sum(np.size(p) for p in jax.tree.leaves(shapes))


def test_cora_parameter_counts():
  # GAT layer 1: W 1433 x (8 heads * 8) = 91,712; a: 8 heads * 2*8 = 128; bias 64.
  # GAT layer 2: W 64 x 7 = 448; a: 1 head * 2*7 = 14; bias 7.
  assert count_params(gat.GAT(num_classes=7), 1433) == 91_712 + 128 + 64 + 448 + 14 + 7
  assert count_params(gat.GAT(num_classes=7, use_bias=False), 1433) == 91_712 + 128 + 448 + 14
  # GCN: W_1 1433 x 16 = 22,928; W_2 16 x 7 = 112.
  assert count_params(gat.GCN(num_classes=7), 1433) == 22_928 + 112


@pytest.mark.parametrize('make', [lambda: gat.GAT(num_classes=3, hidden_features=4, num_heads=2),
                                  lambda: gat.GCN(num_classes=3, hidden=4)], ids=['gat', 'gcn'])
def test_node_permutation_equivariance_and_batch_axis(make):
  model = make()
  x, senders, receivers = random_graph(4)
  variables = jax.jit(model.init)(KEY, x, senders, receivers)
  apply = jax.jit(model.apply)
  logits = np.asarray(apply(variables, x, senders, receivers))
  perm = np.random.default_rng(5).permutation(N)  # new node m is old node perm[m]
  new_label = np.argsort(perm)
  permuted = apply(variables, x[perm], new_label[senders], new_label[receivers])
  np.testing.assert_allclose(permuted, logits[perm], rtol=1e-5, atol=1e-6)
  # The Cora batch's leading axis of 1 goes in and comes back out.
  batched = apply(variables, x[None], senders[None], receivers[None])
  assert batched.shape == (1, N, 3)
  np.testing.assert_allclose(batched[0], logits, rtol=1e-6, atol=1e-7)


def test_gat_dropout_only_in_training():
  x, senders, receivers = random_graph(6)
  model = gat.GAT(num_classes=3, hidden_features=4, num_heads=2)
  variables = jax.jit(model.init)(KEY, x, senders, receivers)
  run = jax.jit(lambda key, train: model.apply(variables, x, senders, receivers, train=train,
                                               rngs={'dropout': key}), static_argnums=1)
  evaluated = run(KEY, False)
  np.testing.assert_array_equal(run(jax.random.key(1), False), evaluated)
  one, two = run(jax.random.key(1), True), run(jax.random.key(2), True)
  assert not np.allclose(one, evaluated) and not np.allclose(one, two)


def test_feature_dropout_is_unbiased_and_leaves_the_attention_alone():
  """Dropping z_j (each head its own mask) scales the kept entries by 1/(1-p): the layer is
  linear in the dropped z given alpha, and alpha is scored from the undropped z, so the
  mean over many masks is the evaluation output and alpha never changes."""
  x, senders, receivers = random_graph(7)
  loops_s, loops_r = (np.asarray(v) for v in gat.with_self_loops(senders, receivers, N))
  layer = gat.GATLayer(features=3, num_heads=2, feature_dropout_rate=0.6)
  variables = jax.jit(layer.init)(KEY, x, loops_s, loops_r)
  run = jax.jit(jax.vmap(lambda key: layer.apply(
      variables, x, loops_s, loops_r, train=True, return_attention=True,
      rngs={'dropout': key})))
  h_train, alpha_train = run(jax.random.split(jax.random.key(3), 4000))
  h_eval, alpha_eval = layer.apply(variables, x, loops_s, loops_r, return_attention=True)
  np.testing.assert_allclose(alpha_train, np.broadcast_to(alpha_eval, alpha_train.shape),
                             rtol=1e-6, atol=1e-7)
  assert not np.allclose(h_train[0], h_eval)
  spread = np.std(h_train, axis=0) / np.sqrt(len(h_train))
  assert np.all(np.abs(np.mean(h_train, axis=0) - h_eval) < 5 * spread + 1e-6)


def test_bad_graph_shape_is_explained():
  x, senders, receivers = random_graph(7)
  with pytest.raises(ValueError, match='one graph'):
    gat.GAT(num_classes=3).init(KEY, np.stack([x, x]), senders[None], receivers[None])

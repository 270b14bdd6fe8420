"""Graph attention networks (Velickovic et al. 2018) and the GCN baseline (Kipf & Welling 2017).

Both run on ONE graph: node features x_NxF and a directed edge list `senders`, `receivers`
(int [E]; an edge j -> i carries node j's message to node i, and an undirected graph lists
both directions, as the Cora data does). The models add a self loop i -> i to every node
(`add_self_loops=True`), so N(i) = {j : j -> i} + {i}; the given edges must then hold none.

GAT layer, per head k (K heads of F' features):

    z_i = W^k h_i                                              W^k: F' x F
    e_ij = LeakyReLU(a^k . [z_i || z_j]),  slope 0.2           only for the edges j -> i
    alpha_ij = exp(e_ij) / sum_{l in N(i)} exp(e_il)           softmax over i's neighbourhood
    h_i'^k = sum_{j in N(i)} alpha_ij z_j

A hidden layer concatenates the heads and applies ELU, h_i' = ELU(||_k h_i'^k); the output
layer averages them, h_i' = 1/K sum_k h_i'^k (its softmax lives in the loss). The softmax runs
over edges grouped by receiver: subtracting each group's max (segment_max) before exp keeps
it finite, and segment_sum adds each group's terms. Dropout (p = 0.6 for Cora) acts on each
layer's input and on the coefficients alpha_ij, so each node sees a random subset of its
neighbours in training, and (`feature_dropout_rate`, as in the authors' code) on the z_j
that the messages carry, a mask per head; the scores e_ij use the undropped z.

GCN layer, with A_ij = 1 for an edge j -> i and D the degrees of A + I:

    H' = D^-1/2 (A + I) D^-1/2 H W,   i.e.  h_i' = sum_{j in N(i)} (H W)_j / sqrt(d_i d_j),

two layers (ReLU between, dropout 0.5 on each layer's input). Kipf & Welling also put weight
decay 5e-4 on the first layer's kernel only; that belongs to the optimizer.

The Cora batch (train/data/graph.py) stores `inputs` [1, N, F], `senders`, `receivers`
[1, E]; the models accept that leading axis of 1 and return logits [1, N, C] to match the
batch's `label` [1, N]. Without it they take x_NxF, [E], [E] and return logits_NxC.
"""

import flax.linen as nn
import jax
import jax.numpy as jnp


def segment_softmax(logits_ExH, segment_ids_E, num_segments: int):
  """softmax of the logits within each segment (here: the edges into one node), per column."""
  # The max is only a shift (softmax does not depend on it), so no gradient flows through it.
  max_NxH = jax.lax.stop_gradient(
      jax.ops.segment_max(logits_ExH, segment_ids_E, num_segments))
  exp_ExH = jnp.exp(logits_ExH - max_NxH[segment_ids_E])
  total_NxH = jax.ops.segment_sum(exp_ExH, segment_ids_E, num_segments)
  return exp_ExH / total_NxH[segment_ids_E]


def with_self_loops(senders_E, receivers_E, num_nodes: int):
  """Appends the edges i -> i, i = 0..N-1, after the E given ones."""
  nodes_N = jnp.arange(num_nodes, dtype=senders_E.dtype)
  return jnp.concatenate([senders_E, nodes_N]), jnp.concatenate([receivers_E, nodes_N])


def _unbatch(x, senders, receivers):
  """Drops the leading axis of 1 of a full-graph batch; says whether there was one."""
  if x.ndim == 2:
    return x, senders, receivers, False
  if x.ndim != 3 or x.shape[0] != 1 or senders.shape[0] != 1 or receivers.shape[0] != 1:
    raise ValueError(f'A graph model takes one graph: x [N, F] with edges [E], or x [1, N, F] '
                     f'with edges [1, E]; got x {x.shape}, senders {senders.shape}, '
                     f'receivers {receivers.shape}.')
  return x[0], senders[0], receivers[0], True


class GATLayer(nn.Module):
  """One multi-head graph attention layer: `num_heads` heads of `features`, concat or mean.

  Returns the pre-activation h' (N x K*F' concatenated, or N x F' averaged), and with
  `return_attention` also alpha_ExK (softmax coefficients before dropout, one row per edge).
  The edge list is used as given: self loops are the caller's (the models add them).
  """
  features: int
  num_heads: int = 1
  concat: bool = True
  attention_dropout_rate: float = 0.0
  negative_slope: float = 0.2
  use_bias: bool = True
  feature_dropout_rate: float = 0.0  # on the messages' z_j, a mask per head

  @nn.compact
  def __call__(self, x_NxF, senders_E, receivers_E, *, train: bool = False,
               return_attention: bool = False):
    n, heads, feats = x_NxF.shape[0], self.num_heads, self.features
    kernel = self.param('kernel', nn.initializers.glorot_uniform(),
                        (x_NxF.shape[-1], heads * feats))
    # a^k in R^{2F'} for each head: its first half scores the receiver z_i, the second z_j.
    attention = self.param('attention', nn.initializers.glorot_uniform(in_axis=-1, out_axis=-2),
                           (heads, 2 * feats))
    z_NxKxF = (x_NxF @ kernel).reshape(n, heads, feats)
    # a . [z_i || z_j] = a_1 . z_i + a_2 . z_j: score every node once, then gather per edge.
    score_i_NxK = jnp.einsum('nkf,kf->nk', z_NxKxF, attention[:, :feats])
    score_j_NxK = jnp.einsum('nkf,kf->nk', z_NxKxF, attention[:, feats:])
    e_ExK = nn.leaky_relu(score_i_NxK[receivers_E] + score_j_NxK[senders_E],
                          self.negative_slope)
    alpha_ExK = segment_softmax(e_ExK, receivers_E, n)
    dropped_ExK = nn.Dropout(self.attention_dropout_rate, deterministic=not train)(alpha_ExK)
    values_NxKxF = nn.Dropout(self.feature_dropout_rate, deterministic=not train)(z_NxKxF)
    messages_ExKxF = dropped_ExK[:, :, None] * values_NxKxF[senders_E]
    h_NxKxF = jax.ops.segment_sum(messages_ExKxF, receivers_E, n)
    h = h_NxKxF.reshape(n, heads * feats) if self.concat else h_NxKxF.mean(axis=1)
    if self.use_bias:
      bias_D = self.param('bias', nn.initializers.zeros, (h.shape[-1],))
      h = h + bias_D[None, :]
    return (h, alpha_ExK) if return_attention else h


class GAT(nn.Module):
  """Cora's GAT by default: 8 heads x 8 features, ELU, then 1 averaged head of num_classes.

  The bias terms follow the authors' released code (the paper's equations have none);
  `use_bias=False` drops them.
  """
  num_classes: int = 7
  hidden_features: int = 8
  num_heads: int = 8
  num_output_heads: int = 1
  dropout_rate: float = 0.6  # on each layer's input
  attention_dropout_rate: float = 0.6
  feature_dropout_rate: float = 0.0  # the authors' code: 0.6, on each head's z_j
  negative_slope: float = 0.2
  use_bias: bool = True
  add_self_loops: bool = True

  @nn.compact
  def __call__(self, x_NxF, senders_E, receivers_E, *, train: bool = False,
               return_attention: bool = False):
    """logits [N, C] (or [1, N, C]); with `return_attention`, also (alpha_1, alpha_2).

    Each alpha is [E (+ N self loops, appended last), heads].
    """
    x, senders, receivers, batched = _unbatch(x_NxF, senders_E, receivers_E)
    if self.add_self_loops:
      senders, receivers = with_self_loops(senders, receivers, x.shape[0])
    layers = [(self.hidden_features, self.num_heads, True),
              (self.num_classes, self.num_output_heads, False)]
    h, attention = x, []
    for i, (features, heads, concat) in enumerate(layers):
      h = nn.Dropout(self.dropout_rate, deterministic=not train)(h)
      h, alpha = GATLayer(features, heads, concat,
                          attention_dropout_rate=self.attention_dropout_rate,
                          negative_slope=self.negative_slope, use_bias=self.use_bias,
                          feature_dropout_rate=self.feature_dropout_rate)(
                              h, senders, receivers, train=train, return_attention=True)
      attention.append(alpha)
      if i == 0:
        h = nn.elu(h)
    logits = h[None] if batched else h
    return (logits, tuple(attention)) if return_attention else logits


class GCNLayer(nn.Module):
  """h_i' = sum_{j -> i} (H W)_j / sqrt(d_i d_j), d = in-degrees; edges used as given."""
  features: int
  use_bias: bool = False

  @nn.compact
  def __call__(self, x_NxF, senders_E, receivers_E):
    n = x_NxF.shape[0]
    kernel = self.param('kernel', nn.initializers.glorot_uniform(),
                        (x_NxF.shape[-1], self.features))
    # Transform first: N x F times F x F' once, then move F'-wide messages along the edges.
    hw_NxD = x_NxF @ kernel
    degree_N = jax.ops.segment_sum(jnp.ones_like(receivers_E, hw_NxD.dtype), receivers_E, n)
    inv_sqrt_N = jnp.where(degree_N > 0, jax.lax.rsqrt(jnp.maximum(degree_N, 1.0)), 0.0)
    norm_E = inv_sqrt_N[senders_E] * inv_sqrt_N[receivers_E]
    h_NxD = jax.ops.segment_sum(norm_E[:, None] * hw_NxD[senders_E], receivers_E, n)
    if self.use_bias:
      h_NxD = h_NxD + self.param('bias', nn.initializers.zeros, (self.features,))[None, :]
    return h_NxD


class GCN(nn.Module):
  """Kipf & Welling's Cora model: GCN(16) -> ReLU -> GCN(num_classes), dropout 0.5.

  No biases by default, as in the authors' code.
  """
  num_classes: int = 7
  hidden: int = 16
  dropout_rate: float = 0.5
  use_bias: bool = False
  add_self_loops: bool = True

  @nn.compact
  def __call__(self, x_NxF, senders_E, receivers_E, *, train: bool = False):
    x, senders, receivers, batched = _unbatch(x_NxF, senders_E, receivers_E)
    if self.add_self_loops:
      senders, receivers = with_self_loops(senders, receivers, x.shape[0])
    h = nn.Dropout(self.dropout_rate, deterministic=not train)(x)
    h = nn.relu(GCNLayer(self.hidden, self.use_bias)(h, senders, receivers))
    h = nn.Dropout(self.dropout_rate, deterministic=not train)(h)
    logits = GCNLayer(self.num_classes, self.use_bias)(h, senders, receivers)
    return logits[None] if batched else logits

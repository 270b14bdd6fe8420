"""What lets the Transformer family (Transformer, BERT, GPT) scale: logical axis names on
the parameters, a computation dtype, rematerialisation and scanned layer stacks.

Logical axes. Every parameter of these models is created with a name for each of its axes:

    'vocab'   the rows of a token embedding (and of the tied output layer)
    'embed'   the model width D
    'heads'   attention heads N            'kv'      the head dimension H
    'mlp'     the feed-forward width F     'layers'  the leading axis of a scanned stack
    None      anything never split (a position table's rows, the 3 of a fused qkv)

so a kernel says what it is, e.g. query ('embed', 'heads', 'kv'), FFN in ('embed', 'mlp').
`config.sharding` maps names to mesh axes (train/parallel.py): data parallelism (no name
split), FSDP ('embed' over the batch axes) or tensor parallelism ('heads', 'mlp', 'vocab'
over 'model'). One model definition serves every layout. `model.init` returns the names in
`nn.LogicallyPartitioned` boxes; the engine reads them once and unboxes, so a train state
holds plain arrays.

Dtype. `dtype` is the dtype of the computation ('bfloat16' halves activation memory and
uses the bfloat16 units of TPUs and GPUs); parameters stay float32 (`param_dtype`), so the
gradients and optimizer state are float32 and small updates are not rounded away. Layer
norm statistics, the attention softmax and the output logits are computed in float32.

Remat. `remat` recomputes each block's activations in the backward pass instead of
storing them: 'full' stores only block inputs (memory O(L) blocks, one extra forward),
'dots' keeps the matmul outputs without a batch dimension (the weights' products) and
recomputes the cheap elementwise work; 'none' stores everything.

Scan. `scan_layers=True` makes the L blocks one `nn.scan` over a single block whose every
parameter has a leading 'layers' axis (parameters 'blocks/...', not 'block_0/...', ...):
XLA compiles one block, so compile time no longer grows with depth.
"""

from typing import Callable

import flax.linen as nn
import jax
import numpy as np

from nets.mlp import check_choice

DTYPES = dict.fromkeys(('float32', 'bfloat16', 'float16'))  # config.model.dtype
REMAT_POLICIES: dict[str, Callable | None] = {
    'none': None,
    'full': jax.checkpoint_policies.nothing_saveable,
    'dots': jax.checkpoint_policies.dots_with_no_batch_dims_saveable,
}


def named(init: Callable, *names: str | None) -> Callable:
  """An initializer whose parameter carries the logical axis `names`."""
  return nn.with_logical_partitioning(init, names)


def layer_norm(epsilon: float, dtype, name: str | None = None) -> nn.LayerNorm:
  """A layer norm over 'embed' (statistics in float32 whatever the dtype)."""
  return nn.LayerNorm(epsilon=epsilon, dtype=dtype, name=name,
                      scale_init=named(nn.initializers.ones, 'embed'),
                      bias_init=named(nn.initializers.zeros, 'embed'))


def embed(num_rows: int, features: int, init: Callable, dtype: str,
          row_axis: str | None = 'vocab', name: str | None = None) -> nn.Embed:
  """An embedding table (row_axis, 'embed'); `attend` is the tied output layer."""
  check_choice('dtype', dtype, DTYPES)  # every model of the family embeds its tokens
  return nn.Embed(num_rows, features, dtype=dtype, name=name,
                  embedding_init=named(init, row_axis, 'embed'))


class BlockStack:
  """`num_layers` blocks applied in turn, x <- block_l(x, *args), l = 0..num_layers-1.

  Create it in `setup` or a compact method of the module that owns the blocks: the blocks
  are that module's children, `block_0` ... (or one scanned `blocks`, see the module
  docstring). `make_block(name=...)` creates one block. A call passes the block's
  arguments positionally; the Python bools among them (train, decode) are static.
  """

  def __init__(self, make_block: Callable[..., nn.Module], num_layers: int, *,
               scan: bool = False, remat: str = 'none'):
    check_choice('remat', remat, REMAT_POLICIES)
    self.num_layers, self.scan, self.policy = num_layers, scan, REMAT_POLICIES[remat]
    self.blocks = ([make_block(name='blocks')] if scan else
                   [make_block(name=f'block_{i}') for i in range(num_layers)])

  def __call__(self, x, *args):
    apply = lambda block, x, *args: block(x, *args)
    if self.policy is not None:
      # Argument 0 is the block, 1 is x; prevent_cse is unneeded (and slow) inside scan.
      static = tuple(i for i, a in enumerate(args, start=2) if isinstance(a, bool))
      apply = nn.remat(apply, policy=self.policy, static_argnums=static,
                       prevent_cse=not self.scan)
    if not self.scan:
      for block in self.blocks:
        x = apply(block, x, *args)
      return x
    body = lambda block, x, *args: (apply(block, x, *args), None)
    scanned = nn.scan(body, variable_axes={True: 0}, split_rngs={True: True},
                      in_axes=nn.broadcast, length=self.num_layers,
                      metadata_params={nn.PARTITION_NAME: 'layers'})
    return scanned(self.blocks[0], x, *args)[0]


def relayout_blocks(tree, scanned: bool):
  """A parameter tree in the other stack layout: every dict's 'block_0' ... 'block_{L-1}'
  stacked into one 'blocks' (scanned=True), or a 'blocks' split back into them; so a
  checkpoint of either layout initialises a model of the other (train/transfer.py)."""
  if not isinstance(tree, dict):
    return tree
  tree = {key: relayout_blocks(value, scanned) for key, value in tree.items()}
  if scanned and 'block_0' in tree:
    layers = [tree.pop(f'block_{i}') for i in range(len(tree)) if f'block_{i}' in tree]
    tree['blocks'] = jax.tree.map(lambda *xs: np.stack(xs), *layers)
  elif not scanned and 'blocks' in tree:
    stacked = tree.pop('blocks')
    for i in range(len(jax.tree.leaves(stacked)[0])):
      tree[f'block_{i}'] = jax.tree.map(lambda x, i=i: x[i], stacked)
  return tree

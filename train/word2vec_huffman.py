"""The Huffman tree of hierarchical softmax (Morin & Bengio 2005; Mikolov et al. 2013).

The V words are the leaves of a binary tree with V - 1 inner nodes, each inner node n
owning an output vector u_n (row n of the [V - 1, D] output table). A word w is reached
from the root by the path n_1 .. n_L(w) with branch bits c_1 .. c_L(w), and

    p(w | h) = prod_l  sigma((1 - 2 c_l) h . u_{n_l})

i.e. a binary logistic unit per node with target 1 - c_l, exactly as word2vec.c trains it
(its `1 - code - f`). Huffman coding (merge the two rarest subtrees until one is left)
gives the frequent words short paths, so the expected path length is the entropy of the
unigram distribution in bits and a frequent word costs few dot products.

Inner nodes are numbered in the order they are created, so the root is node V - 2, as in
word2vec.c. `paths` returns the padded arrays the pair generator reads per centre word.
"""

import heapq
from typing import NamedTuple

import numpy as np


class Paths(NamedTuple):
  """Every word's path, padded to the longest: node ids, branch bits and a mask [V, L]."""
  nodes: np.ndarray   # int32, inner-node ids (rows of the output table), root first
  codes: np.ndarray   # float32, 0 or 1: the branch taken below each node
  mask: np.ndarray    # float32, 1 on the first `lengths[w]` entries of each row
  lengths: np.ndarray  # int32 [V]


def paths(counts: np.ndarray) -> Paths:
  """The Huffman code of each word, given its count (any order; ties by word id)."""
  counts = np.asarray(counts, np.int64)
  num_words = len(counts)
  if num_words < 2:
    raise ValueError(f'A Huffman tree needs at least 2 words, got {num_words}.')
  # Heap items (count, order, node): leaves are nodes 0..V-1, inner node k is V + k.
  # `order` makes ties deterministic: leaves by id, then inner nodes by creation.
  heap = [(int(c), i, i) for i, c in enumerate(counts)]
  heapq.heapify(heap)
  parent = np.zeros(2 * num_words - 1, np.int64)
  bit = np.zeros(2 * num_words - 1, np.int8)
  for inner in range(num_words, 2 * num_words - 1):
    count_a, _, a = heapq.heappop(heap)
    count_b, _, b = heapq.heappop(heap)
    parent[a], parent[b] = inner, inner
    bit[a], bit[b] = 0, 1  # the rarer subtree takes bit 0, as in word2vec.c
    heapq.heappush(heap, (count_a + count_b, inner, inner))
  root = 2 * num_words - 2
  # Depth of every node, root first: inner nodes are created after their children, so
  # walking them in reverse creation order visits each parent before its children.
  depth = np.zeros(2 * num_words - 1, np.int64)
  for node in range(root - 1, -1, -1):
    depth[node] = depth[parent[node]] + 1
  lengths = depth[:num_words]
  longest = int(lengths.max())
  nodes = np.zeros((num_words, longest), np.int32)
  codes = np.zeros((num_words, longest), np.float32)
  # Walk all leaves up at once: at step s every word whose path is longer than s moves
  # one node up; its ancestor at depth d fills column d - 1 (the root is column 0).
  node = np.arange(num_words)
  active = np.ones(num_words, bool)
  while active.any():
    words = np.flatnonzero(active)
    up = parent[node[words]]
    column = depth[node[words]] - 1
    nodes[words, column] = up - num_words
    codes[words, column] = bit[node[words]]
    node[words] = up
    active[words] = up != root
  mask = (np.arange(longest)[None, :] < lengths[:, None]).astype(np.float32)
  return Paths(nodes, codes, mask, lengths.astype(np.int32))

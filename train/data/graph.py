"""Planetoid citation graphs (Cora) as one full-batch example, through a TFDS builder.

The Planetoid files (Yang et al. 2016, as used by GCN and GAT) are pickles: `x`, `y`
(the labelled training nodes), `allx`, `ally` (every node but the test ones), `tx`,
`ty` (the test nodes, in the order of `test.index`, which is not sorted) and `graph`
(node -> neighbours). The standard split is train = the first len(y) nodes, validation
= the next 500, test = the nodes in `test.index`; test indices missing from their range
(isolated nodes, in Citeseer) get zero features, label 0 and no mask.

A batch is the whole graph (batch_size must be 1): `inputs` (node features) float32[1, N,
F], `label` int32[1, N], `senders`, `receivers` int32[1, E] (each undirected edge in both
directions, no self-loops), and `mask` float32[1, N], 1 on the split's nodes.
"""

from __future__ import annotations

import os
import pickle
import warnings
from typing import Iterator, Mapping

import numpy as np
import tensorflow_datasets as tfds

from train.data import registry
from train.data.pipeline import Batch, Shard, Splits
from train.data.text_builders import LocalBuilder, open_local
from train.errors import UserError

_PARTS = ('x', 'y', 'tx', 'ty', 'allx', 'ally', 'graph', 'test.index')
_NUM_VALIDATION = 500


def _read_part(path: str):
  if path.endswith('test.index'):
    with open(path) as f:
      return np.array([int(line) for line in f if line.strip()])
  with open(path, 'rb') as f, warnings.catch_warnings():
    warnings.simplefilter('ignore', DeprecationWarning)  # old scipy module paths
    return pickle.load(f, encoding='latin1')


def load_planetoid(folder: str, name: str) -> dict[str, np.ndarray]:
  """The graph in `folder`/ind.`name`.*: features, labels, edges and the three masks."""
  parts = {p: _read_part(os.path.join(folder, f'ind.{name}.{p}')) for p in _PARTS}
  test_index = parts['test.index']
  num_nodes = max(parts['allx'].shape[0], test_index.max() + 1)
  features = np.zeros((num_nodes, parts['allx'].shape[1]), np.float32)
  one_hot = np.zeros((num_nodes, parts['ally'].shape[1]), np.float32)
  features[:parts['allx'].shape[0]] = parts['allx'].toarray()
  one_hot[:len(parts['ally'])] = parts['ally']
  features[test_index] = parts['tx'].toarray()  # row k of tx is node test_index[k]
  one_hot[test_index] = parts['ty']
  pairs = {(int(a), int(b)) for a, nbrs in parts['graph'].items() for b in nbrs if a != b}
  pairs |= {(b, a) for a, b in pairs}
  masks = {m: np.zeros(num_nodes, bool) for m in ('train_mask', 'val_mask', 'test_mask')}
  num_train = len(parts['y'])
  masks['train_mask'][:num_train] = True
  masks['val_mask'][num_train:num_train + _NUM_VALIDATION] = True
  masks['test_mask'][test_index] = True
  return {'features': features, 'labels': one_hot.argmax(1).astype(np.int32),
          'edges': np.array(sorted(pairs), np.int32).reshape(-1, 2), **masks}


class LocalPlanetoid(LocalBuilder):
  """One example, the whole graph, in the single split `train`."""
  SPLITS = ('train',)
  OPTIONS = ('dataset',)

  @classmethod
  def source_files(cls, source: str, dataset: str = '') -> list[str]:
    return [os.path.join(source, f'ind.{dataset}.{p}') for p in _PARTS]

  def _features(self):
    def tensor(shape, dtype):
      return tfds.features.Tensor(shape=shape, dtype=dtype,
                                  encoding=tfds.features.Encoding.ZLIB)
    return tfds.features.FeaturesDict({
        'features': tensor((None, None), np.float32),
        'labels': tensor((None,), np.int32),
        'edges': tensor((None, 2), np.int32),
        **{m: tensor((None,), np.bool_) for m in ('train_mask', 'val_mask', 'test_mask')}})

  def _generate_examples(self, *paths: str):
    del paths  # all parts are read together
    yield 0, load_planetoid(self._source, self._options['dataset'])


class _Iterator:
  """The same full-graph batch forever; the state counts steps only to be resumable."""

  def __init__(self, batch: Batch):
    self._batch = batch
    self._step = 0

  def __iter__(self):
    return self

  def __next__(self) -> Batch:
    self._step += 1
    return self._batch

  def get_state(self) -> dict:
    return {'step': self._step}

  def set_state(self, state: Mapping) -> None:
    self._step = int(state['step'])


class GraphSource:
  """One graph whose loss and metrics read the nodes of `mask` only."""

  def __init__(self, graph: Mapping[str, np.ndarray], mask: np.ndarray):
    self._batch = {
        'inputs': graph['features'][None], 'label': graph['labels'][None],
        'senders': graph['edges'][None, :, 0], 'receivers': graph['edges'][None, :, 1],
        'mask': mask.astype(np.float32)[None]}

  def __len__(self) -> int:
    return 1

  def _check(self, batch_size: int, shard: Shard) -> None:
    if batch_size != 1 or shard.count != 1:
      raise UserError(f'A graph is trained full-batch: set config.batch_size=1 (not '
                       f'{batch_size}) and run it in one process (not {shard.count}).')

  def train_iterator(self, batch_size: int, seed: int, shard: Shard = Shard()) -> _Iterator:
    del seed  # nothing to shuffle
    self._check(batch_size, shard)
    return _Iterator(self._batch)

  def eval_batches(self, batch_size: int, shard: Shard = Shard()) -> Iterator[Batch]:
    self._check(batch_size, shard)
    yield self._batch


@registry.register('cora')
def cora(config) -> Splits:
  """Cora with the Planetoid split; config.data_dir is the folder of ind.cora.* files."""
  if not config.data_dir:
    raise UserError('cora has no TFDS catalog counterpart: set config.data_dir to the '
                     'folder of ind.cora.* files (../shared/data/cora).')
  source, = open_local(LocalPlanetoid, config, config.data_dir,
                       'the folder of ind.cora.* files (../shared/data/cora)', dataset='cora')
  graph = source[0]
  splits = [GraphSource(graph, graph[m]) for m in ('train_mask', 'val_mask', 'test_mask')]
  return Splits(*splits, info={
      'num_classes': int(graph['labels'].max()) + 1, 'num_nodes': len(graph['labels']),
      'num_features': graph['features'].shape[1], 'num_edges': len(graph['edges'])})

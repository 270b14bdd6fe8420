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

import io
import os
import pickle
import re
import warnings
from typing import Iterator, Mapping

import numpy as np
import scipy.sparse
import tensorflow_datasets as tfds

from train.data import registry
from train.data.pipeline import Batch, Shard, Splits
from train.data.text_builders import LocalBuilder, clip, numbered_lines, open_local
from train.errors import UserError

_PARTS = ('x', 'y', 'tx', 'ty', 'allx', 'ally', 'graph', 'test.index')
_NUM_VALIDATION = 500
_MAX_FEATURE_VALUES = 2**30  # 4 GiB of float32: far beyond any Planetoid graph
# What Planetoid pickles are made of (Python 2 and 3 module names); a pickle naming
# anything else is refused instead of run, so a corrupt or foreign file cannot call it.
_PICKLED = {(m, n) for m in ('numpy.core.multiarray', 'numpy._core.multiarray')
            for n in ('_reconstruct', 'scalar')} | {
    ('numpy.core.numeric', '_frombuffer'), ('numpy._core.numeric', '_frombuffer'),
    ('numpy', 'ndarray'), ('numpy', 'dtype'), ('collections', 'defaultdict'),
    ('_codecs', 'encode'),  # bytes, as Python 3 writes them in protocol 2
    ('scipy.sparse.csr', 'csr_matrix'), ('scipy.sparse._csr', 'csr_matrix')} | {
    (m, n) for m in ('builtins', '__builtin__') for n in ('list', 'set', 'dict', 'tuple')}


class _Unpickler(pickle.Unpickler):
  """Unpickles the arrays, sparse matrices and dicts of a Planetoid file, nothing else."""

  def find_class(self, module, name):
    if (module, name) not in _PICKLED:
      raise pickle.UnpicklingError(f'it names {module}.{name}, which no Planetoid file holds')
    return super().find_class(module, name)


def _read_part(path: str):
  if path.endswith('test.index'):
    nodes = []
    for number, line in numbered_lines(path):
      if line.strip():
        if not re.fullmatch(r'[0-9]{1,9}', line.strip()):
          raise UserError(f'{path}, line {number}: {clip(line.strip())!r} is not a node '
                          'number; each line must hold one node index >= 0.')
        nodes.append(int(line))
    return np.array(nodes, np.int64)
  try:
    with open(path, 'rb') as f:
      data = f.read()
    with warnings.catch_warnings():
      warnings.simplefilter('ignore', DeprecationWarning)  # old scipy module paths
      return _Unpickler(io.BytesIO(data), encoding='latin1').load()
  except Exception as error:  # a corrupt pickle fails in any number of ways
    raise UserError(f'{path} is not a readable Planetoid pickle ({_describe(error)}); '
                    'replace it with the original file.') from None


def _describe(error: Exception) -> str:
  """`error` as `Type: message` on one short line."""
  return f'{type(error).__name__}: {clip(" ".join(str(error).split()), 120)}'


def _matrix(value, path: str, what: str) -> np.ndarray:
  """`value`, a sparse matrix or array of numbers, as a finite dense float32 matrix."""
  if scipy.sparse.issparse(value):
    try:
      value.check_format(full_check=True)
      rows, columns = value.shape
    except Exception as error:  # a corrupt matrix: any attribute may be missing or wrong
      raise UserError(f'{path} holds a corrupt sparse matrix ({_describe(error)}); '
                      'replace it with the original file.') from None
    if rows * columns > _MAX_FEATURE_VALUES:
      raise UserError(f'{path} holds a {rows} x {columns} matrix, too large for a '
                      'Planetoid graph; replace it with the original file.')
    value = value.toarray()
  if (not isinstance(value, np.ndarray) or value.ndim != 2
      or value.dtype.kind not in 'biuf'):
    shape = getattr(value, 'shape', '')
    raise UserError(f'{path} holds {type(value).__name__}{shape}, not the 2-D {what} '
                    'matrix of a Planetoid file; replace it with the original file.')
  if not np.isfinite(value).all():
    raise UserError(f'{path} holds NaN or infinite values; replace it with the original '
                    'file.')
  return value.astype(np.float32)


def _edges(graph, path: str, num_nodes: int) -> np.ndarray:
  """The adjacency dict of `path` as sorted (sender, receiver) pairs, both directions."""
  if not isinstance(graph, dict):
    raise UserError(f'{path} holds {type(graph).__name__}, not the dict of node -> '
                    'neighbours of a Planetoid file; replace it with the original file.')
  pairs = set()
  for a, neighbours in graph.items():
    if not isinstance(neighbours, (list, tuple, set, np.ndarray)):
      raise UserError(f'{path}: node {clip(repr(a))} has {type(neighbours).__name__} for '
                      'neighbours, not a list; replace it with the original file.')
    for node in (a, *neighbours):
      if (not isinstance(node, (int, np.integer)) or isinstance(node, bool)
          or not 0 <= node < num_nodes):
        raise UserError(f'{path}: {clip(repr(node))} is not a node of the graph (0..'
                        f'{num_nodes - 1}); replace it with the original file.')
    pairs |= {(int(a), int(b)) for b in neighbours if a != b}
  pairs |= {(b, a) for a, b in pairs}
  return np.array(sorted(pairs), np.int32).reshape(-1, 2)


def load_planetoid(folder: str, name: str) -> dict[str, np.ndarray]:
  """The graph in `folder`/ind.`name`.*: features, labels, edges and the three masks.

  Raises:
    UserError: naming the file that is not a Planetoid part, or whose sizes disagree
      with the others'.
  """
  paths = {p: os.path.join(folder, f'ind.{name}.{p}') for p in _PARTS}
  parts = {p: _read_part(path) for p, path in paths.items()}
  test_index = parts['test.index']
  x, tx, allx = (_matrix(parts[p], paths[p], 'feature') for p in ('x', 'tx', 'allx'))
  y, ty, ally = (_matrix(parts[p], paths[p], 'one-hot label') for p in ('y', 'ty', 'ally'))
  _agree(paths, 'rows', x=x, y=y)
  _agree(paths, 'rows', tx=tx, ty=ty, **{'test.index': test_index[:, None]})
  _agree(paths, 'rows', allx=allx, ally=ally)
  _agree(paths, 'columns', x=x, tx=tx, allx=allx)
  _agree(paths, 'columns', y=y, ty=ty, ally=ally)
  if not len(test_index) or not len(ally) or not ally.shape[1]:
    raise UserError(f'{folder} holds an empty ind.{name} graph; point config.data_dir at the '
                    'folder of the original files.')
  num_nodes = max(len(allx), int(test_index.max()) + 1)
  if num_nodes > 2 * (len(allx) + len(tx)):
    raise UserError(f'{paths["test.index"]} names node {test_index.max()}, far beyond the '
                    f'{len(allx)} + {len(tx)} nodes the feature files hold; replace it with '
                    'the original file.')
  if num_nodes * allx.shape[1] > _MAX_FEATURE_VALUES:
    raise UserError(f'{folder}: {num_nodes} nodes x {allx.shape[1]} features is too large '
                    'for a Planetoid graph; replace the files with the original ones.')
  features = np.zeros((num_nodes, allx.shape[1]), np.float32)
  one_hot = np.zeros((num_nodes, ally.shape[1]), np.float32)
  features[:len(allx)] = allx
  one_hot[:len(ally)] = ally
  features[test_index] = tx  # row k of tx is node test_index[k]
  one_hot[test_index] = ty
  masks = {m: np.zeros(num_nodes, bool) for m in ('train_mask', 'val_mask', 'test_mask')}
  num_train = len(y)
  masks['train_mask'][:num_train] = True
  masks['val_mask'][num_train:num_train + _NUM_VALIDATION] = True
  masks['test_mask'][test_index] = True
  return {'features': features, 'labels': one_hot.argmax(1).astype(np.int32),
          'edges': _edges(parts['graph'], paths['graph'], num_nodes), **masks}


def _agree(paths: Mapping[str, str], axis: str, **arrays: np.ndarray) -> None:
  """Raises UserError unless `arrays` (Planetoid parts) have as many rows (or columns)."""
  sizes = {p: a.shape[0 if axis == 'rows' else 1] for p, a in arrays.items()}
  if len(set(sizes.values())) > 1:
    raise UserError('Planetoid files disagree: ' + ', '.join(
        f'{paths[p]} has {n} {axis}' for p, n in sizes.items()) +
        '; replace them with the original files.')


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

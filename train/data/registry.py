"""Datasets by name: `config.dataset` selects a builder `fn(config) -> Splits`.

Any dataset held in arrays can then be cut down to chosen rows of its training split:

  config.data.train_indices  train on these rows only (a subset, or the T_i of a k-fold fold);
  config.data.eval_indices   evaluate during training on these rows of the training split (a
                             validation set held out of it, the V_i of fold i) instead of the
                             dataset's own eval split. The test split is never changed.
"""

import dataclasses
from typing import Callable

import numpy as np
from ml_collections import ConfigDict

from train.data.pipeline import ArraySource, Splits
from train.errors import UserError

Builder = Callable[[ConfigDict], Splits]
_BUILDERS: dict[str, Builder] = {}


def register(name: str) -> Callable[[Builder], Builder]:
  def wrap(fn: Builder) -> Builder:
    _BUILDERS[name] = fn
    return fn
  return wrap


def names() -> list[str]:
  return sorted(_BUILDERS)


def build(config: ConfigDict) -> Splits:
  if config.dataset not in _BUILDERS:
    raise UserError(f'config.dataset={config.dataset!r} is not a known dataset; '
                     f'choose one of {names()}.')
  return select_rows(config, _BUILDERS[config.dataset](config))


def select_rows(config: ConfigDict, splits: Splits) -> Splits:
  """Applies config.data.train_indices / eval_indices (see the module docstring)."""
  chosen = {f: config.data.get(f) for f in ('train_indices', 'eval_indices')}
  if all(rows is None for rows in chosen.values()):
    return splits
  if not isinstance(splits.train, ArraySource):
    raise UserError(f'config.data.train_indices / eval_indices need a dataset held in arrays; '
                    f'config.dataset={config.dataset!r} streams its examples, so unset them.')
  arrays, size = splits.train.arrays, len(splits.train)
  sources = {}
  for field, rows in chosen.items():
    if rows is None:
      continue
    rows = np.asarray(rows)
    if not (rows.ndim == 1 and rows.size and np.issubdtype(rows.dtype, np.integer)
            and rows.min() >= 0 and rows.max() < size and np.unique(rows).size == rows.size):
      raise UserError(f'config.data.{field} must list distinct row numbers in 0..{size - 1} '
                      f'(the {size} training examples of {config.dataset!r}); fix or unset it.')
    augment = splits.train.augment if field == 'train_indices' else None
    sources[field[:-len('_indices')]] = ArraySource({k: v[rows] for k, v in arrays.items()},
                                                    augment)
  return dataclasses.replace(splits, **sources)

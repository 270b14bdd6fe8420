"""A trained model's variables as one flat .npz that any program (NumPy alone) can read.

Keys are '/'-joined paths into the model's `variables` dict, collection first:
`params/Dense_0/kernel`, `batch_stats/BatchNorm_0/mean`, ... `save_npz` and `load_npz`
turn a nested dict into such a file and back; `load_variables` reads one into a Flax
model's variables (checking the shapes the model expects), and `load_model` rebuilds the
model itself from the `<name>.config.json` that `experiments/export.py` writes beside it.

Arrays keep their dtype, except those NumPy cannot store (bfloat16, float8), which are
saved as float32: the values are exact, only wider.
"""

import json
import os
import pathlib

import jax
import nets
import numpy as np

from train.errors import UserError

SEP = '/'


def flatten(tree: dict, prefix: str = '') -> dict[str, np.ndarray]:
  """{'a/b/c': array} of a nested dict of arrays (empty dicts leave no key)."""
  flat = {}
  for key, value in tree.items():
    key = str(key)
    if SEP in key:
      raise ValueError(f'Key {key!r} contains {SEP!r}, which joins the path of an export.')
    name = f'{prefix}{key}'
    if isinstance(value, dict) or hasattr(value, 'items'):
      flat.update(flatten(dict(value.items()), name + SEP))
    else:
      flat[name] = storable(np.asarray(jax.device_get(value)))
  return flat


def storable(x: np.ndarray) -> np.ndarray:
  """`x`, or `x` as float32 where NumPy's own formats cannot hold its dtype."""
  return x.astype(np.float32) if x.dtype.kind == 'V' else x  # ml_dtypes: bfloat16, ...


def unflatten(flat: dict[str, np.ndarray]) -> dict:
  tree = {}
  for name, value in flat.items():
    *parents, leaf = name.split(SEP)
    node = tree
    for key in parents:
      node = node.setdefault(key, {})
    node[leaf] = value
  return tree


def save_npz(path, tree: dict) -> pathlib.Path:
  """Writes `tree` (nested dicts of arrays) as a flat .npz at exactly `path`, atomically."""
  path = pathlib.Path(path)
  path.parent.mkdir(parents=True, exist_ok=True)
  tmp = path.with_name(path.name + '.tmp')
  with open(tmp, 'wb') as f:  # a file object: np.savez would append '.npz' to a name
    np.savez(f, **flatten(tree))
  os.replace(tmp, path)
  return path


def load_npz(path) -> dict:
  """The nested dict of NumPy arrays that `save_npz` wrote to `path`."""
  path = pathlib.Path(path)
  if not path.is_file():
    raise UserError(f'{path} does not exist; pass the .npz that experiments.export wrote.')
  with np.load(path, allow_pickle=False) as data:
    return unflatten({name: data[name] for name in data.files})


def load_variables(path, model=None, *example_inputs) -> dict:
  """The variables in the export at `path`, as jax arrays, ready for `model.apply`.

  Given a model and example inputs (ShapeDtypeStructs suffice), every array is checked
  against the shape the model expects (the first mismatch is named) and given its dtype.
  """
  variables = jax.tree.map(jax.numpy.asarray, load_npz(path))
  if model is None:
    return variables
  rngs = {'params': jax.random.key(0), 'dropout': jax.random.key(1)}
  expected = jax.eval_shape(lambda *xs: model.init(rngs, *xs, train=False), *example_inputs)
  expected = {k: v for k, v in expected.items() if k in variables}
  want, found = shapes(expected), shapes(variables)
  for name in sorted(set(want) | set(found)):
    if want.get(name) != found.get(name):
      show = lambda s: 'absent' if s is None else f'shape {list(s)}'
      raise UserError(f'{path}: {name} is {show(found.get(name))} in the export but '
                      f'{show(want.get(name))} in {type(model).__name__}; export the '
                      'run this model was configured from.')
  return jax.tree.map(lambda x, s: x.astype(s.dtype), variables, expected)


def shapes(tree) -> dict[str, tuple[int, ...]]:
  """{'params/Dense_0/kernel': shape} of a nested dict of arrays or ShapeDtypeStructs."""
  leaves = jax.tree_util.tree_leaves_with_path(tree)
  return {SEP.join(str(getattr(k, 'key', k)) for k in p): tuple(x.shape) for p, x in leaves}


def config_path(npz_path) -> pathlib.Path:
  """FILE.config.json beside FILE.npz."""
  npz_path = pathlib.Path(npz_path)
  stem = npz_path.name[:-4] if npz_path.name.endswith('.npz') else npz_path.name
  return npz_path.with_name(stem + '.config.json')


def _tuples(value):
  """JSON lists back to the tuples Flax module fields are declared with."""
  return tuple(_tuples(v) for v in value) if isinstance(value, list) else value


def load_model(path):
  """(model, variables) of an export: `model.apply(variables, inputs)` predicts."""
  meta_path = config_path(path)
  if not meta_path.is_file():
    raise UserError(f'{meta_path} does not exist; keep it beside {path} as '
                    'experiments.export wrote it.')
  meta = json.loads(meta_path.read_text())['export']
  kwargs = {k: _tuples(v) for k, v in meta['model_kwargs'].items()}
  model = nets.create(meta['model'], **kwargs)
  inputs = [jax.ShapeDtypeStruct(tuple(s), d) for s, d in meta['input_shapes']]
  return model, load_variables(path, model, *inputs)

"""Transfer learning: start from another model's parameters, and optionally freeze them.

  config.init_from  a workdir of this engine (its latest checkpoint's parameters, and its
                    tokenizer), or a Hugging Face checkpoint directory (config.json with
                    model.safetensors or pytorch_model.bin; train/hf_convert.py converts it).
                    Every parameter the run's model has under the same path takes the
                    saved value; the rest (a new task head) keep their fresh initialisation.
                    A parameter whose shape differs is an error that names it.
  config.freeze     regexes on parameter paths ('encoder/block_0/mlp/wi/kernel'): the
                    matching parameters are never updated (train/optimizers.py `frozen`).

The seeds' two modes of transfer are then one flag apart: fine-tuning (init_from only) and
feature extraction (init_from and freeze=('encoder', 'pooler'): only the head trains).
A resumed run restores its own checkpoint over what init_from gave. A model with
scan_layers (nets/scale.py) loads a loop-of-blocks checkpoint, and the other way round.
"""

from __future__ import annotations

import jax
import numpy as np

from nets import scale
from train import storage
from train.errors import UserError
from train.optimizers import path_name


def read_params(config) -> dict:
  """The parameter tree (NumPy) saved in config.init_from (module docstring)."""
  source = config.init_from
  directory = storage.path(source)  # a local or a gs:// workdir
  checkpoints = directory / 'checkpoints'
  steps = sorted((int(p.name) for p in checkpoints.iterdir() if p.name.isdigit()),
                 reverse=True) if checkpoints.is_dir() else []
  if steps:
    import orbax.checkpoint as ocp
    from train.checkpoint import quiet
    with quiet():
      state = ocp.StandardCheckpointer().restore(checkpoints / str(steps[0]) / 'state')
    return jax.tree.map(np.asarray, state['params'])
  if (directory / 'config.json').is_file():
    from train import hf_convert
    name, kwargs, params = hf_convert.load(str(directory))
    _check_architecture(config, name, kwargs)
    return params
  raise UserError(f'config.init_from={source!r} holds neither a checkpoint of this engine '
                  '(<workdir>/checkpoints/<step>) nor a Hugging Face config.json; point it '
                  'at a finished run or a Hugging Face model directory.')


def _check_architecture(config, name: str, kwargs: dict) -> None:
  """config.model must describe the converted model: shapes are checked leaf by leaf,
  but a layer-norm epsilon or an activation would differ silently."""
  import nets
  if config.model.name != name:
    raise UserError(f'config.init_from={config.init_from!r} is a {name!r} model; set '
                    f'config.model.name={name!r}.')
  fields = nets.MODELS[name].__dataclass_fields__
  wrong = [f'config.model.{k}={v!r}' for k, v in kwargs.items()
           if k != 'num_outputs' and config.model.get(k, fields[k].default) != v]
  if wrong:
    raise UserError(f'config.init_from={config.init_from!r} was trained with a different '
                    f'architecture; set {", ".join(wrong)}.')


def merge(params, saved) -> tuple[dict, list[str]]:
  """`params` with every leaf that `saved` also has replaced by the saved value; and the
  paths that were replaced."""
  scanned = any('/blocks/' in f'/{path_name(p)}/'
                for p, _ in jax.tree_util.tree_leaves_with_path(params))
  saved = scale.relayout_blocks(saved, scanned)  # a loop of blocks <-> a scanned stack
  saved_leaves = {path_name(p): v for p, v in jax.tree_util.tree_leaves_with_path(saved)}
  loaded = []

  def take(path, fresh):
    name = path_name(path)
    if name not in saved_leaves:
      return fresh
    value = saved_leaves[name]
    if value.shape != fresh.shape:
      raise UserError(
          f'config.init_from: parameter {name} is {list(value.shape)} there but '
          f'{list(fresh.shape)} in this model; match config.model (and the vocabulary: '
          'the tokenizer comes with init_from) to the saved model.')
    loaded.append(name)
    return jax.numpy.asarray(value, fresh.dtype)

  return jax.tree_util.tree_map_with_path(take, params), loaded


def initializer(config, task_init_params):
  """The init_params hook: the task's own, then config.init_from's parameters on top."""
  source = config.get('init_from')
  if not source:
    return task_init_params
  saved = read_params(config)

  def init_params(params):
    merged, loaded = merge(task_init_params(params), saved)
    if not loaded:
      raise UserError(f'config.init_from={source!r} shares no parameter path with '
                      f'config.model.name={config.model.name!r}; is it the same model?')
    fresh = len(jax.tree.leaves(params)) - len(loaded)
    print(f'init_from {source}: {len(loaded)} parameter arrays loaded, {fresh} initialised '
          'fresh.', flush=True)
    return merged
  return init_params


def copy_tokenizer(config, workdir) -> None:
  """Gives a run started from an engine workdir that workdir's tokenizer (the ids its
  embeddings were trained on), unless the run has one already."""
  if not config.get('init_from'):
    return
  source = storage.path(config.init_from) / 'tokenizer'
  own = workdir / 'tokenizer'
  if source.is_dir() and not own.exists():
    storage.copy_tree(source, own)

"""Evaluates a run's checkpoint again, from its workdir alone.

  python -m experiments.evaluate --workdir=W [--step=N] [--split=test|eval|train]

The run's own config (W/config.json) rebuilds the experiment, the newest checkpoint (or
step N's) is restored into its shards, and the split is evaluated exactly as training
does: the metrics are printed as one JSON line and appended to W/metrics.jsonl as
{"step", "split", <metrics>, "source": "evaluate"}; nothing else in W changes. A run
moved since it trained reads its data from --data_dir. experiments.predict and
experiments.export restore runs with `load_run` from here. `--split=train` evaluates the
training examples in the same way (no dropout, no augmentation, batch norm's running
statistics), unlike the train lines the run logged (averages over training steps):
train accuracy - test accuracy is the generalisation gap.
"""

import dataclasses
import json
import pathlib
import sys

import jax
import nets
import orbax.checkpoint as ocp
from absl import app, flags, logging
from etils import epath
from ml_collections import ConfigDict

from experiments.configs import default
from train import checkpoint, loop, reporting, storage
from train.errors import UserError

FLAGS = flags.FLAGS
SPLITS = ('test', 'eval', 'train')


def define_run_flags():
  """--workdir, --step and --data_dir: which run, which checkpoint, where its data is."""
  flags.DEFINE_string('workdir', None, 'Workdir of a training run (config.json, checkpoints/).',
                      required=True)
  flags.DEFINE_integer('step', None, 'Checkpoint step to restore (default: the newest).')
  flags.DEFINE_string('data_dir', None, "Replaces the run's config.data_dir (for a run "
                      'moved to another machine or started from another folder).')


def _tuples(value):
  """config.json's lists back to the tuples the config held (Flax fields must hash)."""
  if isinstance(value, dict):
    return {k: _tuples(v) for k, v in value.items()}
  if isinstance(value, list):
    return tuple(_tuples(v) for v in value)
  return value


def _with_defaults(values: dict, base: dict, top: bool = True) -> dict:
  """`values`, with the fields it lacks taken from `base` (model and data: as saved)."""
  merged = dict(base)
  for key, value in values.items():
    nested = isinstance(value, dict) and isinstance(base.get(key), dict)
    own = top and key in ('model', 'data')
    merged[key] = _with_defaults(value, base[key], False) if nested and not own else value
  return merged


def load_config(workdir, data_dir: str | None = None) -> ConfigDict:
  """The config the run in `workdir` was last started with; its tokenizer is W/tokenizer.

  Fields that W/config.json lacks (it was written before the engine read them) take
  their values from experiments/configs/default.py, except within `model` and `data`.
  """
  workdir = storage.path(workdir)
  if not workdir.is_dir():
    raise UserError(f'--workdir={workdir} does not exist; pass the workdir of a training '
                    'run (python -m experiments.main --workdir=W makes one).')
  path = workdir / 'config.json'
  try:
    values = json.loads(path.read_text())
  except FileNotFoundError:
    raise UserError(f'{path} does not exist, so --workdir={workdir} is not the workdir of a '
                    'training run; pass one that python -m experiments.main wrote.') from None
  except ValueError as error:
    raise UserError(f'{path} is not valid JSON ({error}); restore it, or start the run '
                    'again with python -m experiments.main to rewrite it.') from None
  if not isinstance(values, dict):
    raise UserError(f'{path} holds no config object; restore it, or start the run again '
                    'with python -m experiments.main to rewrite it.')
  base = json.loads(default.get_config().to_json_best_effort())
  config = ConfigDict(_tuples(_with_defaults(values, base)))
  if data_dir is not None:
    config.data_dir = data_dir
  elif config.data_dir and not pathlib.Path(config.data_dir).is_dir():
    raise UserError(f'The run read its data from config.data_dir={config.data_dir!r}, which '
                    'is not a folder from here; pass --data_dir=<that dataset folder>.')
  if 'tokenizer_dir' in config.get('data', {}):
    own, recorded = workdir / 'tokenizer', config.data.tokenizer_dir
    if own.is_dir():
      config.data.tokenizer_dir = str(own)
    elif not (recorded and storage.path(recorded).is_dir()):
      raise UserError(f'{own} does not exist: the vocabulary this run was trained with is '
                      'missing; copy the tokenizer folder of the run back into it.')
  return config


def checkpoint_steps(directory: epath.Path) -> list[int]:
  if not directory.is_dir():
    return []
  return sorted(int(p.name) for p in directory.iterdir() if p.is_dir() and p.name.isdigit())


def restore_state(workdir: epath.Path, exp: loop.Experiment, step: int | None = None):
  """(state, step) of checkpoint `step` (None: the newest), read into its shards.

  Read-only: unlike a training run, a corrupt checkpoint is reported, never moved.
  """
  directory = workdir / 'checkpoints'
  steps = checkpoint_steps(directory)
  if not steps:
    raise UserError(f'{workdir} holds no checkpoint yet; train it first (python -m '
                    f'experiments.main --workdir={workdir} with its --config).')
  step = steps[-1] if step is None else step
  if step not in steps:
    raise UserError(f'--step={step} has no checkpoint in {directory}; choose one of {steps}, '
                    'or leave --step out for the newest.')
  others = f'pass --step with one of {[s for s in steps if s != step]}' if len(steps) > 1 \
      else 'train the run again'
  target = exp.par.restore_target(exp.state)
  saved = checkpoint.saved_shapes(directory / str(step))
  difference = saved and checkpoint.first_difference(saved, target)
  if difference:
    raise UserError(f'Checkpoint step {step} in {directory} does not fit the model that '
                    f'{workdir}/config.json builds ({difference}); {others}.')
  problem = checkpoint.verify(directory / str(step))
  if problem is None:
    with checkpoint.quiet():  # Orbax warns that a read-only manager will not save
      options = ocp.CheckpointManagerOptions(read_only=True, create=False,
                                             enable_async_checkpointing=False)
      manager = ocp.CheckpointManager(directory, options=options)
    try:
      with checkpoint.quiet():
        restored = manager.restore(step, args=ocp.args.Composite(
            state=ocp.args.StandardRestore(target)))
      return exp.par.place_restored(restored['state']), step
    except Exception as error:  # any failure to read means this step is unusable
      problem = checkpoint.one_line(error)
    finally:
      manager.close()
  raise UserError(f'Checkpoint step {step} in {directory} is corrupt ({problem}); {others}.')


@dataclasses.dataclass
class Run:
  """A trained run, rebuilt from its workdir: the experiment and a restored state."""
  workdir: epath.Path
  exp: loop.Experiment
  state: object  # as the experiment's parallelism lays it out (pmap: replicated)
  step: int


def load_run(workdir, step: int | None = None, devices=None,
             data_dir: str | None = None) -> Run:
  """Rebuilds the run in `workdir` from its config and restores checkpoint `step`."""
  workdir = storage.path(workdir)
  config = load_config(workdir, data_dir)
  exp = loop.build(config, devices)
  state, step = restore_state(workdir, exp, step)
  return Run(workdir, exp, state, step)


def append_record(workdir, record: dict) -> None:
  """One more line at the end of W/metrics.jsonl; the lines already there are untouched."""
  assert record['split'] in reporting.SPLITS, record
  storage.append_text(storage.path(workdir) / 'metrics.jsonl', json.dumps(record) + '\n')


def evaluate(workdir, step: int | None = None, split: str = 'test', devices=None,
             data_dir: str | None = None) -> dict:
  """Evaluates checkpoint `step` of the run in `workdir` on `split`; returns the record."""
  if split not in SPLITS:
    raise UserError(f'--split={split!r} is not one of {list(SPLITS)}.')
  run = load_run(workdir, step, devices, data_dir)
  _, eval_step = loop.compile_steps(run.exp, run.state)
  source = getattr(run.exp.splits, split)
  metrics = reporting.scalars(loop.evaluate(run.exp, eval_step, run.state, source))
  record = {'step': run.step, 'split': split, **metrics, 'source': 'evaluate'}
  if jax.process_index() == 0:
    append_record(run.workdir, record)
  return record


def cli(fn):
  """Runs `fn()` as a command: Orbax and TFDS quiet, the project's errors in one line."""
  if not FLAGS['verbosity'].present:
    logging.set_verbosity(logging.WARNING)
  try:
    return fn()
  except (UserError, nets.ModelConfigError) as error:
    sys.exit(f'error: {error}')


def main(argv):
  del argv
  record = cli(lambda: evaluate(FLAGS.workdir, FLAGS.step, FLAGS.split,
                                data_dir=FLAGS.data_dir))
  print(json.dumps(record), flush=True)


if __name__ == '__main__':
  define_run_flags()
  flags.DEFINE_enum('split', 'test', SPLITS, 'The split to evaluate.')
  app.run(main)

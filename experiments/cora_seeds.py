"""Trains a Cora config for seeds 0..S-1 and reports the test accuracy's mean and std.

  python -m experiments.cora_seeds --config=gat --seeds=10 --data_dir=../shared/data/cora

Each seed runs `experiments/configs/cora_<config>.py` in its own workdir,
<workdir_root>/cora_<config>/seed_<s>, on one device; running the command again resumes
(a finished seed is read back from its workdir, not retrained) unless --fresh is given.
Prints each seed's validation and test accuracy at the tested step (the last, or with
config.select_best the selected one), then the mean and the sample standard deviation
(ddof=1) over seeds, then one JSON line with the figures.
"""

import importlib
import json
import pathlib
import time

from absl import app, flags, logging

flags.DEFINE_enum('config', 'gat', ['gat', 'gcn'], 'experiments/configs/cora_<config>.py.')
flags.DEFINE_integer('seeds', 10, 'Trains seeds 0 .. seeds-1.')
flags.DEFINE_string('data_dir', '../shared/data/cora', 'The folder of ind.cora.* files.')
flags.DEFINE_string('workdir_root', '/tmp', 'Each seed runs in '
                    '<workdir_root>/cora_<config>/seed_<s>.')
flags.DEFINE_integer('num_steps', None, 'Overrides the config\'s num_steps.')
flags.DEFINE_bool('fresh', False, 'Start every seed over (previous runs are archived).')
FLAGS = flags.FLAGS


def seed_config(name: str, seed: int, data_dir: str, num_steps: int | None):
  config = importlib.import_module(f'experiments.configs.cora_{name}').get_config()
  config.update(seed=seed, data_dir=data_dir, progress_bar=False)
  if num_steps is not None:
    config.num_steps = num_steps
  return config


def main(argv):
  del argv
  logging.set_verbosity(logging.WARNING)
  import jax
  import numpy as np
  from train import loop, reporting

  root = pathlib.Path(FLAGS.workdir_root) / f'cora_{FLAGS.config}'
  rows = []
  for seed in range(FLAGS.seeds):
    config = seed_config(FLAGS.config, seed, FLAGS.data_dir, FLAGS.num_steps)
    workdir = root / f'seed_{seed}'
    start = time.perf_counter()
    _, test = loop.train_and_evaluate(config, str(workdir), devices=jax.devices()[:1],
                                      fresh=FLAGS.fresh)
    tested = test.get('selected_step', config.num_steps)
    evals = [r for r in reporting.read_metrics(workdir)
             if r['split'] == 'eval' and r['step'] == tested]
    rows.append({'seed': seed, 'val_accuracy': evals[-1]['accuracy'] if evals else None,
                 'test_accuracy': float(test['accuracy']), 'tested_step': int(tested),
                 'seconds': round(time.perf_counter() - start, 1)})
    print(f'seed {seed}: step {tested}: val accuracy {rows[-1]["val_accuracy"]:.3f}, test '
          f'accuracy {rows[-1]["test_accuracy"]:.3f} ({rows[-1]["seconds"]} s)', flush=True)
  tests = np.array([r['test_accuracy'] for r in rows])
  vals = np.array([r['val_accuracy'] for r in rows], float)
  std = float(tests.std(ddof=1)) if len(tests) > 1 else 0.0
  print(f'cora_{FLAGS.config}, {len(rows)} seeds, {config.num_steps} steps: test accuracy '
        f'{100 * tests.mean():.2f} +- {100 * std:.2f}% (val {100 * np.nanmean(vals):.2f}%)')
  print(json.dumps({'config': f'cora_{FLAGS.config}', 'num_steps': config.num_steps,
                    'test_accuracy_mean': float(tests.mean()), 'test_accuracy_std': std,
                    'val_accuracy_mean': float(np.nanmean(vals)), 'runs': rows}))


if __name__ == '__main__':
  app.run(main)

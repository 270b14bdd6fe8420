"""What every training-science experiment does: train configs, read their curves, plot, report.

Each run lives in its own workdir under the experiment's root, so running the command again
reads finished runs back instead of retraining them (the engine resumes or finds them done);
`fresh=True` archives them and starts over.

Most experiments start from `mnist_config`: the MNIST-5k MLP or CNN (4,000 training digits,
the 1,000 held-out ones as eval and test split) stripped of everything but the factor under
study: no augmentation, no dropout, a constant learning rate.
"""

import json
import pathlib
from typing import NamedTuple

from absl import flags, logging
from ml_collections import ConfigDict

MNIST5K_TRAIN = 4000  # training digits in ../shared/data/mnist5k (train/data/images.py)


class Run(NamedTuple):
  records: list[dict]  # metrics.jsonl of the run
  test: dict  # the test metrics (floats)
  state: object = None  # the final TrainState (unreplicated), for analyses of the parameters

  def curve(self, key: str, split: str = 'train') -> tuple[list[int], list[float]]:
    """(steps, values) of `key` in the records the run logged for `split` ('train' or
    'eval'); later evaluations (experiments/evaluate.py, `evaluated`) are not part of it."""
    points = [(r['step'], r[key]) for r in self.records
              if r['split'] == split and key in r and 'source' not in r]
    return tuple(map(list, zip(*points))) if points else ([], [])

  def final(self, key: str, split: str = 'train') -> float:
    """The last logged value of `key` (train: the mean over the last log_every steps)."""
    return self.curve(key, split)[1][-1]


def train(config: ConfigDict, workdir: pathlib.Path, fresh: bool = False) -> Run:
  """Trains `config` in `workdir` on one device (the figures compare runs, not devices)."""
  import jax
  from train import loop, reporting
  logging.set_verbosity(logging.WARNING)  # Orbax's INFO lines would drown the table
  config.progress_bar = False
  state, test = loop.train_and_evaluate(config, str(workdir), devices=jax.devices()[:1],
                                        fresh=fresh)
  return Run(reporting.read_metrics(workdir),
             {k: float(v) for k, v in reporting.scalars(test).items()}, state)


def train_all(configs: dict[str, ConfigDict], root: pathlib.Path,
              fresh: bool = False) -> dict[str, Run]:
  """Trains each config in root/<its name>, one after another."""
  return {name: train(config, root / name, fresh) for name, config in configs.items()}


def evaluated(workdir: pathlib.Path, split: str = 'train') -> dict:
  """The run's final checkpoint evaluated on `split` as its test split is (no dropout, no
  augmentation; experiments/evaluate.py, which appends the record to W/metrics.jsonl),
  or that record read back if an earlier call wrote it."""
  import jax
  from experiments import evaluate
  from train import reporting
  records = reporting.read_metrics(workdir)
  last = max(r['step'] for r in records)
  done = [r for r in records
          if r.get('source') == 'evaluate' and r['split'] == split and r['step'] == last]
  return done[-1] if done else evaluate.evaluate(workdir, split=split, devices=jax.devices()[:1])


def mnist_config(data_dir: str, model: str = 'mlp', num_epochs: int = 10,
                 batch_size: int = 128, evaluations: int = 5) -> ConfigDict:
  """experiments/configs/mnist_<model>.py without augmentation, dropout or a schedule
  (constant learning rate, no warmup), logging the training loss every 10 steps,
  evaluating `evaluations` times and saving one checkpoint, at the end."""
  from experiments.configs import mnist_cnn, mnist_mlp
  c = {'mlp': mnist_mlp, 'cnn': mnist_cnn}[model].get_config()
  c.data_dir = data_dir
  c.data.augment = False
  c.model.dropout_rate = 0.0
  c.optimizer.update(schedule='constant', warmup_steps=0)
  steps = num_epochs * (MNIST5K_TRAIN // batch_size)
  c.update(num_epochs=num_epochs, batch_size=batch_size, log_every=10,
           eval_every=max(steps // evaluations, 1), checkpoint_every=max(steps, 1))
  return c


def define_flags(experiment: str) -> None:
  """The flags every experiment has; call it under `if __name__ == '__main__'`."""
  flags.DEFINE_string('data_dir', '../shared/data/mnist5k', 'Folder of mnist_5k.csv.gz.')
  flags.DEFINE_string('workdir_root', f'/tmp/science/{experiment}',
                      'Each run goes to a folder here, and the plot beside them.')
  flags.DEFINE_bool('fresh', False, 'Start every run over (previous runs are archived).')


def figure(*args, **kwargs):
  """matplotlib's (fig, axes), drawn off-screen."""
  import matplotlib
  matplotlib.use('Agg')
  import matplotlib.pyplot as plt
  return plt.subplots(*args, **kwargs)


def save(fig, path: pathlib.Path) -> None:
  import matplotlib.pyplot as plt
  path.parent.mkdir(parents=True, exist_ok=True)
  fig.tight_layout()
  fig.savefig(path, dpi=100)
  plt.close(fig)
  print(f'Plot: {path}')


def report(experiment: str, rows: list[dict], **settings) -> None:
  """A fixed-width table of `rows` (one dict per run, same keys) and one JSON line."""
  if rows:
    keys = list(rows[0])
    width = {k: max(len(k), *(len(_cell(r[k])) for r in rows)) + 2 for k in keys}
    print(''.join(k.rjust(width[k]) for k in keys))
    for r in rows:
      print(''.join(_cell(r[k]).rjust(width[k]) for k in keys))
  print(json.dumps({'experiment': experiment, **settings, 'runs': rows}))


def _cell(value) -> str:
  return f'{value:.4g}' if isinstance(value, float) else str(value)

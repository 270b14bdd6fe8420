"""Gradient clipping on the character LSTM: the same run with and without it, and a plot.

  python -m experiments.clipping --data_dir=../shared/data/tinyshakespeare

Trains experiments/configs/shakespeare_lstm.py, made small and given plain SGD at a high
learning rate (the setting of Pascanu et al. 2013 and Zaremba et al. 2014, where
exploding gradients show), once per --clips value of config.optimizer.clip_global_norm
(0: no clipping), each in <workdir_root>/clip_<value>; running the command again
resumes (a finished run is read back, not retrained) unless --fresh is given.

Clipping by global norm rescales the whole gradient g to c g / ||g|| when ||g|| > c: its
direction is kept, only the size of the rare huge steps is capped. The plot, clipping.png
in --workdir_root, shows per run the training loss and the gradient norm (before
clipping, as the engine logs it) against the step, and the validation loss; the table
and the closing JSON line give the final losses and the largest gradient norm seen.
"""

import json
import pathlib

from absl import app, flags, logging

flags.DEFINE_string('data_dir', '../shared/data/tinyshakespeare', 'Folder of input.txt.')
flags.DEFINE_string('workdir_root', '/tmp/clipping', 'Each run and the plot go here.')
flags.DEFINE_list('clips', ['0', '0.25', '1'], 'Values of clip_global_norm (0: none).')
flags.DEFINE_string('optimizer', 'sgd', 'config.optimizer.name of every run.')
flags.DEFINE_float('learning_rate', 10.0, 'config.optimizer.learning_rate of every run.')
flags.DEFINE_integer('num_steps', 400, 'Steps per run.')
flags.DEFINE_bool('fresh', False, 'Start every run over (previous runs are archived).')
FLAGS = flags.FLAGS


def run_config(clip: float):
  from experiments.configs import shakespeare_lstm
  c = shakespeare_lstm.get_config()
  c.update(data_dir=FLAGS.data_dir, num_steps=FLAGS.num_steps, progress_bar=False,
           log_every=10, eval_every=100, checkpoint_every=FLAGS.num_steps, batch_size=32,
           eval_batch_size=64, on_nonfinite='skip')
  c.data.update(seq_len=64, eval_seq_len=512)
  c.model.update(hidden_size=128, num_layers=1)
  c.optimizer.update(name=FLAGS.optimizer, learning_rate=FLAGS.learning_rate,
                     schedule='constant', clip_global_norm=clip)
  c.samples.length = 0
  return c


def plot(runs: dict, path: pathlib.Path):
  import matplotlib
  matplotlib.use('Agg')
  import matplotlib.pyplot as plt

  fig, (loss_ax, norm_ax) = plt.subplots(1, 2, figsize=(10, 3.8))
  for label, records in runs.items():
    train = [(r['step'], r['loss'], r['grad_norm']) for r in records if r['split'] == 'train']
    steps, losses, norms = zip(*train)
    line, = loss_ax.plot(steps, losses, label=f'{label}: train')
    evals = [(r['step'], r['loss']) for r in records if r['split'] == 'eval']
    if evals:
      loss_ax.plot(*zip(*evals), 'o--', color=line.get_color(), label=f'{label}: validation')
    norm_ax.plot(steps, norms, color=line.get_color(), label=label)
  loss_ax.set(xlabel='step', ylabel='loss (nats per character)', title='loss')
  norm_ax.set(xlabel='step', ylabel='||g|| (mean over 10 steps)', yscale='log',
              title='gradient norm before clipping')
  loss_ax.legend()
  norm_ax.legend()
  fig.suptitle(f'Character LSTM, {FLAGS.optimizer} at learning rate {FLAGS.learning_rate}')
  fig.tight_layout()
  fig.savefig(path, dpi=100)
  plt.close(fig)


def main(argv):
  del argv
  logging.set_verbosity(logging.WARNING)
  import jax
  from train import loop, reporting

  root = pathlib.Path(FLAGS.workdir_root)
  runs, rows = {}, []
  for clip in map(float, FLAGS.clips):
    workdir = root / f'clip_{clip:g}'
    _, test = loop.train_and_evaluate(run_config(clip), str(workdir), devices=jax.devices()[:1],
                                      fresh=FLAGS.fresh)
    label = f'clip {clip:g}' if clip else 'no clipping'
    runs[label] = records = reporting.read_metrics(workdir)
    train = [r for r in records if r['split'] == 'train']
    rows.append({'clip_global_norm': clip, 'final_train_loss': train[-1]['loss'],
                 'test_loss': float(test['loss']),
                 'max_grad_norm': max(r['grad_norm'] for r in train),
                 'nonfinite_steps': sum(r.get('nonfinite_steps', 0) for r in train)})
  plot(runs, root / 'clipping.png')
  print(f'\n{"run":<14}{"train loss":>12}{"test loss":>11}{"max ||g||":>11}{"skipped":>9}')
  for label, row in zip(runs, rows):
    print(f'{label:<14}{row["final_train_loss"]:>12.3f}{row["test_loss"]:>11.3f}'
          f'{row["max_grad_norm"]:>11.3g}{row["nonfinite_steps"]:>9}')
  print(f'Plot: {root / "clipping.png"}')
  print(json.dumps({'experiment': 'clipping', 'optimizer': FLAGS.optimizer,
                    'learning_rate': FLAGS.learning_rate, 'num_steps': FLAGS.num_steps,
                    'runs': rows}))


if __name__ == '__main__':
  app.run(main)

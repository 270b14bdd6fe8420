"""Training loss against the minimum ratio at the end of many small training runs.

  python -m experiments.science.minimum_ratio --workdir_root=/tmp/science/minimum_ratio

At a critical point (grad L = 0) the Hessian H decides what the point is: every eigenvalue
lambda_i > 0 is a local minimum, both signs a saddle point (train/diagnostics.py). The minimum
ratio (Hung-yi Lee's lecture) counts the directions that curve upwards,

    minimum ratio = #{lambda_i > tol} / #{lambda_i},

1 at a minimum. Each run trains a tiny tanh MLP 2-h-3 (6h + 3 parameters) on 256 spiral points
(experiments/configs/default.py's data) with squared error on the one-hot label (a loss with
no flat directions built in: softmax cross-entropy is unchanged by adding a constant to every
logit, which would give h + 1 zero eigenvalues at every point), full batch, Adam with a cosine
decay; runs differ in --widths, --steps and --seeds (the seed draws the points and the
initialisation). At the end the exact Hessian of that same training loss is built and
diagonalised in float64, and the loss, the gradient norm and the ratio are recorded.

The plot, minimum_ratio.png in --workdir_root, is the lecture's scatter: training loss against
minimum ratio, one point per run, coloured by the number of steps, and beside it the gradient
norm against the ratio. The table and the closing JSON line give every run.
"""

import pathlib

from absl import app, flags

from experiments.science import common

FLAGS = flags.FLAGS


def run_config(width: int, steps: int, seed: int):
  from experiments.configs import default
  c = default.get_config()
  c.seed = seed
  c.data.update(num_train=256, num_test=1000)
  c.model.update(hidden=(width,), activation='tanh', output='linear')
  c.loss = 'mse'
  c.optimizer.update(name='adam', learning_rate=0.02, schedule='cosine')
  c.update(batch_size=256, num_steps=steps, log_every=min(steps, 100), eval_every=steps,
           checkpoint_every=steps)
  return c


def training_loss(config, apply_fn):
  """params -> the full-batch training loss the run minimised, in float64 inside x64."""
  import jax.numpy as jnp
  import numpy as np
  from train import data
  train = data.build(config).train.arrays  # the same points (the seed draws them)
  x_NxD = np.asarray(train['inputs'], np.float64)
  y_NxK = np.eye(config.data.num_classes)[train['label']]
  # The engine's squared error (train/losses.py), but without its float32 cast: a small
  # eigenvalue needs float64 (train/diagnostics.py).
  return lambda params: jnp.mean(jnp.square(apply_fn({'params': params}, x_NxD) - y_NxK))


def plot(rows: list[dict], path: pathlib.Path):
  import matplotlib.colors
  import numpy as np
  fig, (loss_ax, grad_ax) = common.figure(1, 2, figsize=(11, 4.2))
  ratio = np.array([r['minimum_ratio'] for r in rows])
  steps = np.array([r['steps'] for r in rows])
  norm = matplotlib.colors.LogNorm(steps.min(), steps.max())
  for ax, key, label in ((loss_ax, 'train_loss', 'training loss (squared error)'),
                         (grad_ax, 'grad_norm', '||grad L|| at the end')):
    points = ax.scatter(ratio, [r[key] for r in rows], c=steps, norm=norm, cmap='viridis',
                        s=[12 + 4 * r['width'] for r in rows], alpha=0.8, edgecolors='k',
                        linewidths=0.3)
    ax.set(xlabel='minimum ratio  #{lambda > 0} / #{lambda}', ylabel=label, yscale='log')
  fig.colorbar(points, ax=grad_ax, label='training steps')
  loss_ax.set_title(f'{len(rows)} tiny tanh MLPs on spirals (marker size: width)')
  grad_ax.set_title('how close each end point is to a critical point')
  common.save(fig, path)


def main(argv):
  del argv
  from train import diagnostics

  root = pathlib.Path(FLAGS.workdir_root)
  rows = []
  for width in map(int, FLAGS.widths):
    for steps in map(int, FLAGS.steps):
      for seed in range(FLAGS.seeds):
        config = run_config(width, steps, seed)
        run = common.train(config, root / f'h{width}_steps{steps}_seed{seed}', FLAGS.fresh)
        loss_fn = training_loss(config, run.state.apply_fn)
        point = diagnostics.analyse_critical_point(loss_fn, run.state.params, tol=FLAGS.tol)
        rows.append({'width': width, 'steps': steps, 'seed': seed,
                     'parameters': point.eigenvalues.size,
                     'train_loss': float(loss_fn(run.state.params)),
                     'grad_norm': point.grad_norm, 'minimum_ratio': point.minimum_ratio,
                     'lambda_min': float(point.eigenvalues[0]),
                     'lambda_max': float(point.eigenvalues[-1]),
                     'test_accuracy': run.test['accuracy']})
  plot(rows, root / 'minimum_ratio.png')
  common.report('minimum_ratio', rows, tol=FLAGS.tol)


if __name__ == '__main__':
  common.define_flags('minimum_ratio')
  flags.DEFINE_list('widths', ['2', '4', '8', '16'], 'Hidden widths h.')
  flags.DEFINE_list('steps', ['100', '300', '1000', '3000'], 'Training steps per run.')
  flags.DEFINE_integer('seeds', 3, 'Seeds 0..seeds-1 per (width, steps).')
  flags.DEFINE_float('tol', 1e-6, 'Eigenvalues within +-tol count as zero (not positive).')
  app.run(main)

"""Training throughput of the MNIST experiments: examples/s and step time.

  python -m experiments.benchmarks.train_throughput [--data_dir=../shared/data/mnist5k]

Two figures per experiment, measured in one process: `step` times the jitted train step
alone on batches already on the device; `loop` adds what the real loop also does each
step (next batch from the input pipeline, augmentation, host-to-device transfer, metric
accumulation). Ends with one JSON line of the figures.
"""

import json
import pathlib
import statistics
import time

import jax
from absl import app, flags

from experiments.configs import mnist_cnn, mnist_mlp
from train import loop, steps

flags.DEFINE_string('data_dir', '../shared/data/mnist5k', 'Folder of mnist_5k.csv.gz.')
flags.DEFINE_integer('steps', 30, 'Timed steps per repetition.')
flags.DEFINE_integer('repeats', 3, 'Repetitions; the median is reported.')
FLAGS = flags.FLAGS

CONFIGS = {'mnist_mlp': mnist_mlp, 'mnist_cnn': mnist_cnn}


def timed(fn, repeats: int) -> float:
  """Median seconds of fn() over `repeats` runs."""
  times = []
  for _ in range(repeats):
    start = time.perf_counter()
    fn()
    times.append(time.perf_counter() - start)
  return statistics.median(times)


def measure(name: str, module) -> dict:
  config = module.get_config()
  config.data_dir = FLAGS.data_dir
  exp = loop.build(config)
  state = exp.state
  train_step, _ = loop.compile_steps(exp, state)
  place = lambda batch: exp.par.place_batch(batch, config.batch_size)
  batches = [place(next(exp.train_iter)) for _ in range(FLAGS.steps)]
  holder = {'state': train_step(state, batches[0])[0]}  # compile and warm up

  def device_only():
    for batch in batches:
      holder['state'], sums = train_step(holder['state'], batch)
    jax.block_until_ready(sums)

  def full_loop():
    total = None
    for _ in range(FLAGS.steps):
      holder['state'], sums = train_step(holder['state'], place(next(exp.train_iter)))
      total = steps.add_sums(total, sums)
    jax.block_until_ready(total)

  results = {}
  for kind, fn in (('step', device_only), ('loop', full_loop)):
    seconds = timed(fn, FLAGS.repeats) / FLAGS.steps
    results[f'{kind}_ms'] = 1e3 * seconds
    results[f'{kind}_examples_per_sec'] = config.batch_size / seconds
  results['batch_size'] = config.batch_size
  return results


def main(argv):
  del argv
  if not pathlib.Path(FLAGS.data_dir).is_dir():
    raise SystemExit(f'--data_dir={FLAGS.data_dir} is not a directory holding mnist_5k.csv.gz.')
  figures = {name: measure(name, module) for name, module in CONFIGS.items()}
  device = jax.devices()[0]
  print(f'\nTraining throughput on {len(jax.devices())} x {device.platform} '
        f'({device.device_kind}), median of {FLAGS.repeats} x {FLAGS.steps} steps')
  print(f'{"experiment":<12}{"batch":>7}{"step ms":>10}{"step ex/s":>12}'
        f'{"loop ms":>10}{"loop ex/s":>12}')
  for name, f in figures.items():
    print(f'{name:<12}{f["batch_size"]:>7}{f["step_ms"]:>10.2f}'
          f'{f["step_examples_per_sec"]:>12.0f}{f["loop_ms"]:>10.2f}'
          f'{f["loop_examples_per_sec"]:>12.0f}')
  print(json.dumps({'benchmark': 'train_throughput', 'platform': device.platform,
                    'num_devices': len(jax.devices()), **figures}))


if __name__ == '__main__':
  app.run(main)

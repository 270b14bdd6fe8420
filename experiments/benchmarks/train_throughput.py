"""Training throughput of the MNIST experiments: examples/s and step time.

  python -m experiments.benchmarks.train_throughput [--data_dir=../shared/data/mnist5k]

Two figures per experiment, measured in one process: `step` times the jitted train step
alone on batches already on the device; `loop` adds what the real loop also does each
step (next batch from the input pipeline, augmentation, host-to-device transfer, metric
accumulation). Where PyTorch is installed (a CPU wheel; never a dependency) the CNN's step
is also timed in PyTorch on the same batches: the same network (conv-BN-ReLU-maxpool x 2,
dense, dropout; channels-last memory format, PyTorch's faster one on CPU), cross-entropy,
backward and Adam, alternating with ours, and the ratio of step times is printed. Ends
with one JSON line of the figures.
"""

import json
import pathlib

import jax
import numpy as np
from absl import app, flags

from experiments.benchmarks import timing
from experiments.configs import mnist_cnn, mnist_mlp
from train import loop, steps

flags.DEFINE_string('data_dir', '../shared/data/mnist5k', 'Folder of mnist_5k.csv.gz.')
flags.DEFINE_integer('steps', 30, 'Timed steps per repetition.')
flags.DEFINE_integer('repeats', 3, 'Repetitions; the median is reported.')
FLAGS = flags.FLAGS

CONFIGS = {'mnist_mlp': mnist_mlp, 'mnist_cnn': mnist_cnn}


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
    seconds = timing.median_seconds(fn, FLAGS.repeats) / FLAGS.steps
    results[f'{kind}_ms'] = 1e3 * seconds
    results[f'{kind}_examples_per_sec'] = config.batch_size / seconds
  results['batch_size'] = config.batch_size
  torch_step = torch_cnn_runner(config, batches) if name == 'mnist_cnn' else None
  if torch_step is not None:
    seconds = timing.alternate({'ours': device_only, 'torch': torch_step}, FLAGS.repeats)
    results['torch_step_ms'] = 1e3 * seconds['torch'] / FLAGS.steps
    results['ratio_to_torch'] = seconds['torch'] / seconds['ours']
  return results


def torch_cnn_runner(config, batches):
  """The MNIST CNN's train step in PyTorch on the same batches, or None without PyTorch."""
  try:
    import torch  # pylint: disable=import-outside-toplevel
  except ImportError:
    return None
  m, o = config.model, config.optimizer
  layers, channels = [], 1
  for width in m.features:
    layers += [torch.nn.Conv2d(channels, width, m.kernel_size, padding='same', bias=False),
               torch.nn.BatchNorm2d(width, momentum=0.1), torch.nn.ReLU(),
               torch.nn.MaxPool2d(m.pool_size)]
    channels = width
  side = 28 // m.pool_size ** len(m.features)
  layers += [torch.nn.Flatten(), torch.nn.Linear(channels * side * side, m.hidden[0]),
             torch.nn.ReLU(), torch.nn.Dropout(m.dropout_rate),
             torch.nn.Linear(m.hidden[0], 10)]
  torch.manual_seed(0)
  model = torch.nn.Sequential(*layers).to(memory_format=torch.channels_last)
  adam = torch.optim.Adam(model.parameters(), lr=o.learning_rate, betas=(o.b1, o.b2),
                          eps=o.eps)
  data = [(torch.from_numpy(np.asarray(b['inputs'])).permute(0, 3, 1, 2).contiguous(
      memory_format=torch.channels_last), torch.from_numpy(np.asarray(b['label'], np.int64)))
          for b in batches]

  def run():
    for images, labels in data:
      adam.zero_grad()
      loss = torch.nn.functional.cross_entropy(model(images), labels)
      loss.backward()
      adam.step()
  return run


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
    if 'ratio_to_torch' in f:
      import torch  # pylint: disable=import-outside-toplevel
      print(f'{name} in PyTorch {torch.__version__} ({torch.get_num_threads()} threads): '
            f'{f["torch_step_ms"]:.2f} ms a step; ours / PyTorch {f["ratio_to_torch"]:.2f}x')
  print(json.dumps({'benchmark': 'train_throughput', 'platform': device.platform,
                    'num_devices': len(jax.devices()), **figures}))


if __name__ == '__main__':
  app.run(main)

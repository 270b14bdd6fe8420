"""Training throughput of the character LSTM (shakespeare_lstm), and of PyTorch's on the same.

  python -m experiments.benchmarks.lstm_throughput [--data_dir=../shared/data/tinyshakespeare]

Times the engine's jitted train step of experiments/configs/shakespeare_lstm.py (Adam,
clipping, state carried across windows) on real batches already on the device, and
prints training tokens/s = batch_size * seq_len / step time. Where PyTorch is installed
it also times the same model and step with torch.nn.LSTM: embedding, the LSTM stack,
a linear output layer, cross-entropy, backward, clip_grad_norm_, Adam, the state carried
and detached between windows; and prints the ratio ours / PyTorch's. The two alternate
(repetition r of one, then of the other), so a machine whose load changes slows both
alike. PyTorch is never a dependency of the project: install a CPU-only build into the
environment to compare (a `+cpu` wheel, about 190 MB; the plain Linux wheel brings CUDA
libraries of several GB). Ends with one JSON line of the figures.
"""

import json
import os
import pathlib

import jax
import numpy as np
from absl import app, flags, logging

from experiments.benchmarks import timing
from experiments.configs import shakespeare_lstm
from train import loop

flags.DEFINE_string('data_dir', '../shared/data/tinyshakespeare', 'Folder of input.txt.')
flags.DEFINE_integer('steps', 5, 'Timed steps per repetition.')
flags.DEFINE_integer('repeats', 3, 'Repetitions; the median is reported.')
flags.DEFINE_integer('hidden_size', None, 'Overrides config.model.hidden_size.')
flags.DEFINE_integer('num_layers', None, 'Overrides config.model.num_layers.')
flags.DEFINE_integer('batch_size', None, 'Overrides config.batch_size.')
flags.DEFINE_integer('seq_len', None, 'Overrides config.data.seq_len.')
FLAGS = flags.FLAGS


def benchmark_config():
  config = shakespeare_lstm.get_config()
  config.update(data_dir=FLAGS.data_dir, progress_bar=False)
  config.samples.length = 0
  overrides = {'hidden_size': FLAGS.hidden_size, 'num_layers': FLAGS.num_layers}
  config.model.update({k: v for k, v in overrides.items() if v is not None})
  if FLAGS.batch_size:
    config.batch_size = config.eval_batch_size = FLAGS.batch_size
  if FLAGS.seq_len:
    config.data.seq_len = FLAGS.seq_len
  return config


def jax_runner(exp, batches):
  """A function that runs the engine's train step once per batch."""
  train_step, _ = loop.compile_steps(exp, exp.state)
  placed = [exp.par.place_batch(b, exp.config.batch_size) for b in batches]
  holder = {'state': exp.state}

  def run():
    for batch in placed:
      holder['state'], sums = train_step(holder['state'], batch)
    jax.block_until_ready(sums)
  return run


def torch_runner(config, batches, vocab_size):
  """The same model and step in PyTorch, or None where PyTorch is not installed."""
  try:
    import torch
  except ImportError:
    return None
  m, o = config.model, config.optimizer

  class CharLSTM(torch.nn.Module):

    def __init__(self):
      super().__init__()
      self.embed = torch.nn.Embedding(vocab_size, m.embed_dim)
      self.lstm = torch.nn.LSTM(m.embed_dim, m.hidden_size, m.num_layers, batch_first=True,
                                dropout=m.dropout_rate if m.num_layers > 1 else 0.0)
      self.drop = torch.nn.Dropout(m.dropout_rate)
      self.output = torch.nn.Linear(m.hidden_size, vocab_size)

    def forward(self, tokens, state):
      h, state = self.lstm(self.drop(self.embed(tokens)), state)
      return self.output(self.drop(h)), state

  torch.manual_seed(0)
  model = CharLSTM()
  adam = torch.optim.Adam(model.parameters(), lr=o.learning_rate, betas=(o.b1, o.b2),
                          eps=o.eps)
  data = [(torch.from_numpy(np.asarray(b['inputs'], np.int64)),
           torch.from_numpy(np.asarray(b['targets'], np.int64))) for b in batches]
  holder = {'state': None}

  def run():
    for inputs, targets in data:
      adam.zero_grad()
      logits, state = model(inputs, holder['state'])
      holder['state'] = tuple(s.detach() for s in state)  # truncated BPTT
      loss = torch.nn.functional.cross_entropy(logits.reshape(-1, vocab_size),
                                               targets.reshape(-1))
      loss.backward()
      torch.nn.utils.clip_grad_norm_(model.parameters(), o.clip_global_norm)
      adam.step()
  return run


def main(argv):
  del argv
  logging.set_verbosity(logging.WARNING)
  if not pathlib.Path(FLAGS.data_dir, 'input.txt').is_file():
    raise SystemExit(f'--data_dir={FLAGS.data_dir} does not hold input.txt (Tiny Shakespeare).')
  config = benchmark_config()
  exp = loop.build(config, jax.devices()[:1])
  batches = [next(exp.train_iter) for _ in range(FLAGS.steps)]
  runners = {'jax': jax_runner(exp, batches),
             'torch': torch_runner(config, batches, exp.splits.info['vocab_size'])}
  runners = {k: v for k, v in runners.items() if v is not None}
  tokens = config.batch_size * config.data.seq_len
  figures = {name: {'step_ms': 1e3 * seconds / FLAGS.steps,
                    'tokens_per_sec': tokens * FLAGS.steps / seconds}
             for name, seconds in timing.alternate(runners, FLAGS.repeats).items()}
  m = config.model
  device = jax.devices()[0]
  print(f'\nCharacter LSTM training throughput: {m.num_layers} x {m.cell} {m.hidden_size}, '
        f'batch {config.batch_size} x {config.data.seq_len} tokens, on {os.cpu_count()} CPU '
        f'cores ({device.platform}); median of {FLAGS.repeats} x {FLAGS.steps} steps, '
        f'load average {os.getloadavg()[0]:.1f}')
  print(f'{"framework":<12}{"step ms":>10}{"tokens/s":>12}')
  for name, f in figures.items():
    print(f'{name:<12}{f["step_ms"]:>10.1f}{f["tokens_per_sec"]:>12.0f}')
  ratio = None
  if 'torch' in figures:
    import torch
    ratio = figures['jax']['tokens_per_sec'] / figures['torch']['tokens_per_sec']
    print(f'ours / PyTorch {torch.__version__} ({torch.get_num_threads()} threads): '
          f'{ratio:.2f}x')
  else:
    print('PyTorch is not installed: no comparison.')
  print(json.dumps({'benchmark': 'lstm_throughput', 'platform': device.platform,
                    'hidden_size': m.hidden_size, 'num_layers': m.num_layers,
                    'batch_size': config.batch_size, 'seq_len': config.data.seq_len,
                    **figures, 'ratio_to_torch': ratio}))


if __name__ == '__main__':
  app.run(main)

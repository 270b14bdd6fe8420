"""Training speed of GPT and BERT: tokens/s, step time, FLOP/s, MFU and compile time.

  python -m experiments.benchmarks.transformer_speed                 # 2 CPU cores
  python -m experiments.benchmarks.transformer_speed --preset=gpt2 --dtype=bfloat16  # a GPU

Each model is trained by the engine's own train step, built as train/loop.py builds it
(the task's loss, AdamW, global-norm clipping, one jit over the mesh, the state donated),
on random token batches of its configuration's shape. Presets:

  cpu   GPT: nanoGPT's CPU configuration (experiments/configs/shakespeare_gpt.py: 4 layers,
        4 heads, width 128, context 64, batch 12, 65 characters); BERT: the pre-training
        configuration (experiments/configs/bert_pretrain.py: 4 layers, width 128, 64
        pieces, batch 32, vocabulary 8,000, 10 masked positions a sequence).
  gpt2  GPT: GPT-2 small (124M parameters: 12 layers, 12 heads, width 768, context 1,024,
        vocabulary 50,257), batch 16; BERT: BERT-base (12 layers, width 768, 128 pieces,
        vocabulary 30,522, 20 masked positions), batch 64.

Figures, per model:
  tokens/s     batch x context / median step time.
  FLOP/s       training FLOPs per step / step time. FLOPs are counted analytically, as
               3 x the forward pass's (the backward pass costs twice the forward): 2 per
               multiply-add of every weight matrix for each token (the tied output layer
               included), plus the attention's Q K^T and A V, 4 T D per token and layer
               (the full T x T square, which is what is computed). XLA's own count of the
               compiled step is printed beside it.
  MFU          FLOP/s / (peak x devices). On a CPU (one device) the peak is measured: a 4,096^2 float32 matrix
               product on the same cores, so MFU says how close the step comes to the
               machine's best matmul. On a GPU or TPU it is the published dense bfloat16
               peak of the device (PEAK_TFLOPS), or --peak_tflops.
  compile      seconds to lower and compile the train step.
Then GPT's compile time at 2 and 12 layers, as a loop of blocks and with scan_layers
(nets/scale.py), and where PyTorch is installed the same GPT in PyTorch (nanoGPT's model:
pre-norm blocks, fused qkv, GELU, tied embeddings, scaled_dot_product_attention; AdamW
and clipping), timed in alternation with ours on the same batches. Ends with one JSON line.
"""

import json
import os
import time

import jax
import jax.numpy as jnp
import numpy as np
from absl import app, flags, logging

from experiments.benchmarks import timing
from experiments.configs import bert_pretrain, shakespeare_gpt
from train import loop, parallel, steps, tasks
from train import state as state_lib

flags.DEFINE_enum('preset', 'cpu', ['cpu', 'gpt2'], 'Model sizes (module docstring).')
flags.DEFINE_enum('dtype', 'float32', ['float32', 'bfloat16'], 'Computation dtype.')
flags.DEFINE_enum('remat', 'none', ['none', 'full', 'dots'], 'Rematerialisation policy.')
flags.DEFINE_bool('scan_layers', False, 'Scan over the blocks in the throughput runs.')
flags.DEFINE_list('models', ['gpt', 'bert'], 'Which models to time.')
flags.DEFINE_integer('batch_size', None, "Overrides the preset's batch size.")
flags.DEFINE_integer('steps', 10, 'Timed steps per repetition.')
flags.DEFINE_integer('repeats', 3, 'Repetitions; the median is reported.')
flags.DEFINE_float('peak_tflops', None, 'Peak TFLOP/s for MFU (default: see docstring).')
flags.DEFINE_bool('compile_times', True, "Time GPT's compilation at 2 and 12 layers.")
FLAGS = flags.FLAGS

# Published dense bfloat16 peaks, TFLOP/s, by a substring of jax's device_kind.
PEAK_TFLOPS = {'H200': 989.0, 'H100': 989.0, 'A100': 312.0, 'L4': 121.0,
               'TPU v6': 918.0, 'TPU v5p': 459.0, 'TPU v5': 197.0, 'TPU v4': 275.0}

PRESETS = {
    'cpu': {'gpt': dict(model=dict(num_layers=4, num_heads=4, model_dim=128), seq_len=64,
                        vocab_size=65, batch_size=12),
            'bert': dict(model=dict(num_layers=4, num_heads=4, model_dim=128, max_len=128),
                         seq_len=64, vocab_size=8000, batch_size=32, predictions=10)},
    'gpt2': {'gpt': dict(model=dict(num_layers=12, num_heads=12, model_dim=768,
                                    norm_epsilon=1e-5), seq_len=1024, vocab_size=50257,
                         batch_size=16),
             'bert': dict(model=dict(num_layers=12, num_heads=12, model_dim=768, max_len=512),
                          seq_len=128, vocab_size=30522, batch_size=64, predictions=20)},
}


def experiment_config(name: str, preset: dict, num_layers: int | None = None,
                      scan_layers: bool = False):
  """The experiment's config with the preset's sizes and this run's dtype and remat."""
  config = (shakespeare_gpt if name == 'gpt' else bert_pretrain).get_config()
  config.model.update(preset['model'], dtype=FLAGS.dtype, remat=FLAGS.remat,
                      scan_layers=scan_layers, dropout_rate=0.0)
  if num_layers:
    config.model.num_layers = num_layers
  config.batch_size = FLAGS.batch_size or preset['batch_size']
  return config


def random_batch(name: str, preset: dict, batch_size: int) -> tuple[dict, dict]:
  """(batch, dataset info) of random tokens, shaped as the data pipeline's."""
  rng = np.random.default_rng(0)
  b, t, v = batch_size, preset['seq_len'], preset['vocab_size']
  tokens = lambda *shape: rng.integers(5, v, shape).astype(np.int32)
  if name == 'gpt':
    batch = {'inputs': tokens(b, t), 'targets': tokens(b, t), 'mask': np.ones((b, t), np.float32)}
    return batch, {'vocab_size': v, 'seq_len': t}
  p = preset['predictions']
  batch = {'inputs': tokens(b, t), 'segments': (np.arange(t) >= t // 2)[None].repeat(b, 0)
           .astype(np.int32), 'mlm_positions': np.sort(rng.permutation(t)[:p])[None]
           .repeat(b, 0).astype(np.int32), 'mlm_targets': tokens(b, p),
           'mlm_weights': np.ones((b, p), np.float32),
           'pair_label': rng.integers(0, 2, b).astype(np.int32), 'mask': np.ones(b, np.float32)}
  return batch, {'vocab_size': v, 'pair_task': 'nsp'}


def engine_step(config, info: dict, batch: dict, devices=None):
  """(state, compiled train step, placed batch, compile seconds), built as loop.build and
  loop.compile_steps build them, over `devices` (default: all)."""
  par = parallel.create(config, devices)
  task = tasks.create(config, info)
  model = loop.create_model(config, task, info, par.mode)
  state = loop.initial_state(config, par, task, model, batch, config.num_steps)
  step = par.compile(steps.make_train_step(task, config, None), state, True)
  placed = par.place_batch(batch, config.batch_size)
  start = time.perf_counter()
  compiled = step.lower(state, placed).compile()
  return state, compiled, placed, time.perf_counter() - start


def training_flops(name: str, config, preset: dict) -> float:
  """Analytic FLOPs of one training step (module docstring)."""
  m = config.model
  d, layers, t, v = m.model_dim, m.num_layers, preset['seq_len'], preset['vocab_size']
  f = m.get('mlp_dim') or 4 * d
  block_weights = 4 * d * d + 2 * d * f  # q, k, v, out; the feed-forward network
  attention_per_token = 4 * t * d
  per_sequence = t * layers * (2 * block_weights + attention_per_token)
  if name == 'gpt':
    per_sequence += t * 2 * v * d  # the tied output layer
  else:  # the masked-LM head at P positions, the pooler and the pair head
    per_sequence += 2 * preset['predictions'] * (d * d + v * d) + 2 * (d * d + 2 * d)
  return 3.0 * config.batch_size * per_sequence


def peak_flops() -> tuple[float, str]:
  """(peak FLOP/s, where it comes from) for MFU."""
  if FLAGS.peak_tflops:
    return FLAGS.peak_tflops * 1e12, '--peak_tflops'
  device = jax.devices()[0]
  if device.platform == 'cpu':
    n = 4096
    a = jnp.asarray(np.random.default_rng(0).normal(size=(n, n)), jnp.float32)
    matmul = jax.jit(lambda x: x @ x)
    seconds = timing.median_seconds(lambda: matmul(a).block_until_ready(), 5)
    return 2 * n ** 3 / seconds, f'measured {n}^2 float32 matmul'
  for kind, tflops in PEAK_TFLOPS.items():
    if kind in device.device_kind:
      return tflops * 1e12, f'published bfloat16 peak of {device.device_kind}'
  raise SystemExit(f'No published peak for {device.device_kind}; pass --peak_tflops.')


def xla_flops(compiled, num_devices: int) -> float | None:
  """XLA's FLOP count of the step on all devices (it counts one device's program)."""
  analysis = compiled.cost_analysis()
  analysis = analysis[0] if isinstance(analysis, (list, tuple)) else analysis
  flops = (analysis or {}).get('flops')
  return flops and flops * num_devices


def runner(compiled, state, batch):
  holder = {'state': state}

  def run():
    for _ in range(FLAGS.steps):
      holder['state'], sums = compiled(holder['state'], batch)
    jax.block_until_ready(sums)
  return run


def torch_gpt_runner(config, preset: dict, batch: dict):
  """nanoGPT's GPT and training step in PyTorch, or None where PyTorch is absent."""
  try:
    import torch
  except ImportError:
    return None
  nn, F = torch.nn, torch.nn.functional
  m, o = config.model, config.optimizer
  d, heads, t, v = m.model_dim, m.num_heads, preset['seq_len'], preset['vocab_size']

  class Block(nn.Module):

    def __init__(self):
      super().__init__()
      self.ln_1, self.ln_2 = nn.LayerNorm(d), nn.LayerNorm(d)
      self.qkv, self.proj = nn.Linear(d, 3 * d), nn.Linear(d, d)
      self.fc, self.fc_proj = nn.Linear(d, 4 * d), nn.Linear(4 * d, d)

    def forward(self, x):
      b = x.shape[0]
      q, k, w = (z.view(b, t, heads, d // heads).transpose(1, 2)
                 for z in self.qkv(self.ln_1(x)).split(d, dim=2))
      y = F.scaled_dot_product_attention(q, k, w, is_causal=True)
      x = x + self.proj(y.transpose(1, 2).reshape(b, t, d))
      return x + self.fc_proj(F.gelu(self.fc(self.ln_2(x)), approximate='tanh'))

  class GPT(nn.Module):

    def __init__(self):
      super().__init__()
      self.wte, self.wpe = nn.Embedding(v, d), nn.Embedding(t, d)
      self.blocks = nn.ModuleList(Block() for _ in range(m.num_layers))
      self.ln_f = nn.LayerNorm(d)

    def forward(self, tokens):
      x = self.wte(tokens) + self.wpe(torch.arange(t))
      for block in self.blocks:
        x = block(x)
      return self.ln_f(x) @ self.wte.weight.T  # tied

  torch.manual_seed(0)
  model = GPT()
  adamw = torch.optim.AdamW(model.parameters(), lr=o.learning_rate, betas=(o.b1, o.b2),
                            weight_decay=o.weight_decay)
  inputs = torch.from_numpy(batch['inputs'].astype(np.int64))
  targets = torch.from_numpy(batch['targets'].astype(np.int64))

  def run():
    for _ in range(FLAGS.steps):
      adamw.zero_grad(set_to_none=True)
      loss = F.cross_entropy(model(inputs).view(-1, v), targets.view(-1))
      loss.backward()
      torch.nn.utils.clip_grad_norm_(model.parameters(), o.clip_global_norm)
      adamw.step()
  return run


def main(argv):
  del argv
  logging.set_verbosity(logging.WARNING)
  device = jax.devices()[0]
  peak, peak_source = peak_flops()
  print(f'{len(jax.devices())} x {device.device_kind} ({device.platform}), {os.cpu_count()} '
        f'CPU cores, load {os.getloadavg()[0]:.1f}; dtype {FLAGS.dtype}, remat {FLAGS.remat}, '
        f'scan_layers {FLAGS.scan_layers}; peak {peak / 1e12:.3f} TFLOP/s ({peak_source})')
  results, torch_ratio = {}, None
  print(f'{"model":<6}{"params":>12}{"batch":>7}{"step ms":>10}{"tokens/s":>12}'
        f'{"TFLOP/s":>9}{"MFU":>7}{"XLA/ours":>9}{"compile s":>10}')
  for name in FLAGS.models:
    preset = PRESETS[FLAGS.preset][name]
    config = experiment_config(name, preset, scan_layers=FLAGS.scan_layers)
    batch, info = random_batch(name, preset, config.batch_size)
    state, compiled, placed, compile_s = engine_step(config, info, batch)
    runners = {'ours': runner(compiled, state, placed)}
    if name == 'gpt' and FLAGS.dtype == 'float32':
      torch_run = torch_gpt_runner(config, preset, batch)
      if torch_run is not None:
        runners['torch'] = torch_run
    seconds = {k: s / FLAGS.steps for k, s in timing.alternate(runners, FLAGS.repeats).items()}
    flops = training_flops(name, config, preset)
    counted = xla_flops(compiled, len(jax.devices()))
    total_peak = peak * len(jax.devices())
    r = {'params': state_lib.parameter_count(state.params), 'batch_size': config.batch_size,
         'seq_len': preset['seq_len'], 'step_ms': 1e3 * seconds['ours'],
         'tokens_per_sec': config.batch_size * preset['seq_len'] / seconds['ours'],
         'tflops': flops / seconds['ours'] / 1e12, 'mfu': flops / seconds['ours'] / total_peak,
         'xla_flops_ratio': counted / flops if counted else None, 'compile_s': compile_s}
    results[name] = r
    print(f'{name:<6}{r["params"]:>12,}{r["batch_size"]:>7}{r["step_ms"]:>10.1f}'
          f'{r["tokens_per_sec"]:>12,.0f}{r["tflops"]:>9.3f}{r["mfu"]:>7.1%}'
          f'{r["xla_flops_ratio"] or float("nan"):>9.2f}{compile_s:>10.1f}')
    if 'torch' in seconds:
      import torch
      torch_ratio = seconds['torch'] / seconds['ours']
      r['torch_step_ms'] = 1e3 * seconds['torch']
      print(f'       PyTorch {torch.__version__} ({torch.get_num_threads()} threads): '
            f'{r["torch_step_ms"]:.1f} ms a step; ours / PyTorch {torch_ratio:.2f}x tokens/s')
    del state, compiled, placed
  compile_s = {}
  if FLAGS.compile_times:
    preset = PRESETS[FLAGS.preset]['gpt']
    for scan in (False, True):
      kind = 'scan' if scan else 'loop'
      for layers in (2, 12):
        config = experiment_config('gpt', preset, layers, scan_layers=scan)
        batch, info = random_batch('gpt', preset, config.batch_size)
        compile_s[f'{kind}_{layers}'] = engine_step(config, info, batch)[3]
      two, twelve = compile_s[f'{kind}_2'], compile_s[f'{kind}_12']
      print(f'GPT compile time, {kind}: 2 layers {two:.1f} s, 12 layers {twelve:.1f} s; '
            f'12 / 2 = {twelve / two:.2f}x')
  print(json.dumps({'benchmark': 'transformer_speed', 'device': device.device_kind,
                    'preset': FLAGS.preset, 'dtype': FLAGS.dtype, 'remat': FLAGS.remat,
                    'scan_layers': FLAGS.scan_layers, 'peak_tflops': peak / 1e12,
                    **results, 'ratio_to_torch': torch_ratio, 'compile_s': compile_s}))


if __name__ == '__main__':
  app.run(main)

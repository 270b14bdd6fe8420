"""Tokens/s of the language-model input pipeline against the cheapest possible LM step.

Data must never limit training: the pipeline has to hand out tokens at least 20x faster
than the fastest training step in the project consumes them. No language model exists
yet, so the step timed here is cheaper than any real one: a bigram model (the logits of
a token are its row of a VxV table), softmax cross-entropy and an SGD update, jitted,
on the same batch shape and vocabulary. The pipeline side is the engine's view:
`next()` on the resumable training iterator of the registered dataset (shuffled packed
windows and the token mask); the one-off build (prepare, tokenize) is shown apart.

Command:  python -m experiments.benchmarks.text_pipeline
Expected: ratio >= 20 on every row. The smallest batch (12x64, nanoGPT's CPU config) is
          the tightest: 24-36x on 2 CPU cores, where the step is mostly dispatch time.
Reads ../shared/data; where it is absent, a random token stream of the same vocabulary
stands in for the corpus.
"""

import json
import pathlib
import tempfile
import time

import jax
import jax.numpy as jnp
import numpy as np
from ml_collections import ConfigDict

from train.data import registry
from train.data.text_pipeline import lm_source

SHARED_DATA = pathlib.Path(__file__).resolve().parents[3] / 'shared' / 'data'
# (dataset, folder under ../shared/data, config.data, batch size)
CASES = [
    ('tiny_shakespeare', 'tinyshakespeare', {'seq_len': 64}, 12),
    ('tiny_shakespeare', 'tinyshakespeare', {'seq_len': 256}, 64),
    ('text_corpus', 'wiki/enwiki-text.txt',
     {'seq_len': 256, 'tokenizer': 'sentencepiece', 'vocab_size': 2000}, 16),
]
MIN_SECONDS = 1.0


def _timed(fn, min_seconds=MIN_SECONDS) -> float:
  """Calls per second of `fn`, over at least `min_seconds` and 10 calls."""
  calls, start = 0, time.perf_counter()
  while calls < 10 or time.perf_counter() - start < min_seconds:
    fn()
    calls += 1
  return calls / (time.perf_counter() - start)


def _source(dataset, folder, data, tfds_dir):
  """The train source and vocabulary size: the real dataset, or a random stand-in."""
  if SHARED_DATA.is_dir():
    config = ConfigDict({'dataset': dataset, 'data_dir': str(SHARED_DATA / folder),
                         'tfds_data_dir': tfds_dir, 'data': data})
    splits = registry.build(config)
    return splits.train, splits.info['vocab_size'], 'shared data'
  vocab_size = data.get('vocab_size', 72)
  stream = np.random.default_rng(0).integers(7, vocab_size, 1_000_000).astype(np.int32)
  return lm_source(stream, data['seq_len'], 'train'), vocab_size, 'random stand-in'


def _bigram_step_rate(vocab_size: int, batch: dict) -> float:
  """Steps/s of the jitted bigram-model SGD step on `batch` (already on the device)."""

  def loss_fn(table_VxV, inputs_BxL, targets_BxL, mask_BxL):
    logp_BxLxV = jax.nn.log_softmax(table_VxV[inputs_BxL])
    nll_BxL = -jnp.take_along_axis(logp_BxLxV, targets_BxL[..., None], axis=-1)[..., 0]
    return (nll_BxL * mask_BxL).sum() / mask_BxL.sum()

  @jax.jit
  def step(table_VxV, inputs_BxL, targets_BxL, mask_BxL):
    loss, grad_VxV = jax.value_and_grad(loss_fn)(table_VxV, inputs_BxL, targets_BxL,
                                                 mask_BxL)
    return table_VxV - 0.1 * grad_VxV, loss

  args = [jax.device_put(batch[k]) for k in ('inputs', 'targets', 'mask')]
  table = [jnp.zeros((vocab_size, vocab_size), jnp.float32)]

  def run():
    table[0], loss = step(table[0], *args)
    loss.block_until_ready()

  run()  # compile
  return _timed(run)


def main():
  rows = []
  with tempfile.TemporaryDirectory() as tfds_dir:
    for dataset, folder, data, batch_size in CASES:
      start = time.perf_counter()
      source, vocab_size, origin = _source(dataset, folder, data, tfds_dir)
      build_s = time.perf_counter() - start
      iterator = source.train_iterator(batch_size, seed=0)
      batch = next(iterator)
      tokens = batch['inputs'].size
      pipeline = _timed(lambda: next(iterator)) * tokens
      step = _bigram_step_rate(vocab_size, batch) * tokens
      rows.append({'dataset': dataset, 'data': origin, 'vocab_size': vocab_size,
                   'batch': f'{batch_size}x{data["seq_len"]}', 'build_s': round(build_s, 2),
                   'pipeline_tokens_per_s': round(pipeline),
                   'bigram_step_tokens_per_s': round(step),
                   'ratio': round(pipeline / step, 1)})
  print(f'JAX backend: {jax.default_backend()}')
  header = ('dataset', 'data', 'vocab', 'batch', 'build s', 'pipeline tok/s',
            'bigram step tok/s', 'ratio')
  print('{:<17}{:<16}{:>6}{:>9}{:>9}{:>16}{:>19}{:>8}'.format(*header))
  for r in rows:
    print(f'{r["dataset"]:<17}{r["data"]:<16}{r["vocab_size"]:>6}{r["batch"]:>9}'
          f'{r["build_s"]:>9.2f}{r["pipeline_tokens_per_s"]:>16,}'
          f'{r["bigram_step_tokens_per_s"]:>19,}{r["ratio"]:>8.1f}')
  print(json.dumps({'benchmark': 'text_pipeline', 'backend': jax.default_backend(),
                    'min_ratio': min(r['ratio'] for r in rows), 'rows': rows}))


if __name__ == '__main__':
  main()

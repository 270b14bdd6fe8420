"""word2vec here against gensim 4.4 on the same corpus, settings and evaluation.

  python -m experiments.benchmarks.word2vec_vs_gensim [--data_dir=../shared/data/wiki] \
      [--architectures=skipgram,cbow] [--seeds=3] [--workers=2]

Both train on enwiki-text.txt with dimension 100, window 5, 5 negatives, minimum count 5,
sub-sampling 1e-3 and 5 epochs (gensim with its own defaults otherwise: alpha 0.025 for
both architectures, its 10,000-word sentence cap honoured by cutting longer articles).
This side trains through the engine, `experiments/configs/wiki_word2vec.py`
(train_and_evaluate into a temporary workdir). Both sides' vectors are scored by the same
code (train/word2vec_eval.py): WordSim-353 and SimLex-999 Spearman, Google analogy
accuracy.

Speed is corpus words per second of training, 5 x 452,944 words over the training time:
gensim's `train()` call (vocabulary built before the clock starts), and the engine's own
step timing (the loop's step_time_ms, which leaves out compilation, checkpoints and the
evaluation). `total_s` is each side's whole wall time: reading the corpus, the
vocabulary, compilation, training, checkpoints and the final evaluation for this side;
reading, vocabulary and training for gensim.

Without gensim (`pip install gensim==4.4.0`, in requirements-test.txt) only this side
runs, and the comparison is skipped with that reason. Ends with one JSON line of the
figures; the timed run belongs under `flock /tmp/cpu.lock` on a shared machine.
"""

import json
import logging
import os
import statistics
import tempfile
import time

import jax
from absl import app, flags

from experiments.configs import wiki_word2vec
from train import loop, reporting, word2vec_eval
from train.data import word2vec_corpus

flags.DEFINE_string('data_dir', '../shared/data/wiki', 'Folder of the corpus and benchmarks.')
flags.DEFINE_list('architectures', ['skipgram', 'cbow'], 'skipgram and/or cbow.')
flags.DEFINE_integer('seeds', 3, 'Seeds per side and architecture; means are compared.')
flags.DEFINE_integer('workers', 2, "gensim's worker threads.")
FLAGS = flags.FLAGS

MARGIN = 0.02  # this side may trail gensim's quality by at most this much


def ours(architecture: str, seed: int, workdir: str, facts: dict) -> dict:
  config = wiki_word2vec.get_config(architecture)
  config.data_dir = FLAGS.data_dir
  config.seed = seed
  config.progress_bar = False
  start = time.perf_counter()
  _, test = loop.train_and_evaluate(config, workdir)
  total = time.perf_counter() - start
  steps_done, seconds = 0, 0.0
  for record in reporting.read_metrics(workdir):  # each logged window: its step time
    if record['split'] == 'train':
      seconds += record['step_time_ms'] / 1e3 * (record['step'] - steps_done)
      steps_done = record['step']
  epochs = steps_done * config.batch_size / facts['chunks_per_epoch']
  return {'train_s': seconds, 'total_s': total, 'epochs': epochs,
          'words_per_s': epochs * facts['corpus_words'] / seconds,
          **{k: test[k] for k in ('wordsim353', 'simlex999', 'analogy')}}


def gensim_side(architecture: str, seed: int, benchmarks) -> dict:
  from gensim.models import Word2Vec  # pylint: disable=import-outside-toplevel
  start = time.perf_counter()
  path = os.path.join(FLAGS.data_dir, 'enwiki-text.txt')
  with open(path, encoding='utf-8') as f:
    articles = [line.split() for line in f]
  sentences = [a[i:i + 10_000] for a in articles for i in range(0, len(a), 10_000)]
  words = sum(len(s) for s in sentences)
  model = Word2Vec(vector_size=100, window=5, negative=5, hs=0, min_count=5, sample=1e-3,
                   sg=int(architecture == 'skipgram'), workers=FLAGS.workers, seed=seed)
  model.build_vocab(sentences)
  clock = time.perf_counter()
  model.train(sentences, total_examples=len(sentences), epochs=5)
  seconds = time.perf_counter() - clock
  total = time.perf_counter() - start
  scores = word2vec_eval.evaluate(model.wv.vectors, list(model.wv.index_to_key), benchmarks)
  return {'train_s': seconds, 'total_s': total, 'epochs': 5.0,
          'words_per_s': 5 * words / seconds,
          **{k: scores[k] for k in ('wordsim353', 'simlex999', 'analogy')}}


def main(argv):
  del argv
  logging.getLogger('gensim').setLevel(logging.WARNING)  # its per-epoch progress lines
  try:
    import gensim  # pylint: disable=import-outside-toplevel
    skipped = None
    print(f'gensim {gensim.__version__}, {FLAGS.workers} workers; JAX '
          f'{jax.__version__} on {jax.default_backend()}; {os.cpu_count()} CPUs.')
  except ImportError:
    gensim, skipped = None, 'gensim is not installed (pip install gensim==4.4.0)'
    print(f'Skipping the gensim side: {skipped}.')
  config = wiki_word2vec.get_config()
  config.data_dir = FLAGS.data_dir
  benchmarks = word2vec_eval.load_benchmarks(
      FLAGS.data_dir, **{k: config.data[k] for k in ('wordsim353', 'simlex999', 'analogy')})
  info = word2vec_corpus.word2vec_corpus(config).info
  facts = {k: info[k] for k in ('chunks_per_epoch', 'corpus_words')}
  rows = []
  with tempfile.TemporaryDirectory() as root:
    for architecture in FLAGS.architectures:
      for seed in range(FLAGS.seeds):
        sides = [('jax', lambda: ours(architecture, seed,
                                      os.path.join(root, f'{architecture}_{seed}'), facts))]
        if gensim is not None:
          sides.append(('gensim', lambda: gensim_side(architecture, seed, benchmarks)))
        for side, run in sides:
          rows.append({'architecture': architecture, 'side': side, 'seed': seed, **run()})
  header = ('architecture', 'side', 'seed', 'train s', 'total s', 'words/s', 'wordsim353',
            'simlex999', 'analogy')
  print('{:<13}{:<8}{:>5}{:>9}{:>9}{:>11}{:>12}{:>11}{:>9}'.format(*header))
  for r in rows:
    print(f'{r["architecture"]:<13}{r["side"]:<8}{r["seed"]:>5}{r["train_s"]:>9.2f}'
          f'{r["total_s"]:>9.1f}{r["words_per_s"]:>11,.0f}{r["wordsim353"]:>12.4f}'
          f'{r["simlex999"]:>11.4f}{r["analogy"]:>9.4f}')
  summary = {}
  for architecture in FLAGS.architectures:
    for side in ('jax', 'gensim'):
      mine = [r for r in rows if r['architecture'] == architecture and r['side'] == side]
      if mine:
        summary[f'{architecture}_{side}'] = {
            k: statistics.mean(r[k] for r in mine)
            for k in ('words_per_s', 'train_s', 'total_s', 'wordsim353', 'simlex999',
                      'analogy')}
    if gensim is not None:
      jax_side, gensim_mean = summary[f'{architecture}_jax'], summary[f'{architecture}_gensim']
      checks = {
          'wordsim353': jax_side['wordsim353'] >= gensim_mean['wordsim353'] - MARGIN,
          'analogy': jax_side['analogy'] >= gensim_mean['analogy'] - MARGIN,
          'speed': jax_side['words_per_s'] >= gensim_mean['words_per_s']}
      summary[f'{architecture}_checks'] = checks
      print(f'{architecture} (means over {FLAGS.seeds} seeds): ' + ', '.join(
          f'{k} {"met" if ok else "MISSED"}' for k, ok in checks.items())
            + f'; words/s {jax_side["words_per_s"]:,.0f} vs gensim '
              f'{gensim_mean["words_per_s"]:,.0f}; wordsim353 {jax_side["wordsim353"]:.4f} vs '
              f'{gensim_mean["wordsim353"]:.4f}; analogy {jax_side["analogy"]:.4f} vs '
              f'{gensim_mean["analogy"]:.4f}.')
  print(json.dumps({'benchmark': 'word2vec_vs_gensim', 'backend': jax.default_backend(),
                    'gensim_skipped': skipped, 'seeds': FLAGS.seeds, 'summary': summary,
                    'runs': rows}))


if __name__ == '__main__':
  app.run(main)

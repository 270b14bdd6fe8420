"""Tools for a trained word2vec run: neighbours, evaluation, export, a PCA plot.

  python -m experiments.word2vec neighbours --workdir=W --words=king,paris [--k=10]
  python -m experiments.word2vec evaluate --workdir=W
  python -m experiments.word2vec export --workdir=W [--out=W/vectors.txt] [--format=text]
  python -m experiments.word2vec plot --workdir=W [--words=a,b,...] [--out=W/pca.png]

The run is restored like experiments.evaluate does (--step, --data_dir). `neighbours`
prints the --k words of highest cosine similarity to each word; `evaluate` the
WordSim-353 and SimLex-999 Spearman correlations and the analogy accuracy (appended to
W/metrics.jsonl with "source": "evaluate"); `export` writes the word vectors in
word2vec.c's text format (first line "V D", then "word v_1 ... v_D") or its binary
format (--format=binary, default name W/vectors.bin), which gensim's
KeyedVectors.load_word2vec_format and every word2vec reader load; `plot` draws the
chosen words on the first two principal components of their vectors.
"""

import pathlib

import jax
import numpy as np
from absl import app, flags

from experiments import evaluate
from train import word2vec_eval
from train.errors import UserError

FLAGS = flags.FLAGS
COMMANDS = ('neighbours', 'evaluate', 'export', 'plot')
# Countries and capitals, numbers, family, months: groups the PCA plot should separate.
PLOT_WORDS = ('france,paris,germany,berlin,italy,rome,spain,madrid,japan,tokyo,'
              'one,two,three,four,five,six,man,woman,king,queen,father,mother,son,'
              'daughter,january,february,march,april')


def load_vectors(workdir, step: int | None = None, data_dir: str | None = None,
                 devices=None):
  """(words, vectors [V, D] float32, the restored run) of checkpoint `step` of `workdir`."""
  run = evaluate.load_run(workdir, step, devices, data_dir)
  if run.exp.config.task != 'word2vec':
    raise UserError(f'--workdir={workdir} trained config.task={run.exp.config.task!r}, not '
                    'word2vec; pass the workdir of a word2vec run.')
  params = jax.device_get(run.exp.par.unreplicate(run.state).params)
  return run.exp.splits.info['words'], np.asarray(params['input_embedding'], np.float32), run


def neighbours(workdir, words, k: int = 10, step=None, data_dir=None, devices=None) -> dict:
  vocab, vectors, _ = load_vectors(workdir, step, data_dir, devices)
  return {w: word2vec_eval.nearest(vectors, vocab, w, k) for w in words}


def export(workdir, out=None, fmt: str = 'text', step=None, data_dir=None,
           devices=None) -> pathlib.Path:
  if fmt not in ('text', 'binary'):
    raise UserError(f'--format={fmt!r} must be text or binary.')
  vocab, vectors, run = load_vectors(workdir, step, data_dir, devices)
  out = pathlib.Path(out) if out else run.workdir / ('vectors.txt' if fmt == 'text'
                                                     else 'vectors.bin')
  out.parent.mkdir(parents=True, exist_ok=True)
  (word2vec_eval.save_text if fmt == 'text' else word2vec_eval.save_binary)(out, vocab, vectors)
  return out


def plot(workdir, words, out=None, step=None, data_dir=None,
         devices=None) -> tuple[pathlib.Path, list]:
  vocab, vectors, run = load_vectors(workdir, step, data_dir, devices)
  out = pathlib.Path(out) if out else run.workdir / 'pca.png'
  shown = word2vec_eval.pca_plot(out, vocab, vectors, words,
                                 f'{run.workdir.name}, step {run.step}: PCA of word vectors')
  return out, shown


def main(argv):
  if len(argv) != 2 or argv[1] not in COMMANDS:
    raise app.UsageError(f'Give one command: {" | ".join(COMMANDS)}.')
  command = argv[1]
  words = [w for w in (FLAGS.words or '').split(',') if w]
  run = dict(step=FLAGS.step, data_dir=FLAGS.data_dir)
  if command == 'neighbours':
    if not words:
      raise app.UsageError('neighbours needs --words=w1,w2,...')
    found = evaluate.cli(lambda: neighbours(FLAGS.workdir, words, FLAGS.k, **run))
    for word, near in found.items():
      print(f'{word}: ' + ', '.join(f'{w} {s:.3f}' for w, s in near))
  elif command == 'evaluate':
    record = evaluate.cli(lambda: evaluate.evaluate(FLAGS.workdir, FLAGS.step, 'test',
                                                    data_dir=FLAGS.data_dir))
    for key, value in record.items():
      print(f'{key:24s} {value}')
  elif command == 'export':
    out = evaluate.cli(lambda: export(FLAGS.workdir, FLAGS.out, FLAGS.format, **run))
    print(f'Wrote {out} (word2vec {FLAGS.format} format).')
  else:
    out, shown = evaluate.cli(lambda: plot(FLAGS.workdir, words or PLOT_WORDS.split(','),
                                           FLAGS.out, **run))
    print(f'Wrote {out} ({len(shown)} words).')


if __name__ == '__main__':
  evaluate.define_run_flags()
  flags.adopt_module_key_flags(evaluate)
  flags.DEFINE_string('words', None, 'Comma-separated words (neighbours, plot).')
  flags.DEFINE_integer('k', 10, 'Neighbours per word.')
  flags.DEFINE_string('out', None, 'File to write (export, plot); default in the workdir.')
  flags.DEFINE_enum('format', 'text', ['text', 'binary'], 'Export format.')
  app.run(main)

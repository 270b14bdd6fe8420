"""Contextual embeddings: one word in different sentences, compared by cosine similarity.

  python -m experiments.bert_contexts --workdir=W [--word=apple] [--sentences=S1 --sentences=S2 ...]
      [--out=W/contextual_similarity.png]

A word2vec vector is the same wherever a word occurs; a BERT vector is the word's hidden
state h_L at its position, so it depends on the sentence (the seeds: "apple" the fruit and
"apple" the company). The run in W (any run whose model is 'bert': pre-trained or fine-
tuned) is restored, each sentence is read as [CLS] sentence [SEP] with the run's tokenizer,
the word's vector is the mean of h_L over its pieces, and the heatmap shows

    cos(u, v) = u . v / (|u| |v|)

for every pair of sentences, beside the same for the input embeddings (the context-free
vectors, identical for every occurrence: cosine 1 everywhere). The default sentences give
the word two meanings, three sentences each; the table printed says how much closer the
vectors of one meaning are to each other than to the other meaning's.
"""

import pathlib

import jax.numpy as jnp
import numpy as np
from absl import app, flags

from experiments import evaluate
from experiments.science import common
from train.data import tokenizers
from train.errors import UserError

FLAGS = flags.FLAGS
SENTENCES = [  # the fruit, then the company (lower-cased, as the Wikipedia text is)
    'she ate an apple and a pear after lunch',
    'the apple tree in the garden was full of ripe fruit',
    'he cut the apple into slices and baked a pie',
    'apple released a new computer and the shares of the company rose',
    'the software company apple sells phones and laptops',
    'apple announced its profits to investors on wall street',
]


def word_vectors(run, word: str, sentences: list[str]) -> tuple[np.ndarray, np.ndarray]:
  """([S, D] contextual vectors of `word`, [S, D] its input embeddings), one per sentence."""
  config = run.exp.config
  if config.model.name != 'bert':
    raise UserError(f'{run.workdir} trained config.model.name={config.model.name!r}; '
                    'contextual embeddings need a BERT run.')
  tokenizer = run.exp.splits.info['tokenizer']
  model = run.exp.model.clone(head='none')  # the same encoder; apply() runs without dropout
  contextual, static = [], []
  for sentence in sentences:
    words = sentence.split()
    if word not in words:
      raise UserError(f'--word={word!r} is not a word of the sentence {sentence!r}.')
    pieces = [tokenizer.encode(w) for w in words]  # each word as it reads in a line
    start = 1 + sum(len(p) for p in pieces[:words.index(word)])
    span = slice(start, start + len(pieces[words.index(word)]))
    ids = np.concatenate([[tokenizers.CLS], *pieces, [tokenizers.SEP]]).astype(np.int32)
    hidden_TxD = model.apply({'params': run.state.params}, jnp.asarray(ids)[None])[0]
    contextual.append(np.asarray(hidden_TxD[span]).mean(0))
    table = run.state.params['encoder']['token_embed']['embedding']
    static.append(np.asarray(table[ids[span]]).mean(0))
  return np.stack(contextual), np.stack(static)


def cosine_matrix(vectors_SxD: np.ndarray) -> np.ndarray:
  unit = vectors_SxD / np.linalg.norm(vectors_SxD, axis=1, keepdims=True)
  return unit @ unit.T


def main(argv):
  del argv
  run = evaluate.load_run(FLAGS.workdir, FLAGS.step, data_dir=FLAGS.data_dir)
  sentences = FLAGS.sentences or SENTENCES
  contextual, static = word_vectors(run, FLAGS.word, sentences)
  fig, axes = common.figure(1, 2, figsize=(13, 5))
  labels = [s if len(s) < 40 else s[:37] + '...' for s in sentences]
  for ax, vectors, title in [(axes[0], contextual, 'BERT, last layer'),
                             (axes[1], static, 'input embedding (no context)')]:
    similarity = cosine_matrix(vectors)
    ax.imshow(similarity, vmin=-1, vmax=1, cmap='coolwarm')
    for (i, j), value in np.ndenumerate(similarity):
      ax.text(j, i, f'{value:.2f}', ha='center', va='center', fontsize=8)
    ax.set_xticks(range(len(labels)), range(1, len(labels) + 1))
    ax.set_yticks(range(len(labels)), [f'{i}: {t}' for i, t in enumerate(labels, 1)]
                  if ax is axes[0] else range(1, len(labels) + 1), fontsize=7)
    ax.set_title(f'cos of "{FLAGS.word}" vectors: {title}', fontsize=10)
  out = pathlib.Path(FLAGS.out or run.workdir / 'contextual_similarity.png')
  common.save(fig, out)
  similarity = cosine_matrix(contextual)
  half = len(sentences) // 2
  same = [similarity[i, j] for i in range(len(sentences)) for j in range(i)
          if (i < half) == (j < half)]
  other = [similarity[i, j] for i in range(half, len(sentences)) for j in range(half)]
  common.report('bert_contexts', [{'pairs': 'same meaning', 'mean_cosine': float(np.mean(same))},
                                  {'pairs': 'different', 'mean_cosine': float(np.mean(other))}],
                word=FLAGS.word, workdir=str(run.workdir), step=run.step)


if __name__ == '__main__':
  evaluate.define_run_flags()
  flags.DEFINE_string('word', 'apple', 'The word to compare across sentences.')
  flags.DEFINE_multi_string('sentences', None, 'Sentences holding the word (default: the '
                            'fruit and the company, three each; the table compares the '
                            'first half with the second).')
  flags.DEFINE_string('out', None, 'The PNG to write (default: W/contextual_similarity.png).')
  app.run(main)

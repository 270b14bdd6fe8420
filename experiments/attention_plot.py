"""Draws a trained Transformer's cross-attention for a few test sentences.

  python -m experiments.attention_plot --workdir=W [--num_sentences=3] [--layer=-1]
      [--out=W/cross_attention.png]

The run in W is restored (experiments/evaluate.py `load_run`), its first test sentences
are decoded as the run's config decodes them, and the model is run once more, teacher
forced on its own output, with the 'intermediates' collection mutable, so every decoder
block sows its cross-attention weights (nets/transformer.py). Each panel shows one
sentence: rows are the generated target pieces, columns the source pieces, a cell the
weight of that source piece for that target piece, averaged over the heads of one layer.
"""

import pathlib

import jax
import jax.numpy as jnp
import matplotlib

matplotlib.use('Agg')
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from absl import app, flags  # noqa: E402

from experiments import evaluate  # noqa: E402
from train import seq2seq_tasks  # noqa: E402
from train.errors import UserError  # noqa: E402

FLAGS = flags.FLAGS


def cross_attention(run, num_sentences: int, layer: int):
  """[(source pieces, target pieces, weights_TxS)] of the first test sentences."""
  task, state = run.exp.task, run.state
  if not isinstance(task, seq2seq_tasks.Seq2Seq) or isinstance(
      task, seq2seq_tasks.NonAutoregressiveSeq2Seq):
    raise UserError(f'{run.workdir} trained task {run.exp.config.task!r}; attention plots '
                    'need an autoregressive seq2seq run (config.task=seq2seq).')
  batch = next(run.exp.splits.test.eval_batches(num_sentences))
  inputs_BxS = jnp.asarray(batch['inputs'])
  decoded_BxT = task.decode(state, inputs_BxS, task.decoding['method'])
  _, sown = state.apply_fn(state.variables(), inputs_BxS,
                           seq2seq_tasks.shift_right(decoded_BxT, task.bos_id),
                           mutable=['intermediates'])
  blocks = sown['intermediates']['decoder']
  names = sorted(blocks, key=lambda name: int(name.split('_')[-1]))
  weights_BxNxTxS = blocks[names[layer]]['cross_attention_weights'][0]
  weights_BxTxS = np.asarray(jnp.mean(weights_BxNxTxS, axis=1))
  tokenizer = task.tokenizer
  special = {task.eos_id: '</s>', task.bos_id: '<s>'}
  piece = lambda i: special.get(int(i)) or tokenizer.decode([int(i)]) or f'<{int(i)}>'
  panels = []
  for b in range(inputs_BxS.shape[0]):
    source = [piece(i) for i in np.asarray(inputs_BxS[b]) if i != 0]
    target = [piece(i) for i in seq2seq_tasks.until_eos(np.asarray(decoded_BxT[b]),
                                                          task.eos_id)] + ['</s>']
    panels.append((source, target, weights_BxTxS[b, :len(target), :len(source)]))
  return panels


def plot(panels, title: str, path: pathlib.Path) -> None:
  fig, axes = plt.subplots(1, len(panels), figsize=(5.5 * len(panels), 5.5), squeeze=False)
  for ax, (source, target, weights) in zip(axes[0], panels):
    ax.imshow(weights, cmap='viridis', vmin=0.0, aspect='auto')
    ax.set_xticks(range(len(source)), source, rotation=70, fontsize=8)
    ax.set_yticks(range(len(target)), target, fontsize=8)
    ax.set_xlabel('source (German pieces)')
    ax.set_ylabel('output (English pieces)')
  fig.suptitle(title)
  fig.tight_layout()
  tmp = path.with_suffix('.tmp.png')
  fig.savefig(tmp, dpi=110)
  plt.close(fig)
  tmp.replace(path)


def main(argv):
  del argv
  run = evaluate.load_run(FLAGS.workdir, FLAGS.step, data_dir=FLAGS.data_dir)
  panels = cross_attention(run, FLAGS.num_sentences, FLAGS.layer)
  out = pathlib.Path(FLAGS.out or run.workdir / 'cross_attention.png')
  plot(panels, f'Cross-attention of decoder layer {FLAGS.layer}, heads averaged; '
       f'step {run.step} of {run.workdir.name}', out)
  print(f'wrote {out}')


if __name__ == '__main__':
  evaluate.define_run_flags()
  flags.DEFINE_integer('num_sentences', 3, 'How many test sentences to draw.')
  flags.DEFINE_integer('layer', -1, 'Which decoder layer (negative counts from the last).')
  flags.DEFINE_string('out', None, 'The PNG to write (default: W/cross_attention.png).')
  app.run(main)

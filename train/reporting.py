"""What a run writes to its workdir: metrics.jsonl, TensorBoard events, curves.png.

`metrics.jsonl` holds one JSON object per log: {"step": int, "split": "train" | "eval" |
"test", <metric>: value, ...}. TensorBoard events are written by tensorboardX (no
TensorFlow). On resume, logged records after the restored step are dropped (the resumed
run logs them again, identically) so the file never holds two histories.

In a bucket (a gs:// workdir), which cannot append, both are written on the local disk
and uploaded whole at every evaluation, before every checkpoint (so resuming loses
nothing) and at the end.
"""

import io
import json
import tempfile

import numpy as np
from etils import epath

from train import storage

SPLITS = ('train', 'eval', 'test')


def scalars(metrics: dict) -> dict:
  return {k: v for k, v in metrics.items() if isinstance(v, (int, float))}


def read_metrics(workdir) -> list[dict]:
  path = storage.path(workdir) / 'metrics.jsonl'
  if not path.exists():
    return []
  return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


class MetricWriter:
  """Appends to metrics.jsonl and TensorBoard; in a multi-host run only process 0 writes."""

  def __init__(self, workdir: epath.Path, start_step: int, enabled: bool = True):
    self.enabled = enabled
    if not enabled:
      return
    from tensorboardX import SummaryWriter  # imported here: it is slow to import
    self.path = workdir / 'metrics.jsonl'
    self.local = storage.is_local(workdir)
    # A finished run that is started again re-runs its test, so its old test line goes.
    kept = [r for r in read_metrics(workdir) if r['step'] < start_step
            or (r['step'] == start_step and r['split'] != 'test')]
    self.lines = [json.dumps(r) + '\n' for r in kept]
    if self.path.exists():
      storage.write_atomic(self.path, ''.join(self.lines))  # the old file or the new
    self.file = self.path.open('a') if self.local else None
    self.events = workdir / 'tensorboard'
    # Events for a bucket go to a local folder first, copied up at each flush: a resumed
    # run writes a new events file there, whose purge step hides the replayed steps.
    self.local_events = self.events if self.local else storage.path(tempfile.mkdtemp())
    self.tensorboard = SummaryWriter(str(self.local_events),
                                     purge_step=start_step + 1 if start_step else None)

  def write(self, step: int, split: str, metrics: dict) -> None:
    assert split in SPLITS, split
    if not self.enabled:
      return
    line = json.dumps({'step': int(step), 'split': split, **metrics}) + '\n'
    if self.local:
      self.file.write(line)
      self.file.flush()
    else:
      self.lines.append(line)
      if split != 'train':
        self.flush()
    for name, value in scalars(metrics).items():
      self.tensorboard.add_scalar(f'{split}/{name}', value, step)

  def flush(self) -> None:
    """Makes every record written so far durable (a bucket's files are uploaded whole)."""
    if self.enabled and not self.local:
      self.tensorboard.flush()
      self._upload()

  def _upload(self) -> None:
    storage.write_atomic(self.path, ''.join(self.lines))
    storage.copy_tree(self.local_events, self.events)

  def close(self) -> None:
    if not self.enabled:
      return
    self.tensorboard.close()
    if self.local:
      self.file.close()
    else:
      self._upload()
      self.local_events.rmtree()  # the bucket holds the events now


def plot_curves(workdir, title: str | None = None) -> epath.Path:
  """curves.png: the loss (log scale), accuracy-like metrics and the learning rate against
  step, train vs eval, the test result as a dashed line; written at every evaluation, so
  an interrupted run has one too."""
  import matplotlib
  matplotlib.use('Agg')
  import matplotlib.pyplot as plt

  records = read_metrics(workdir)
  names = [n for n in ('loss', 'accuracy', 'perplexity', 'f1', 'bleu', 'learning_rate')
           if any(n in r for r in records)]
  fig, axes = plt.subplots(1, len(names), figsize=(4.5 * len(names), 3.5), squeeze=False)
  for ax, name in zip(axes[0], names):
    for split, style in (('train', '-'), ('eval', 'o-')):
      points = [(r['step'], r[name]) for r in records if r['split'] == split and name in r]
      if points:
        ax.plot(*np.array(points).T, style, label=split, markersize=3)
    tests = [r for r in records if r['split'] == 'test' and name in r]
    if tests:
      ax.axhline(tests[-1][name], color='gray', ls='--',
                 label=f'test {tests[-1][name]:.4g}')
    if name in ('loss', 'perplexity') and all(
        r[name] > 0 for r in records if isinstance(r.get(name), (int, float))):
      ax.set_yscale('log')
    ax.set_xlabel('step')
    ax.set_title(name.replace('_', ' '))
    ax.legend()
  workdir = storage.path(workdir)
  fig.suptitle(title or workdir.name)
  fig.tight_layout()
  image = io.BytesIO()
  fig.savefig(image, format='png', dpi=100)
  plt.close(fig)
  path = workdir / 'curves.png'
  storage.write_atomic(path, image.getvalue())  # a reader never sees half a picture
  return path

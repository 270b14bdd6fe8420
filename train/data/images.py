"""Image classification data: MNIST from the TFDS catalog or from a local CSV.

Local: `data_dir` holds `mnist_5k.csv.gz` (784 pixel columns 0-255, then the label), split
deterministically and stratified: the first 800 rows of every class (after a seeded
shuffle) train, the remaining 200 test, which gives 4,000 / 1,000 for 500 per class.
Catalog: `tfds.data_source('mnist')` reads ArrayRecord files without TensorFlow.
Pixels are scaled to [0, 1] and shaped [28, 28, 1] either way.
"""

import gzip
import pathlib

import numpy as np
from ml_collections import ConfigDict

from train.data.pipeline import ArraySource, Splits
from train.data.registry import register
from train.errors import UserError

CSV_NAME = 'mnist_5k.csv.gz'
TRAIN_FRACTION = 0.8


def read_pixel_csv(path: pathlib.Path, image_shape=(28, 28, 1)) -> dict[str, np.ndarray]:
  """Rows of `pixels..., label`; a malformed row is reported with its line number."""
  num_pixels = int(np.prod(image_shape))
  rows = []
  with gzip.open(path, 'rt') if path.suffix == '.gz' else open(path) as f:
    for line_number, line in enumerate(f, start=1):
      fields = line.strip().split(',')
      if fields == ['']:
        continue
      if len(fields) != num_pixels + 1:
        raise UserError(f'{path}:{line_number}: expected {num_pixels} pixel columns and a '
                         f'label ({num_pixels + 1} fields), found {len(fields)}.')
      try:
        rows.append(np.asarray(fields, dtype=np.int64))
      except ValueError:
        raise UserError(f'{path}:{line_number}: every field must be an integer '
                         '(pixels 0-255, then the label).') from None
  if not rows:
    raise UserError(f'{path} holds no examples.')
  table = np.stack(rows)
  pixels, labels = table[:, :num_pixels], table[:, num_pixels]
  if pixels.min() < 0 or pixels.max() > 255:
    raise UserError(f'{path}: pixel values must lie in 0-255.')
  return {'inputs': (pixels.reshape((-1,) + image_shape) / 255.0).astype(np.float32),
          'label': labels.astype(np.int32)}


def stratified_split(labels: np.ndarray, train_fraction: float, seed: int):
  """Indices (train, test) taking `train_fraction` of every class, deterministically."""
  rng = np.random.default_rng(seed)
  train, test = [], []
  for label in np.unique(labels):
    members = rng.permutation(np.flatnonzero(labels == label))
    cut = int(round(train_fraction * len(members)))
    train.append(members[:cut])
    test.append(members[cut:])
  return np.sort(np.concatenate(train)), np.sort(np.concatenate(test))


def random_shift(batch: dict, rng: np.random.Generator, max_shift: int = 2) -> dict:
  """Translates each image by up to `max_shift` pixels (zero fill): cheap augmentation."""
  images = batch['inputs']
  padded = np.pad(images, ((0, 0), (max_shift,) * 2, (max_shift,) * 2, (0, 0)))
  offsets = rng.integers(0, 2 * max_shift + 1, size=(len(images), 2))
  height, width = images.shape[1:3]
  shifted = np.stack([p[dy:dy + height, dx:dx + width] for p, (dy, dx) in zip(padded, offsets)])
  return {**batch, 'inputs': shifted}


def _tfds_split(name: str, split: str, data_dir) -> dict[str, np.ndarray]:
  import tensorflow_datasets as tfds
  source = tfds.data_source(name, split=split, data_dir=data_dir)
  examples = [source[i] for i in range(len(source))]
  images = np.stack([e['image'] for e in examples]).astype(np.float32) / 255.0
  return {'inputs': images, 'label': np.asarray([e['label'] for e in examples], np.int32)}


@register('mnist')
def build_mnist(config: ConfigDict) -> Splits:
  augment = random_shift if config.data.get('augment', False) else None
  if config.data_dir is None:
    train = _tfds_split('mnist', 'train', config.tfds_data_dir)
    test = _tfds_split('mnist', 'test', config.tfds_data_dir)
  else:
    path = pathlib.Path(config.data_dir) / CSV_NAME
    if not path.exists():
      raise UserError(f'config.data_dir={config.data_dir!r} has no {CSV_NAME}; point it at '
                       'the folder holding it (e.g. ../shared/data/mnist5k).')
    everything = read_pixel_csv(path)
    train_rows, test_rows = stratified_split(everything['label'], TRAIN_FRACTION, seed=0)
    train = {k: v[train_rows] for k, v in everything.items()}
    test = {k: v[test_rows] for k, v in everything.items()}
  # Evaluation during training uses the held-out split; nothing is selected on it.
  return Splits(train=ArraySource(train, augment), eval=ArraySource(test),
                test=ArraySource(test), info={'num_classes': 10, 'input_shape': (28, 28, 1)})

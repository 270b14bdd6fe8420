"""Image classification data: MNIST from the TFDS catalog or from a local CSV.

Local: `data_dir` holds `mnist_5k.csv.gz` (784 pixel columns 0-255, then the label), split
deterministically and stratified: the first 800 rows of every class (after a seeded
shuffle) train, the remaining 200 test, which gives 4,000 / 1,000 for 500 per class.
Catalog: `tfds.data_source('mnist')` reads ArrayRecord files without TensorFlow.
Pixels are scaled to [0, 1] and shaped [28, 28, 1] either way.
"""

import pathlib

import numpy as np
from ml_collections import ConfigDict

from train.data.pipeline import ArraySource, Splits
from train.data.registry import register
from train.data.text_builders import numbered_lines
from train.errors import UserError

CSV_NAME = 'mnist_5k.csv.gz'
TRAIN_FRACTION = 0.8
NUM_CLASSES = 10


def read_pixel_csv(path: pathlib.Path, image_shape=(28, 28, 1),
                   num_classes: int | None = None) -> dict[str, np.ndarray]:
  """Rows of `pixels..., label` from a plain or gzip CSV file.

  Raises:
    UserError: naming the file, and the line where there is one: not gzip or cut short,
      not UTF-8, a row of the wrong length, a field that is not an integer, a pixel
      outside 0-255 or a label outside 0..num_classes-1, or no rows at all.
  """
  num_pixels = int(np.prod(image_shape))
  rows, line_numbers = [], []
  for line_number, line in numbered_lines(str(path)):
    fields = line.strip().split(',')
    if fields == ['']:
      continue
    if len(fields) != num_pixels + 1:
      raise UserError(f'{path}:{line_number}: expected {num_pixels} pixel columns and a '
                      f'label ({num_pixels + 1} fields), found {len(fields)}.')
    try:
      rows.append(np.asarray(fields, dtype=np.int64))
    except (ValueError, OverflowError):
      raise UserError(f'{path}:{line_number}: every field must be an integer '
                      '(pixels 0-255, then the label).') from None
    line_numbers.append(line_number)
  if not rows:
    raise UserError(f'{path} holds no examples.')
  table = np.stack(rows)
  pixels, labels = table[:, :num_pixels], table[:, num_pixels]
  bad = np.flatnonzero((pixels < 0).any(1) | (pixels > 255).any(1))
  if bad.size:
    raise UserError(f'{path}:{line_numbers[bad[0]]}: pixel values must lie in 0-255; fix '
                    'that line.')
  limit = num_classes or 2**31  # labels are stored as int32
  bad = np.flatnonzero((labels < 0) | (labels >= limit))
  if bad.size:
    raise UserError(f'{path}:{line_numbers[bad[0]]}: the label {labels[bad[0]]} is not in '
                    f'0..{limit - 1}; fix that line.')
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
  from train.data import catalog
  source = catalog.data_source(name, split, data_dir,
                               'the folder of mnist_5k.csv.gz, ../shared/data/mnist5k')
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
    if not path.is_file():
      raise UserError(f'config.data_dir={config.data_dir!r} has no {CSV_NAME}; point it at '
                      'the folder holding it (e.g. ../shared/data/mnist5k).')
    everything = read_pixel_csv(path, num_classes=NUM_CLASSES)
    train_rows, test_rows = stratified_split(everything['label'], TRAIN_FRACTION, seed=0)
    if not len(train_rows) or not len(test_rows):
      raise UserError(f'{path} holds only {len(everything["label"])} examples, too few to '
                      f'hold out {1 - TRAIN_FRACTION:.0%} of a class for testing; use the '
                      'complete file.')
    train = {k: v[train_rows] for k, v in everything.items()}
    test = {k: v[test_rows] for k, v in everything.items()}
  # Evaluation during training uses the held-out split; nothing is selected on it.
  return Splits(train=ArraySource(train, augment), eval=ArraySource(test),
                test=ArraySource(test),
                info={'num_classes': NUM_CLASSES, 'input_shape': (28, 28, 1)})

"""Image classification data: MNIST (TFDS catalog or a local CSV), CIFAR-10 (catalog).

Local: `data_dir` holds `mnist_5k.csv.gz` (784 pixel columns 0-255, then the label), split
deterministically and stratified: the first 800 rows of every class (after a seeded
shuffle) train, the remaining 200 test, which gives 4,000 / 1,000 for 500 per class.
Catalog: `tfds.data_source('mnist')` reads ArrayRecord files without TensorFlow.
Pixels are scaled to [0, 1] and shaped [28, 28, 1] either way. CIFAR-10 is read from the
catalog only ([32, 32, 3]): prepare it once with `pip install tensorflow; tfds build cifar10`
on a machine with internet, or copy a prepared ~/tensorflow_datasets/cifar10 there.

Evaluation during training uses the test split, so nothing may be selected on it; to
choose settings, hold out training rows with config.data.train_indices / eval_indices
(train/data/registry.py).

Training augmentation (`augmentation`), applied on the host to each training batch when
`config.data.augment` is set: a random crop of the image padded with
`config.data.crop_padding` zeros on every side (random_shift), then, if `config.data.flip`,
a left-right flip of each image with probability 1/2 (never for digits).
"""

import functools
import pathlib

import numpy as np
from ml_collections import ConfigDict

from train.data.pipeline import ArraySource, Augment, Splits
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
  """Translates each image by up to `max_shift` pixels (zero fill): cheap augmentation.

  This is the random crop of He et al. (2016): pad `max_shift` zeros on every side, then
  cut the original size back out at an offset (dy, dx) uniform in [0, 2 * max_shift]^2.
  """
  images = batch['inputs']
  padded = np.pad(images, ((0, 0), (max_shift,) * 2, (max_shift,) * 2, (0, 0)))
  offsets = rng.integers(0, 2 * max_shift + 1, size=(len(images), 2))
  height, width = images.shape[1:3]
  shifted = np.stack([p[dy:dy + height, dx:dx + width] for p, (dy, dx) in zip(padded, offsets)])
  return {**batch, 'inputs': shifted}


def horizontal_flip(batch: dict, rng: np.random.Generator) -> dict:
  """Mirrors each image left-right with probability 1/2."""
  images = batch['inputs']
  flip_B = rng.random(len(images)) < 0.5
  return {**batch, 'inputs': np.where(flip_B[:, None, None, None], images[:, :, ::-1], images)}


def augmentation(data: ConfigDict, flips_allowed: bool) -> Augment | None:
  """The training augmentation `config.data` asks for (see the module docstring)."""
  padding, flip = data.get('crop_padding', 2), data.get('flip', False)
  if isinstance(padding, bool) or not isinstance(padding, int) or padding < 0:
    raise UserError(f'config.data.crop_padding={padding!r} must be an integer >= 0: the zeros '
                    'padded on each side before the random crop (0: no crop).')
  if flip and not flips_allowed:
    raise UserError('config.data.flip=True would mirror digits into shapes that are not '
                    'digits; set --config.data.flip=False.')
  if not data.get('augment', False):
    return None
  steps = ([functools.partial(random_shift, max_shift=padding)] if padding else []) + (
      [horizontal_flip] if flip else [])

  def augment(batch: dict, rng: np.random.Generator) -> dict:
    for step in steps:
      batch = step(batch, rng)
    return batch
  return augment


def _tfds_split(name: str, split: str, data_dir, local_hint: str | None = None
                ) -> dict[str, np.ndarray]:
  from train.data import catalog
  source = catalog.data_source(name, split, data_dir, local_hint)
  examples = [source[i] for i in range(len(source))]
  images = np.stack([e['image'] for e in examples]).astype(np.float32) / 255.0
  return {'inputs': images, 'label': np.asarray([e['label'] for e in examples], np.int32)}


@register('mnist')
def build_mnist(config: ConfigDict) -> Splits:
  augment = augmentation(config.data, flips_allowed=False)
  if config.data_dir is None:
    hint = 'the folder of mnist_5k.csv.gz, ../shared/data/mnist5k'
    train = _tfds_split('mnist', 'train', config.tfds_data_dir, hint)
    test = _tfds_split('mnist', 'test', config.tfds_data_dir, hint)
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


@register('cifar10')
def build_cifar10(config: ConfigDict) -> Splits:
  if config.data_dir is not None:
    raise UserError(f'config.dataset=cifar10 is read from the TFDS catalog only; leave '
                    f'config.data_dir unset (it is {config.data_dir!r}) and prepare the '
                    'catalog dataset (tfds build cifar10).')
  augment = augmentation(config.data, flips_allowed=True)
  train, test = (_tfds_split('cifar10', split, config.tfds_data_dir)
                 for split in ('train', 'test'))
  return Splits(train=ArraySource(train, augment), eval=ArraySource(test),
                test=ArraySource(test),
                info={'num_classes': NUM_CLASSES, 'input_shape': (32, 32, 3)})

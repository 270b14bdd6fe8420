"""Handwritten digit strings for CTC: 1 to 8 MNIST digits written side by side.

A sequence is a row of n digits (n uniform in min_length..max_length) drawn from a pool of
single-digit images. Digit s (0-based) starts at column

    x_0 = g_0,   x_s = x_{s-1} + 28 + g_s,   g_0 ~ U{0..max_gap},  g_s ~ U{min_gap..max_gap}

so neighbours may overlap by up to -min_gap columns (where they do, the brighter pixel
wins: the strokes are max-merged) or stand up to max_gap apart; each digit also moves
down by a shift ~ U{-max_shift..max_shift} rows (zero fill), as handwriting wanders about
its line. The canvas is W = max_length * (28 + max_gap) columns wide, enough for the
widest row; the columns past the last digit (width = x_{n-1} + 28) are blank and masked.

Digit pools: train sequences use only the digits of images.py's MNIST training split
(the 4,000 of mnist_5k.csv.gz, or the catalog's 60k), eval and test sequences only its
held-out digits, so no test digit image is ever trained on.

A split is stored as recipes (which pool digits, where, how many) drawn with the seeded
generator (config.data.seed, split index) and composed into images batch by batch, so
60,000 training rows cost a few MB and every pass sees identical pixels. A batch holds

  inputs      float32 [B, 28, W, 1]   pixels in [0, 1]
  width       int32   [B]             columns up to the end of the last digit
  labels      int32   [B, max_length] class ids digit + 1 (0 is CTC's blank), 0-padded
  label_mask  float32 [B, max_length] 1 on the n real labels
  mask        float32 [B]             1 for real examples (0 on eval padding rows)

config.data fields: num_train (60000), num_eval (500), num_test (1000), min_length (1),
max_length (8), min_gap (-4), max_gap (4), max_shift (2), seed (0).
"""

from __future__ import annotations

import dataclasses
from typing import Iterator, Mapping

import numpy as np
from ml_collections import ConfigDict

from train.data import images
from train.data.pipeline import ArraySource, Batch, Shard, Splits
from train.data.registry import register
from train.errors import UserError

DIGIT_SIZE = 28
BLANK_ID = 0  # class 0 is the blank; digit d is class d + 1


def draw_recipes(rng: np.random.Generator, num: int, pool_size: int, min_length: int,
                 max_length: int, min_gap: int, max_gap: int,
                 max_shift: int) -> dict[str, np.ndarray]:
  """`num` rows: pool indices, left columns and vertical shifts [num, L]; lengths [num]."""
  length_N = rng.integers(min_length, max_length + 1, num).astype(np.int32)
  digits_NxL = rng.integers(0, pool_size, (num, max_length)).astype(np.int32)
  gaps_NxL = rng.integers(min_gap, max_gap + 1, (num, max_length))
  gaps_NxL[:, 0] = rng.integers(0, max_gap + 1, num)  # the left margin is never negative
  steps_NxL = gaps_NxL + np.where(np.arange(max_length) > 0, DIGIT_SIZE, 0)
  return {'digits': digits_NxL, 'offsets': np.cumsum(steps_NxL, axis=1).astype(np.int32),
          'shifts': rng.integers(-max_shift, max_shift + 1, (num, max_length)).astype(np.int32),
          'length': length_N}


RECIPE_KEYS = ('digits', 'offsets', 'shifts', 'length')


def compose(recipes: Mapping[str, np.ndarray], pool_images: np.ndarray,
            pool_labels: np.ndarray, canvas_width: int) -> Batch:
  """Images, widths and labels of recipe rows; other entries (the mask) pass through."""
  digits_BxL, offsets_BxL, shifts_BxL, length_B = (recipes[k] for k in RECIPE_KEYS)
  B, L = digits_BxL.shape
  real_BxL = np.arange(L)[None, :] < length_B[:, None]
  margin = int(np.abs(shifts_BxL).max(initial=0))
  # Drawn column-major ([B, W, H]) so one digit's 28 columns are one fancy index per row.
  canvas_BxWxH = np.zeros((B, canvas_width, DIGIT_SIZE), np.float32)
  rows_Bx1 = np.arange(B)[:, None]
  for s in range(L):  # a loop over the 8 slots; each step covers the whole batch
    # Output row r reads padded row r + margin - shift: the digit moves down by `shift`.
    padded_BxHxW = np.pad(pool_images[digits_BxL[:, s]], ((0, 0), (margin, margin), (0, 0)))
    source_rows_Bx28 = margin - shifts_BxL[:, s, None] + np.arange(DIGIT_SIZE)[None, :]
    digit_Bx28x28 = padded_BxHxW[rows_Bx1, source_rows_Bx28]
    digit_Bx28x28 = digit_Bx28x28.transpose(0, 2, 1) * real_BxL[:, s, None, None]
    columns_Bx28 = offsets_BxL[:, s, None] + np.arange(DIGIT_SIZE)[None, :]
    canvas_BxWxH[rows_Bx1, columns_Bx28] = np.maximum(canvas_BxWxH[rows_Bx1, columns_Bx28],
                                                      digit_Bx28x28)
  last_B = np.maximum(length_B - 1, 0)
  width_B = np.where(length_B > 0, offsets_BxL[np.arange(B), last_B] + DIGIT_SIZE, 0)
  out = {k: v for k, v in recipes.items() if k not in RECIPE_KEYS}
  out.update(inputs=canvas_BxWxH.transpose(0, 2, 1)[..., None],
             width=width_B.astype(np.int32),
             labels=np.where(real_BxL, pool_labels[digits_BxL] + 1, BLANK_ID).astype(np.int32),
             label_mask=real_BxL.astype(np.float32))
  return out


class ComposedIterator:
  """Batches of recipes from a resumable iterator, composed into images."""

  def __init__(self, recipe_iterator, source: DigitSequenceSource):
    self._recipes = recipe_iterator
    self._source = source

  def __iter__(self):
    return self

  def __next__(self) -> Batch:
    return self._source.compose(next(self._recipes))

  def get_state(self) -> dict:
    return self._recipes.get_state()

  def set_state(self, state: Mapping) -> None:
    self._recipes.set_state(state)


@dataclasses.dataclass
class DigitSequenceSource:
  """A split of recipes over a pool of digits; batching and resuming are ArraySource's."""
  recipes: ArraySource
  pool_images: np.ndarray  # [P, 28, 28]
  pool_labels: np.ndarray  # [P], digits 0-9
  canvas_width: int

  def __len__(self) -> int:
    return len(self.recipes)

  def compose(self, recipes: Batch) -> Batch:
    return compose(recipes, self.pool_images, self.pool_labels, self.canvas_width)

  def train_iterator(self, batch_size: int, seed: int,
                     shard: Shard = Shard()) -> ComposedIterator:
    return ComposedIterator(self.recipes.train_iterator(batch_size, seed, shard), self)

  def eval_batches(self, batch_size: int, shard: Shard = Shard()) -> Iterator[Batch]:
    return map(self.compose, self.recipes.eval_batches(batch_size, shard))


def _settings(data: ConfigDict) -> dict:
  s = {'min_length': data.get('min_length', 1), 'max_length': data.get('max_length', 8),
       'min_gap': data.get('min_gap', -4), 'max_gap': data.get('max_gap', 4),
       'max_shift': data.get('max_shift', 2)}
  if not 1 <= s['min_length'] <= s['max_length']:
    raise UserError(f'config.data.min_length={s["min_length"]} and max_length='
                    f'{s["max_length"]} must satisfy 1 <= min_length <= max_length.')
  if not -DIGIT_SIZE // 2 <= s['min_gap'] <= s['max_gap']:
    raise UserError(f'config.data.min_gap={s["min_gap"]} and max_gap={s["max_gap"]} must '
                    f'satisfy -{DIGIT_SIZE // 2} <= min_gap <= max_gap (digits may overlap '
                    'by at most half their width).')
  if not 0 <= s['max_shift'] <= DIGIT_SIZE // 4:
    raise UserError(f'config.data.max_shift={s["max_shift"]} must lie in 0..{DIGIT_SIZE // 4} '
                    '(rows a digit may move up or down).')
  return s


@register('mnist_digit_sequences')
def build_digit_sequences(config: ConfigDict) -> Splits:
  settings = _settings(config.data)
  digits = images.build_mnist(config)  # its train/test split decides the two pools
  canvas_width = settings['max_length'] * (DIGIT_SIZE + settings['max_gap'])
  seed = config.data.get('seed', 0)
  splits = []
  for index, (size_field, default, pool) in enumerate((
      ('num_train', 60_000, digits.train), ('num_eval', 500, digits.test),
      ('num_test', 1_000, digits.test))):
    pool_images = pool.arrays['inputs'][..., 0]
    pool_labels = pool.arrays['label']
    recipes = draw_recipes(np.random.default_rng([seed, index]), config.data.get(
        size_field, default), len(pool_labels), **settings)
    splits.append(DigitSequenceSource(ArraySource(recipes), pool_images, pool_labels,
                                      canvas_width))
  return Splits(*splits, info={'num_classes': images.NUM_CLASSES + 1,  # digits + blank
                               'max_length': settings['max_length'],
                               'input_shape': (DIGIT_SIZE, canvas_width, 1)})

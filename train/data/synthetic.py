"""Data generated in code: needs no download, so the default experiment runs anywhere.

Spirals (the CS231n toy problem): K arms, example i of arm k at radius r in [0, 1] and
angle theta = 4 r + 2 pi k / K (+ Gaussian noise), x = r (sin theta, cos theta). No linear
model separates the arms; a small MLP does, which makes it the classic first picture of
what a hidden layer buys.
"""

import numpy as np
from ml_collections import ConfigDict

from train.data.pipeline import ArraySource, Splits
from train.data.registry import register


def spirals(num_examples: int, num_classes: int, noise: float, seed: int):
  rng = np.random.default_rng(seed)
  label = rng.integers(0, num_classes, num_examples)
  radius = rng.uniform(0.0, 1.0, num_examples)
  theta = 4.0 * radius + 2 * np.pi * label / num_classes
  theta += noise * rng.standard_normal(num_examples)
  inputs = np.stack([radius * np.sin(theta), radius * np.cos(theta)], axis=1)
  return {'inputs': inputs.astype(np.float32), 'label': label.astype(np.int32)}


@register('spirals')
def build_spirals(config: ConfigDict) -> Splits:
  c = config.data
  # Disjoint seeds per split: the test points are fresh draws, never training points.
  make = lambda n, offset: ArraySource(
      spirals(n, c.num_classes, c.noise, config.seed * 3 + offset))
  test = make(c.num_test, 2)
  return Splits(train=make(c.num_train, 0), eval=make(c.num_test, 1), test=test,
                info={'num_classes': c.num_classes, 'input_shape': (2,)})

"""A 1-D curve to regress (`config.dataset = 'curve'`), generated in code.

    y = f(x) + noise * N(0, 1),   f(x) = sin(2x) + 0.5 cos(5x) + 0.3x,   x ~ U[-3, 3]

A smooth curve with several bends, the kind a sum of sigmoids (or of hard sigmoids, a
piecewise-linear curve) approximates better the more units it has
(experiments/science/sigmoid_fit.py). The training and eval points are fresh uniform draws
(config.data.num_train, num_test; disjoint seeds); the test split is the noise-free curve on
an even grid of num_test points, so test `loss` is the mean squared distance to f itself.
"""

import numpy as np
from ml_collections import ConfigDict

from train.data.pipeline import ArraySource, Splits
from train.data.registry import register

LOW, HIGH = -3.0, 3.0


def curve(x: np.ndarray) -> np.ndarray:
  return np.sin(2 * x) + 0.5 * np.cos(5 * x) + 0.3 * x


def _examples(x_N: np.ndarray, noise: float, rng: np.random.Generator) -> dict:
  y_N = curve(x_N) + noise * rng.standard_normal(x_N.shape)
  return {'inputs': x_N[:, None].astype(np.float32), 'target': y_N[:, None].astype(np.float32)}


@register('curve')
def build_curve(config: ConfigDict) -> Splits:
  c = config.data
  draw = lambda n, offset: _examples(
      np.random.default_rng(config.seed * 3 + offset).uniform(LOW, HIGH, n), c.noise,
      np.random.default_rng(config.seed * 3 + offset + 1000))
  grid = _examples(np.linspace(LOW, HIGH, c.num_test), 0.0, np.random.default_rng(0))
  return Splits(train=ArraySource(draw(c.num_train, 0)), eval=ArraySource(draw(c.num_test, 1)),
                test=ArraySource(grid), info={'num_outputs': 1, 'input_shape': (1,)})

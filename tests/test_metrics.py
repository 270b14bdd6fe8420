"""Classification metrics against counts taken directly from label/prediction arrays."""

import jax.numpy as jnp
import numpy as np
import pytest

from train import metrics


def ratio(a, b):
  return a / b if b > 0 else 0.0


def np_report(labels, predictions, weights, num_classes):
  """Per-class and averaged scores by counting (weighted) examples, no confusion matrix."""
  count = lambda mask: np.sum(weights * mask)
  per_class = []
  for k in range(num_classes):
    tp = count((labels == k) & (predictions == k))
    p, r = ratio(tp, count(predictions == k)), ratio(tp, count(labels == k))
    per_class.append((p, r, ratio(2 * p * r, p + r)))
  precision, recall, f1 = map(np.array, zip(*per_class))
  # Micro: pool true positives, false positives and false negatives over the classes.
  tp = count(labels == predictions)
  fp = sum(count((predictions == k) & (labels != k)) for k in range(num_classes))
  fn = sum(count((labels == k) & (predictions != k)) for k in range(num_classes))
  micro_p, micro_r = ratio(tp, tp + fp), ratio(tp, tp + fn)
  return {'accuracy': ratio(tp, np.sum(weights)), 'precision': precision.mean(),
          'recall': recall.mean(), 'f1': f1.mean(), 'micro_precision': micro_p,
          'micro_recall': micro_r, 'micro_f1': ratio(2 * micro_p * micro_r, micro_p + micro_r),
          'per_class_precision': precision, 'per_class_recall': recall, 'per_class_f1': f1}


def report(labels, predictions, weights, num_classes):
  confusion = metrics.confusion_matrix(jnp.asarray(labels), jnp.asarray(predictions),
                                       num_classes, jnp.asarray(weights, jnp.float32))
  return metrics.classification_report(np.asarray(confusion))


def random_case(seed, num_classes=4, size=60):
  rng = np.random.default_rng(seed)
  labels = rng.integers(0, num_classes, size)
  # Right about 60% of the time, so every score is strictly between 0 and 1.
  predictions = np.where(rng.random(size) < 0.6, labels, rng.integers(0, num_classes, size))
  return labels, predictions, np.ones(size)


CASES = {
    'random': random_case(0),
    'random_other_seed': random_case(1, num_classes=3, size=25),
    'padding_mask': (lambda l, p, w: (l, p, (np.arange(len(l)) < 45).astype(float)))(
        *random_case(2)),
    # Class 2 never occurs and is never predicted; class 3 is predicted but never true.
    'empty_classes': (np.array([0, 0, 1, 1, 1, 0]), np.array([0, 1, 1, 3, 1, 0]), np.ones(6)),
    'all_wrong': (np.array([0, 1, 2]), np.array([1, 2, 0]), np.ones(3)),
}


@pytest.mark.parametrize('name', CASES)
def test_report_matches_direct_counts(name):
  labels, predictions, weights = CASES[name]
  num_classes = 4
  got, expected = report(labels, predictions, weights, num_classes), np_report(
      labels, predictions, weights, num_classes)
  for key, value in expected.items():
    assert np.all(np.isfinite(got[key])), key
    np.testing.assert_allclose(got[key], value, rtol=1e-6, atol=1e-12, err_msg=key)


def test_micro_scores_equal_accuracy_for_single_label():
  got = report(*CASES['random'], 4)
  assert 0 < got['accuracy'] < 1
  for key in ('micro_precision', 'micro_recall', 'micro_f1'):
    assert got[key] == pytest.approx(got['accuracy'])
  assert got['f1'] != pytest.approx(got['accuracy'])  # macro is a different average


def test_empty_class_scores_zero_not_nan():
  got = report(*CASES['empty_classes'], 4)
  # Class 2: no examples, no predictions. Class 3: predicted once, never true.
  assert got['per_class_precision'][2:] == [0.0, 0.0]
  assert got['per_class_recall'][2:] == [0.0, 0.0]
  assert got['per_class_f1'][2:] == [0.0, 0.0]


def test_all_zero_confusion_gives_zeros():
  got = metrics.classification_report(np.zeros((3, 3)))
  scalars = {k: v for k, v in got.items() if isinstance(v, float)}
  assert scalars and all(v == 0.0 for v in scalars.values())
  assert got['per_class_f1'] == [0.0, 0.0, 0.0]


def test_confusion_matrix_counts_weighted_pairs():
  labels, predictions, _ = CASES['random']
  weights = np.random.default_rng(3).uniform(0, 2, len(labels))
  expected = np.zeros((4, 4))
  np.add.at(expected, (labels, predictions), weights)
  got = metrics.confusion_matrix(jnp.asarray(labels), jnp.asarray(predictions), 4,
                                 jnp.asarray(weights, jnp.float32))
  np.testing.assert_allclose(got, expected, rtol=1e-5)


def test_padding_mask_excludes_examples():
  labels, predictions = np.array([0, 1, 2, 2]), np.array([0, 1, 1, 0])
  mask = np.array([1.0, 1.0, 0.0, 1.0])
  got = np.asarray(metrics.confusion_matrix(jnp.asarray(labels), jnp.asarray(predictions), 3,
                                            jnp.asarray(mask)))
  unpadded = np.asarray(metrics.confusion_matrix(
      jnp.asarray(labels[mask > 0]), jnp.asarray(predictions[mask > 0]), 3, jnp.ones(3)))
  np.testing.assert_array_equal(got, unpadded)
  assert got[2, 1] == 0 and got.sum() == 3

"""Classification metrics from a confusion matrix.

Steps only add up counts on device (a K x K confusion matrix, a loss sum, an example
count); everything else is derived on the host at log time from those sums, so metrics
are exact over a whole split however it was batched or sharded:

    precision_k = C[k, k] / sum_i C[i, k]      (of those predicted k, how many were k)
    recall_k    = C[k, k] / sum_j C[k, j]      (of those truly k, how many were found)
    f1_k        = 2 P_k R_k / (P_k + R_k)

Macro averages the per-class scores (every class counts equally); micro pools the counts
first (every example counts equally; for single-label problems it equals accuracy).
"""

import jax
import jax.numpy as jnp
import numpy as np


def confusion_matrix(labels_B, predictions_B, num_classes: int, weights_B) -> jax.Array:
  """C[i, j] = total weight of examples with label i predicted as j."""
  true_BxK = jax.nn.one_hot(labels_B, num_classes) * weights_B[:, None]
  pred_BxK = jax.nn.one_hot(predictions_B, num_classes)
  return true_BxK.T @ pred_BxK


def safe_divide(numerator, denominator):
  """numerator / denominator, and 0 where the denominator is 0 (an empty class)."""
  numerator, denominator = np.asarray(numerator, float), np.asarray(denominator, float)
  return np.divide(numerator, denominator, out=np.zeros_like(numerator),
                   where=denominator > 0)


def f1_score(precision, recall):
  return safe_divide(2 * precision * recall, precision + recall)


def classification_report(confusion: np.ndarray) -> dict:
  """Accuracy and per-class / macro / micro precision, recall and F1."""
  confusion = np.asarray(confusion, float)
  true_positives = np.diag(confusion)
  precision = safe_divide(true_positives, confusion.sum(axis=0))
  recall = safe_divide(true_positives, confusion.sum(axis=1))
  f1 = f1_score(precision, recall)
  micro_p = safe_divide(true_positives.sum(), confusion.sum(axis=0).sum())
  micro_r = safe_divide(true_positives.sum(), confusion.sum(axis=1).sum())
  return {
      'accuracy': float(safe_divide(true_positives.sum(), confusion.sum())),
      'precision': float(precision.mean()),
      'recall': float(recall.mean()),
      'f1': float(f1.mean()),
      'micro_precision': float(micro_p),
      'micro_recall': float(micro_r),
      'micro_f1': float(f1_score(micro_p, micro_r)),
      'per_class_precision': precision.tolist(),
      'per_class_recall': recall.tolist(),
      'per_class_f1': f1.tolist(),
      'confusion_matrix': confusion.astype(int).tolist(),
  }

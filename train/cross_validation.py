"""k-fold cross-validation: splits, and choosing a candidate by its mean score over folds.

The examples are shuffled and dealt into k folds V_1..V_k that partition {0, ..., n-1}, with
|V_i| in {floor(n/k), ceil(n/k)}. Fold i trains on the rest, T_i = {0..n-1} \\ V_i, and is scored
on V_i; a candidate c (a hyperparameter setting, a model size) gets

    mean(c) = 1/k sum_i s(c, T_i, V_i),    std(c) = sqrt(1/k sum_i (s(c, T_i, V_i) - mean(c))^2),

and the best mean wins. Every candidate sees the same folds, so their differences are not
blurred by different splits. Stratified folds deal each class out separately, so that every
fold holds floor or ceil of n_c / k examples of class c: the class proportions of the data.

The scoring function is the caller's (fit on T_i, score on V_i); nothing here trains.
"""

from __future__ import annotations

from typing import Any, Callable, NamedTuple, Sequence

import numpy as np


def kfold_indices(num_examples: int, k: int, seed: int = 0,
                  stratify_labels: Sequence[int] | np.ndarray | None = None
                  ) -> list[tuple[np.ndarray, np.ndarray]]:
  """[(train_idx, val_idx)] for the k folds, each sorted; the val_idx partition the data.

  Args:
    num_examples: n, the examples are 0..n-1.
    k: number of folds, 2 <= k <= n.
    seed: the shuffle.
    stratify_labels: optional int labels [n]; folds then keep the class proportions.
  """
  if not 2 <= k <= num_examples:
    raise ValueError(f'k-fold cross-validation needs 2 <= k <= num_examples, got k={k} '
                     f'for {num_examples} examples.')
  rng = np.random.default_rng(seed)
  if stratify_labels is None:
    order = rng.permutation(num_examples)
  else:
    labels = np.asarray(stratify_labels)
    if labels.shape != (num_examples,):
      raise ValueError(f'stratify_labels has shape {labels.shape}; it needs one label per '
                       f'example, shape ({num_examples},).')
    # Classes one after another, each shuffled: dealing position p to fold p mod k then
    # spreads each class evenly and keeps the fold sizes within one of each other.
    order = np.concatenate([rng.permutation(np.flatnonzero(labels == c))
                            for c in np.unique(labels)])
  fold_of = np.empty(num_examples, np.int64)
  fold_of[order] = np.arange(num_examples) % k
  # Start the dealing at a random fold, so the larger folds are not always the first ones.
  fold_of = (fold_of + rng.integers(k)) % k
  return [(np.flatnonzero(fold_of != i), np.flatnonzero(fold_of == i)) for i in range(k)]


class KFoldSelection(NamedTuple):
  best: Any  # the candidate with the best mean score (the first one, on ties)
  best_index: int
  mean: np.ndarray  # [num_candidates]
  std: np.ndarray  # [num_candidates], over folds (ddof=0)
  scores: np.ndarray  # [num_candidates, k]


def select_by_kfold(candidates: Sequence[Any],
                    evaluate_fn: Callable[[Any, np.ndarray, np.ndarray], float],
                    num_examples: int, k: int = 5, seed: int = 0,
                    stratify_labels: Sequence[int] | np.ndarray | None = None,
                    higher_is_better: bool = True) -> KFoldSelection:
  """Scores every candidate on the same k folds; returns the best mean score.

  Args:
    candidates: anything `evaluate_fn` understands (configs, regularisation strengths...).
    evaluate_fn: (candidate, train_idx, val_idx) -> score: fit on train_idx, score val_idx.
    num_examples, k, seed, stratify_labels: as in `kfold_indices`.
    higher_is_better: True for accuracy-like scores, False for losses.
  """
  if not candidates:
    raise ValueError('select_by_kfold needs at least one candidate.')
  folds = kfold_indices(num_examples, k, seed, stratify_labels)
  scores = np.array([[float(evaluate_fn(c, train, val)) for train, val in folds]
                     for c in candidates])
  mean, std = scores.mean(axis=1), scores.std(axis=1)
  best = int(np.argmax(mean) if higher_is_better else np.argmin(mean))
  return KFoldSelection(candidates[best], best, mean, std, scores)

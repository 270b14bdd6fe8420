"""CTC loss and decoders against brute-force sums over every alignment."""

import collections
import itertools

import jax
import jax.numpy as jnp
import numpy as np

from train import ctc

K = 3  # blank, a = 1, b = 2
CHARS = '-ab'


def collapse(path):
  """B(pi): merge runs of equal symbols, then drop blanks (written independently)."""
  return tuple(c for c, _ in itertools.groupby(path) if c != 0)


def label_probabilities(log_probs_TxK):
  """{labels: p(labels | x)} by summing prod_t p(pi_t) over all K^T alignments pi."""
  probs = np.exp(np.asarray(log_probs_TxK, np.float64))
  totals = collections.defaultdict(float)
  for path in itertools.product(range(probs.shape[1]), repeat=probs.shape[0]):
    totals[collapse(path)] += np.prod(probs[np.arange(len(path)), path])
  return totals


def log_softmax(z):
  z = np.asarray(z, np.float64)
  return z - np.log(np.exp(z).sum(-1, keepdims=True))


def test_loss_equals_minus_log_of_the_brute_force_sum():
  rng = np.random.default_rng(0)
  T, N = 4, 2
  logits = rng.normal(0, 1.5, (4, T, K)).astype(np.float32)
  labels = np.array([[1, 2], [1, 1], [2, 0], [0, 0]])  # ab, aa (needs a blank), b, empty
  label_paddings = np.array([[0, 0], [0, 0], [0, 1], [1, 1]], np.float32)
  logit_paddings = np.zeros((4, T), np.float32)
  logit_paddings[2, 3] = 1.0  # example 2 has only 3 frames
  got = ctc.ctc_loss(jnp.asarray(logits), logit_paddings, labels, label_paddings)
  assert got.shape == (4,)
  for b in range(4):
    frames = log_softmax(logits[b][logit_paddings[b] == 0])
    target = tuple(int(l) for l, p in zip(labels[b], label_paddings[b]) if p == 0)
    expected = -np.log(label_probabilities(frames)[target])
    np.testing.assert_allclose(got[b], expected, rtol=1e-4, err_msg=f'example {b}')


def one_hot_logits(path, confidence=5.0):
  """Logits whose argmax path spells `path` (e.g. 'aa-ab')."""
  return np.eye(K, dtype=np.float32)[[CHARS.index(c) for c in path]] * confidence


def test_greedy_collapses_repeats_then_removes_blanks():
  paths = ['aa-ab', 'aab--', '-a-a-', 'bbbbb', '-----', 'ab-ba']
  expected = ['aab', 'ab', 'aa', 'b', '', 'abba']
  logits = np.stack([one_hot_logits(p) for p in paths])
  paddings = np.zeros(logits.shape[:2], np.float32)
  paddings[5, 3:] = 1.0  # 'ab-' once the padded frames are cut
  expected[5] = 'ab'
  labels, label_paddings = jax.jit(ctc.greedy_decode)(jnp.asarray(logits), paddings)
  decoded = [''.join(CHARS[c] for c in row) for row in ctc.unpad(labels, label_paddings)]
  assert decoded == expected
  assert np.all(np.asarray(labels)[np.asarray(label_paddings) > 0] == 0)


def test_prefix_beam_search_finds_the_most_probable_labels_where_greedy_does_not():
  """Every frame: blank 0.5, a 0.3, b 0.2. The best path is all blanks (p = 0.5^4), but "a"
  collects 0.3 over many alignments and is more probable than the empty labelling."""
  log_probs = np.log(np.tile([[0.5, 0.3, 0.2]], (4, 1)))
  totals = label_probabilities(log_probs)
  best = max(totals, key=totals.get)
  assert best == (1,) and totals[best] > totals[()]
  greedy, _ = ctc.greedy_decode(jnp.asarray(log_probs[None], jnp.float32), np.zeros((1, 4)))
  assert not np.any(greedy)  # best path decodes to the empty sequence
  assert ctc.beam_decode(log_probs[None], np.zeros((1, 4)), beam_width=4) == [[1]]


def test_wide_prefix_beam_search_is_exact():
  """With a beam that never prunes, every prefix's probability is the brute-force sum."""
  rng = np.random.default_rng(1)
  for _ in range(3):
    log_probs = log_softmax(rng.normal(0, 1.5, (4, K)))
    totals = label_probabilities(log_probs)
    results = ctc.prefix_beam_search(log_probs, beam_width=100)
    assert len(results) == len(totals)  # every label sequence of length <= 4 is reached
    for labels, log_p in results:
      np.testing.assert_allclose(np.exp(log_p), totals[labels], rtol=1e-9)
    assert results[0][0] == max(totals, key=totals.get)


def test_loss_matches_the_beam_search_probability():
  log_probs = log_softmax(np.random.default_rng(2).normal(0, 1.0, (5, K)))
  labels, log_p = ctc.prefix_beam_search(log_probs, beam_width=100)[0]
  assert labels  # a non-empty labelling exercises the loss
  loss = ctc.ctc_loss(jnp.asarray(log_probs[None], jnp.float32), np.zeros((1, 5)),
                      np.array([labels]), np.zeros((1, len(labels))))
  np.testing.assert_allclose(loss[0], -log_p, rtol=1e-4)


def test_edit_distance_and_error_rates():
  # kitten -> sitting: substitute k->s, substitute e->i, insert g.
  assert ctc.edit_distance('kitten', 'sitting') == 3
  assert ctc.edit_distance('', 'abc') == 3 and ctc.edit_distance('abc', '') == 3
  assert ctc.edit_distance([1, 2, 3], [1, 3]) == 1
  # Pooled over the corpus: (3 + 1 + 0) errors / (7 + 3 + 2) reference characters.
  hyps, refs = ['kitten', 'abc', 'xy'], ['sitting', 'abd', 'xy']
  assert ctc.character_error_rate(hyps, refs) == 4 / 12
  assert ctc.sequence_accuracy(hyps, refs) == 1 / 3
  assert ctc.sequence_accuracy([[1, 2], [3]], [(1, 2), (3,)]) == 1.0

"""Decoders on toy Markov-chain "models", against brute force and plain-Python references."""

import functools
import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from train import decoding

PAD, BOS, EOS, A, B_ = 0, 1, 2, 3, 4
V = 5
WORDS = (A, B_)  # the tokens a model may emit besides EOS
NEG_INF = -np.inf


def np_log_softmax(z):
  z = np.asarray(z, np.float64)
  m = np.max(z, -1, keepdims=True)
  return z - m - np.log(np.sum(np.exp(z - m), -1, keepdims=True))


def random_logits(rng, shape, scale=1.5):
  """Random next-token logits over V where PAD and BOS can never be produced."""
  z = rng.normal(0.0, scale, (*shape, V)).astype(np.float32)
  z[..., PAD] = z[..., BOS] = NEG_INF
  return z


# ------------------------------------------------------------------------- toy models
#
# first order: p(y_t | y_{t-1}) = softmax(table[row, y_{t-1}]), a different table per row.
# second order: p(y_t | y_{t-2}, y_{t-1}) = softmax(table[y_{t-2}, y_{t-1}]), where y_{t-2}
# exists only in the cache, so a beam whose cache is not reordered with it goes wrong.


def first_order(table_RxVxV):
  """(step_fn, cache, logp_next(row, prefix)) for a batch of R rows."""
  table = jnp.asarray(table_RxVxV)

  def step_fn(tokens_B, cache, step):
    del step
    return table[cache['row'], tokens_B], cache

  def logp_next(row, prefix):
    return np_log_softmax(table_RxVxV[row, prefix[-1] if prefix else BOS])

  return step_fn, {'row': jnp.arange(table_RxVxV.shape[0])}, logp_next


def second_order_with_counter(table_VxVxV, batch_size):
  """As above, with a cache {prev token, step count} that must stay in step with `step`."""
  table = jnp.asarray(table_VxVxV)
  wrong_count_V = jnp.where(jnp.arange(V) == PAD, 0.0, -jnp.inf)  # emits PAD if out of step

  def step_fn(tokens_B, cache, step):
    logits_BxV = table[cache['prev'], tokens_B]
    in_step_Bx1 = (cache['count'] == step)[:, None]
    logits_BxV = jnp.where(in_step_Bx1, logits_BxV, wrong_count_V[None, :])
    return logits_BxV, {'prev': tokens_B, 'count': cache['count'] + 1}

  def logp_next(row, prefix):
    del row
    context = (BOS, BOS) + tuple(prefix)
    return np_log_softmax(table_VxVxV[context[-2], context[-1]])

  cache = {'prev': jnp.full((batch_size,), BOS), 'count': jnp.zeros((batch_size,), int)}
  return step_fn, cache, logp_next


def second_order_batch_of_3(table_VxVxV):
  return second_order_with_counter(table_VxVxV, 3)


# ------------------------------------------------------------------------- references


def lp(n, alpha):
  return ((5.0 + n) / 6.0) ** alpha


def log_prob(logp_next, row, seq):
  return sum(logp_next(row, seq[:i])[seq[i]] for i in range(len(seq)))


def brute_force(logp_next, row, max_len, alpha):
  """Every sequence w_1 .. w_{n-1} EOS with n <= max_len, scored and sorted best first."""
  scored = []
  for n in range(1, max_len + 1):
    for words in itertools.product(WORDS, repeat=n - 1):
      seq = (*words, EOS)
      scored.append((log_prob(logp_next, row, seq) / lp(n, alpha), seq))
  return sorted(scored, reverse=True)


def np_greedy(logp_next, row, max_len):
  seq = ()
  while len(seq) < max_len and (not seq or seq[-1] != EOS):
    seq += (int(np.argmax(logp_next(row, seq))),)
  return seq


def reference_beam_search(logp_next, row, beam_size, max_len, alpha):
  """The same search in plain Python, run to max_len with no early stopping."""
  alive, finished = [(0.0, ())], []
  for t in range(max_len):
    candidates = [(s + logp_next(row, seq)[v], seq + (v,)) for s, seq in alive
                  for v in range(V)]
    candidates = sorted(candidates, key=lambda c: c[0], reverse=True)[:2 * beam_size]
    finished += [(s / lp(t + 1, alpha), seq) for s, seq in candidates[:beam_size]
                 if seq[-1] == EOS]
    alive = [c for c in candidates if c[1][-1] != EOS][:beam_size]
  if finished:
    return max(finished, key=lambda c: c[0])
  return alive[0][0] / lp(max_len, alpha), alive[0][1]


def padded(seq, max_len):
  return list(seq) + [PAD] * (max_len - len(seq))


# Jitted once per model and shape (alpha is traced), to keep compilations few.
@functools.partial(jax.jit, static_argnums=(0, 2, 3, 4))
def run_beam(make_model, params, max_len, batch_size, beam_size, alpha):
  step_fn, cache, _ = make_model(params)
  return decoding.beam_search(step_fn, cache, BOS, EOS, max_len, batch_size, beam_size,
                              alpha, return_all_beams=True)


@functools.partial(jax.jit, static_argnums=(0, 2, 3))
def run_greedy(make_model, params, max_len, batch_size):
  step_fn, cache, _ = make_model(params)
  return decoding.greedy(step_fn, cache, BOS, EOS, max_len, batch_size)


# One batch of 8 first-order chains, decoded for up to 6 tokens, shared by several tests.
TABLE = random_logits(np.random.default_rng(2), (8, V), scale=1.0)


# ---------------------------------------------------------------------------- filters


def test_top_k_filter_keeps_the_k_largest():
  logits = np.random.default_rng(0).normal(size=(6, 10)).astype(np.float32)
  for k in (1, 3, 9, 10, 0):
    got = np.asarray(decoding.top_k_filter(jnp.asarray(logits), k))
    keep = np.zeros_like(logits, bool)
    for b, order in enumerate(np.argsort(-logits, axis=-1)):
      keep[b, order[:k if k else 10]] = True
    np.testing.assert_array_equal(np.isfinite(got), keep)
    np.testing.assert_array_equal(got[keep], logits[keep])


def test_top_p_filter_keeps_the_smallest_set_reaching_p():
  logits = np.random.default_rng(1).normal(0, 2, size=(6, 10)).astype(np.float32)
  probs = np.exp(np_log_softmax(logits))
  for p in (0.05, 0.3, 0.6, 0.9, 0.999, 1.0):
    got = np.asarray(decoding.top_p_filter(jnp.asarray(logits), p))
    keep = np.zeros_like(logits, bool)
    for b in range(logits.shape[0]):
      order = np.argsort(-probs[b])
      mass = 0.0
      for v in order:  # take tokens, most probable first, until their mass reaches p
        keep[b, v] = True
        mass += probs[b, v]
        if mass >= p:
          break
    np.testing.assert_array_equal(np.isfinite(got), keep, err_msg=f'p={p}')
    np.testing.assert_array_equal(got[keep], logits[keep])


# ------------------------------------------------------------------ greedy and sampling


def test_greedy_matches_numpy_and_pads_after_eos():
  _, _, logp_next = first_order(TABLE)
  expected = [padded(np_greedy(logp_next, r, 6), 6) for r in range(8)]
  np.testing.assert_array_equal(run_greedy(first_order, TABLE, 6, 8), expected)
  assert any(EOS in row[:5] for row in expected)  # some rows end early: pad is exercised


def test_sampling_with_top_k_1_is_greedy():
  step_fn, cache, _ = first_order(TABLE)
  sampled = jax.jit(lambda rng: decoding.sample(step_fn, cache, rng, BOS, EOS, 6, 8,
                                                temperature=0.7, top_k=1))
  for seed in range(3):
    np.testing.assert_array_equal(sampled(jax.random.key(seed)),
                                  run_greedy(first_order, TABLE, 6, 8))


@pytest.mark.parametrize('temperature,top_k,top_p', [(1.0, 0, 1.0), (2.0, 4, 0.8)])
def test_sampling_frequencies_match_the_filtered_softmax(temperature, top_k, top_p):
  logits_V = np.array([NEG_INF, NEG_INF, 0.1, 0.9, 0.4, -0.5, 1.2], np.float32)
  n = 4000
  step_fn = lambda tokens_B, cache, step: (jnp.tile(logits_V[None, :], (n, 1)), cache)
  tokens = decoding.sample(step_fn, {}, jax.random.key(0), BOS, EOS, 1, n, temperature,
                           top_k, top_p)
  freq = np.bincount(np.asarray(tokens[:, 0]), minlength=logits_V.size) / n
  # The filtered distribution, built independently: top-k, renormalise, then nucleus.
  probs = np.exp(np_log_softmax(logits_V / temperature))
  order = np.argsort(-probs)
  probs_sorted = probs[order]
  probs_sorted[top_k or logits_V.size:] = 0.0
  probs_sorted /= probs_sorted.sum()
  mass_before = np.cumsum(probs_sorted) - probs_sorted
  probs_sorted[mass_before >= top_p] = 0.0
  expected = np.zeros_like(probs)
  expected[order] = probs_sorted / probs_sorted.sum()
  keep = expected > 0
  assert keep.sum() == (5 if top_k == 0 else 3)  # the filters do cut (4 -> 3 by top-p)
  assert np.all(freq[~keep] == 0)
  np.testing.assert_allclose(freq, expected, atol=0.03)  # ~4 standard errors at n = 4000


# ------------------------------------------------------------------------- beam search


def chain(transitions):
  """A one-row first-order table from {previous token: {next token: probability}}."""
  probs = np.full((V, V), 1e-9)
  for prev, nexts in transitions.items():
    probs[prev, list(nexts)] = list(nexts.values())
  return np.log(probs / probs.sum(-1, keepdims=True)).astype(np.float32)[None]


def greedy_is_wrong_table():
  """Greedy takes a then EOS (0.6 * 0.4 = 0.24); "b EOS" is more probable (0.4 * 0.9)."""
  return chain({BOS: {A: 0.6, B_: 0.4}, A: {EOS: 0.4, A: 0.35, B_: 0.25},
                B_: {EOS: 0.9, A: 0.05, B_: 0.05}})


def test_beam_search_beats_greedy_where_brute_force_says_so():
  table = greedy_is_wrong_table()
  _, _, logp_next = first_order(table)
  best_score, best_seq = brute_force(logp_next, 0, 3, 0.0)[0]
  assert best_seq == (B_, EOS)
  np.testing.assert_array_equal(run_greedy(first_order, table, 3, 1)[0], padded((A, EOS), 3))
  seqs, scores = run_beam(first_order, table, 3, 1, 2, 0.0)
  np.testing.assert_array_equal(seqs[0, 0], padded(best_seq, 3))
  np.testing.assert_allclose(scores[0, 0], best_score, rtol=1e-5)
  np.testing.assert_allclose(scores[0, 0], np.log(0.4 * 0.9), rtol=1e-5)


@pytest.mark.parametrize('make_model', ['first_order', 'second_order_with_counter'])
@pytest.mark.parametrize('alpha', [0.0, 0.6, 2.0])
def test_exhaustive_beam_equals_brute_force_ranking(make_model, alpha):
  """With K >= every candidate, the K finished beams are exactly the top of all sequences.

  The second-order model checks that the cache (previous token and a step counter) follows
  each beam through the reordering.
  """
  max_len, batch, K = 4, 3, 3 * 2 ** 3  # 2^t alive prefixes x 3 continuations at step t
  rng = np.random.default_rng(4)
  if make_model == 'first_order':
    model, params = first_order, random_logits(rng, (batch, V))
  else:
    model, params = second_order_batch_of_3, random_logits(rng, (V, V))
  seqs, scores = run_beam(model, params, max_len, batch, K, alpha)
  logp_next = model(params)[2]
  for row in range(batch):
    ranking = brute_force(logp_next, row, max_len, alpha)  # all 15 sequences
    np.testing.assert_allclose(scores[row, :15], [s for s, _ in ranking], rtol=1e-5)
    np.testing.assert_array_equal(seqs[row, :15], [padded(q, max_len) for _, q in ranking])
    assert np.all(np.isneginf(scores[row, 15:]))


@pytest.mark.parametrize('beam_size', [1, 2, 3])
@pytest.mark.parametrize('alpha', [0.0, 1.0])
def test_narrow_beam_with_early_stop_matches_python_reference(beam_size, alpha):
  batch, max_len = 8, 6
  _, _, logp_next = first_order(TABLE)
  seqs, scores = run_beam(first_order, TABLE, max_len, batch, beam_size, alpha)
  for row in range(batch):
    score, seq = reference_beam_search(logp_next, row, beam_size, max_len, alpha)
    np.testing.assert_array_equal(seqs[row, 0], padded(seq, max_len))
    np.testing.assert_allclose(scores[row, 0], score, rtol=1e-5)


def test_beam_size_1_without_length_penalty_is_greedy():
  seqs, _ = run_beam(first_order, TABLE, 6, 8, 1, 0.0)
  np.testing.assert_array_equal(seqs[:, 0], run_greedy(first_order, TABLE, 6, 8))


# From BOS: EOS 0.55, a 0.45. "EOS" has log p = log 0.55 and lp(1) = 1 for every alpha; the
# longer endings are less probable but divided by a larger lp(n) = ((5 + n) / 6)^alpha.
ONE_MORE = chain({BOS: {EOS: 0.55, A: 0.45}, A: {EOS: 0.95, A: 0.05}})  # "a EOS": 0.4275
TWO_MORE = chain({BOS: {EOS: 0.55, A: 0.45}, A: {B_: 0.99}, B_: {EOS: 0.99}})  # "a b EOS"


@pytest.mark.parametrize('table,alpha,winner', [
    (ONE_MORE, 0.0, (EOS,)), (ONE_MORE, 3.0, (A, EOS)),
    (TWO_MORE, 0.0, (EOS,)), (TWO_MORE, 1.5, (A, B_, EOS))])
def test_length_penalty_decides_between_a_short_and_a_long_ending(table, alpha, winner):
  _, _, logp_next = first_order(table)
  best_score, best_seq = brute_force(logp_next, 0, 3, alpha)[0]
  assert best_seq == winner
  n = len(winner)
  np.testing.assert_allclose(best_score, log_prob(logp_next, 0, winner) / ((5 + n) / 6) ** alpha)
  # K = 1 has "EOS" finished after one step and must keep going with "a": for TWO_MORE,
  # log p("a") / lp(2) is still below log 0.55, and only the bound at lp(max_len) is not.
  for beam_size in (1, 2):
    seqs, scores = run_beam(first_order, table, 3, 1, beam_size, alpha)
    np.testing.assert_array_equal(seqs[0, 0], padded(winner, 3))
    np.testing.assert_allclose(scores[0, 0], best_score, rtol=1e-5)


def test_expand_and_gather_beams():
  tree = {'h': jnp.arange(6).reshape(2, 3), 'c': jnp.array([10, 20])}
  tiled = decoding.expand_to_beams(tree, 2)
  np.testing.assert_array_equal(tiled['c'], [10, 10, 20, 20])
  tiled = {'h': tiled['h'] + jnp.arange(4)[:, None] * 100, 'c': tiled['c']}
  picked = decoding.gather_beams(tiled, jnp.array([[1, 1], [1, 0]]), 2, 2)
  np.testing.assert_array_equal(picked['h'][:, 0], [100, 100, 303, 203])

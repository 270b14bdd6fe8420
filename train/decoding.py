"""Autoregressive decoding inside jit: greedy, sampling, and beam search.

A model is seen only through one step function

    step_fn(tokens_B, cache, step) -> (logits_BxV, new_cache)

which reads the token fed at position `step` (BOS at step 0) and returns the logits of the
next token. `cache` is any pytree whose leaves have a leading batch axis (RNN state, attention
keys/values, a step counter); beam search runs the model on B*K rows laid out batch-major
(row b*K + k is beam k of example b) and reorders the cache with `jax.tree.map`. Anything
else with a batch axis that `step_fn` closes over (encoder outputs, source masks) must be
tiled to beams by the caller with `expand_to_beams`.

Every decoder writes tokens_BxT with T = max_len generated tokens (BOS excluded, EOS
included) and pad 0 after EOS. Loops are `lax.while_loop`s over static shapes that stop
early once nothing can change.

Beam search scores a finished hypothesis y (EOS included, |y| tokens) with the GNMT length
penalty (Wu et al., 2016):

    score(y) = log p(y) / lp(|y|),      lp(n) = ((5 + n) / 6)^alpha

At each step the K alive beams expand to K*V candidates, of which the best 2K are kept; at
most K of those end in EOS, so at least K continue. An EOS candidate joins the finished set
only if it ranks among the best K (as in fairseq), which makes K = 1 exactly greedy when
alpha = 0. The search stops when no alive beam can beat the worst finished one: log p only
falls as a beam grows, so an alive beam of log probability s scores at most s / max lp(n)
over the lengths n it can still reach.
"""

import functools
from typing import Any, Callable

import jax
import jax.numpy as jnp

StepFn = Callable[[jax.Array, Any, jax.Array], tuple[jax.Array, Any]]
PAD_ID = 0


# ---------------------------------------------------------------------------- logit filters


def apply_temperature(logits_BxV, temperature: float):
  """z / tau: tau < 1 sharpens the distribution, tau > 1 flattens it."""
  return logits_BxV / temperature


def top_k_filter(logits_BxV, k: int):
  """Keeps the k largest logits of each row and sets the rest to -inf (k = 0: keep all).

  Ties with the k-th largest logit are all kept.
  """
  if k <= 0 or k >= logits_BxV.shape[-1]:
    return logits_BxV
  kth_largest_Bx1 = jax.lax.top_k(logits_BxV, k)[0][:, -1:]
  return jnp.where(logits_BxV >= kth_largest_Bx1, logits_BxV, -jnp.inf)


def top_p_filter(logits_BxV, p: float):
  """Nucleus filter (Holtzman et al., 2020): keeps the smallest set of most probable tokens
  whose total probability is at least p, and sets the rest to -inf (p = 1: keep all).

  Sorted by probability, token i is kept iff the mass of the tokens before it is < p, so the
  most probable token is always kept.
  """
  if p >= 1.0:
    return logits_BxV
  sorted_BxV = jnp.sort(logits_BxV, axis=-1)[:, ::-1]
  probs_BxV = jax.nn.softmax(sorted_BxV, axis=-1)
  mass_before_BxV = jnp.cumsum(probs_BxV, axis=-1) - probs_BxV
  kept_BxV = mass_before_BxV < p
  smallest_kept_Bx1 = jnp.min(jnp.where(kept_BxV, sorted_BxV, jnp.inf), -1, keepdims=True)
  return jnp.where(logits_BxV >= smallest_kept_Bx1, logits_BxV, -jnp.inf)


# ------------------------------------------------------------------ greedy and sampling


def _decode_one_by_one(step_fn: StepFn, cache, choose, bos_id, eos_id, max_len, batch_size):
  """Runs tokens = choose(logits, step) until every row has emitted EOS or max_len."""

  def cond(carry):
    step, _, _, _, finished_B = carry
    return (step < max_len) & ~jnp.all(finished_B)

  def body(carry):
    step, last_B, cache, tokens_BxT, finished_B = carry
    logits_BxV, cache = step_fn(last_B, cache, step)
    next_B = jnp.where(finished_B, PAD_ID, choose(logits_BxV, step)).astype(jnp.int32)
    tokens_BxT = tokens_BxT.at[:, step].set(next_B)
    return step + 1, next_B, cache, tokens_BxT, finished_B | (next_B == eos_id)

  carry = (jnp.int32(0), jnp.full((batch_size,), bos_id, jnp.int32), cache,
           jnp.full((batch_size, max_len), PAD_ID, jnp.int32),
           jnp.zeros((batch_size,), bool))
  return jax.lax.while_loop(cond, body, carry)[3]


def greedy(step_fn: StepFn, cache, bos_id: int, eos_id: int, max_len: int,
           batch_size: int) -> jax.Array:
  """y_t = argmax_v p(v | y_<t); returns tokens_BxT (T = max_len, pad 0 after EOS)."""
  choose = lambda logits_BxV, step: jnp.argmax(logits_BxV, axis=-1)
  return _decode_one_by_one(step_fn, cache, choose, bos_id, eos_id, max_len, batch_size)


def sample(step_fn: StepFn, cache, rng, bos_id: int, eos_id: int, max_len: int,
           batch_size: int, temperature: float = 1.0, top_k: int = 0,
           top_p: float = 1.0) -> jax.Array:
  """y_t ~ softmax(filter(z_t / temperature)), filters applied as top-k then top-p.

  Returns tokens_BxT (T = max_len, pad 0 after EOS). Each step draws with its own key,
  fold_in(rng, step), so results do not depend on how many steps ran before.
  """
  if isinstance(temperature, (int, float)) and temperature <= 0:
    raise ValueError(f'sample() got temperature={temperature}; it must be > 0 '
                     '(for the most probable tokens, call greedy() instead).')

  def choose(logits_BxV, step):
    logits_BxV = apply_temperature(logits_BxV.astype(jnp.float32), temperature)
    logits_BxV = top_p_filter(top_k_filter(logits_BxV, top_k), top_p)
    return jax.random.categorical(jax.random.fold_in(rng, step), logits_BxV, axis=-1)

  return _decode_one_by_one(step_fn, cache, choose, bos_id, eos_id, max_len, batch_size)


# ------------------------------------------------------------------------- beam search


def gnmt_length_penalty(length, alpha: float):
  """GNMT lp(n) = ((5 + n) / 6)^alpha."""
  return ((5.0 + length) / 6.0) ** alpha


def expand_to_beams(tree, beam_size: int):
  """Repeats every leaf [B, ...] -> [B*K, ...], beam-minor (row b*K + k)."""
  return jax.tree.map(lambda x: jnp.repeat(x, beam_size, axis=0), tree)


def gather_beams(tree, beam_idx_BxN, batch_size: int, beam_size: int):
  """new[b*N + n] = old[b*K + beam_idx[b, n]] for every leaf [B*K, ...] -> [B*N, ...]."""
  num = beam_idx_BxN.shape[1]

  def gather(x):
    x_BxKx_ = x.reshape(batch_size, beam_size, *x.shape[1:])
    idx = beam_idx_BxN.reshape(batch_size, num, *([1] * (x.ndim - 1)))
    picked = jnp.take_along_axis(x_BxKx_, idx, axis=1)
    return picked.reshape(batch_size * num, *x.shape[1:])

  return jax.tree.map(gather, tree)


def _take(x_BxKx_, idx_BxN):
  """x[b, idx[b, n], ...] for arrays with batch and beam axes leading."""
  idx = idx_BxN.reshape(*idx_BxN.shape, *([1] * (x_BxKx_.ndim - 2)))
  return jnp.take_along_axis(x_BxKx_, idx, axis=1)


def beam_search(step_fn: StepFn, cache, bos_id: int, eos_id: int, max_len: int,
                batch_size: int, beam_size: int, length_penalty: float = 0.6,
                return_all_beams: bool = False):
  """Batched beam search with a GNMT length penalty (see the module docstring).

  Args:
    step_fn: (tokens_B, cache, step) -> (logits_BxV, cache), called on B*K rows.
    cache: pytree of [B, ...] leaves; tiled to [B*K, ...] here.
    bos_id, eos_id: start and end tokens.
    max_len: number of tokens to generate at most (EOS included).
    batch_size, beam_size: B and K.
    length_penalty: alpha of lp(n); 0 ranks by log p(y) alone.
    return_all_beams: also return the other K - 1 hypotheses.

  Returns:
    (tokens_BxT, scores_B) for the best hypothesis, or (tokens_BxKxT, scores_BxK) sorted
    best first if return_all_beams. A score is log p(y) / lp(|y|); -inf marks an empty
    slot. Examples where no beam reached EOS fall back to their alive beams, scored as if
    they ended at max_len.
  """
  B, K, T = batch_size, beam_size, max_len
  lp = functools.partial(gnmt_length_penalty, alpha=length_penalty)
  neg_inf = jnp.float32(-jnp.inf)

  def best_possible_BxK(alive_logp_BxK, step):
    # lp is monotonic in n, so its maximum over the reachable lengths is at an end.
    return alive_logp_BxK / jnp.maximum(lp(step + 1.0), lp(float(T)))

  def cond(carry):
    step, alive_logp_BxK, finished_score_BxK = carry[0], carry[2], carry[5]
    best_alive_B = jnp.max(best_possible_BxK(alive_logp_BxK, step), axis=1)
    worst_finished_B = jnp.min(finished_score_BxK, axis=1)
    return (step < T) & jnp.any(best_alive_B > worst_finished_B)

  def body(carry):
    step, alive_seq_BxKxT, alive_logp_BxK, cache, finished_seq_BxKxT, finished_score_BxK = carry
    last_BK = jnp.where(step == 0, bos_id, alive_seq_BxKxT[:, :, jnp.maximum(step - 1, 0)])
    logits_BKxV, cache = step_fn(last_BK.reshape(B * K), cache, step)
    V = logits_BKxV.shape[-1]
    if V < 2:  # top_k below takes 2K of the K*V extensions
      raise ValueError(f'beam_search needs at least 2 vocabulary entries; step_fn returned '
                       f'{V} logits per row.')
    logp_BxKxV = jax.nn.log_softmax(logits_BKxV.astype(jnp.float32)).reshape(B, K, V)
    cand_logp_BxKV = (alive_logp_BxK[:, :, None] + logp_BxKxV).reshape(B, K * V)

    # The best 2K of the K*V one-token extensions.
    cand_logp_Bx2K, flat_idx_Bx2K = jax.lax.top_k(cand_logp_BxKV, 2 * K)
    cand_beam_Bx2K, cand_token_Bx2K = flat_idx_Bx2K // V, flat_idx_Bx2K % V
    cand_seq_Bx2KxT = _take(alive_seq_BxKxT, cand_beam_Bx2K).at[:, :, step].set(
        cand_token_Bx2K)
    is_eos_Bx2K = cand_token_Bx2K == eos_id

    # Alive: the best K extensions that did not end.
    alive_logp_BxK, keep_BxK = jax.lax.top_k(jnp.where(is_eos_Bx2K, neg_inf, cand_logp_Bx2K),
                                             K)
    alive_seq_BxKxT = _take(cand_seq_Bx2KxT, keep_BxK)
    cache = gather_beams(cache, _take(cand_beam_Bx2K, keep_BxK), B, K)

    # Finished: the old finished set and EOS candidates ranked within the best K.
    in_top_k_1x2K = (jnp.arange(2 * K) < K)[None, :]
    new_score_Bx2K = jnp.where(is_eos_Bx2K & in_top_k_1x2K,
                               cand_logp_Bx2K / lp(step + 1.0), neg_inf)
    pool_score_Bx3K = jnp.concatenate([finished_score_BxK, new_score_Bx2K], axis=1)
    pool_seq_Bx3KxT = jnp.concatenate([finished_seq_BxKxT, cand_seq_Bx2KxT], axis=1)
    finished_score_BxK, best_BxK = jax.lax.top_k(pool_score_Bx3K, K)
    finished_seq_BxKxT = _take(pool_seq_Bx3KxT, best_BxK)
    return (step + 1, alive_seq_BxKxT, alive_logp_BxK, cache, finished_seq_BxKxT,
            finished_score_BxK)

  # All K beams start identical, so only beam 0 may expand at the first step.
  first_logp_1xK = jnp.where(jnp.arange(K) == 0, 0.0, neg_inf)[None, :]
  carry = (jnp.int32(0), jnp.full((B, K, T), PAD_ID, jnp.int32),
           jnp.broadcast_to(first_logp_1xK, (B, K)), expand_to_beams(cache, K),
           jnp.full((B, K, T), PAD_ID, jnp.int32), jnp.full((B, K), neg_inf))
  _, alive_seq_BxKxT, alive_logp_BxK, _, finished_seq_BxKxT, finished_score_BxK = (
      jax.lax.while_loop(cond, body, carry))

  any_finished_B = jnp.isfinite(finished_score_BxK[:, 0])
  seq_BxKxT = jnp.where(any_finished_B[:, None, None], finished_seq_BxKxT, alive_seq_BxKxT)
  score_BxK = jnp.where(any_finished_B[:, None], finished_score_BxK,
                        alive_logp_BxK / lp(float(T)))
  if return_all_beams:
    return seq_BxKxT, score_BxK
  return seq_BxKxT[:, 0], score_BxK[:, 0]

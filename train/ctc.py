"""Connectionist temporal classification (Graves et al., 2006): loss, decoding, error rates.

A frame-wise softmax over K classes (class 0 is the blank) defines p(pi | x) for every
alignment pi of length T; the collapse map B removes repeats, then blanks ("aa-ab" -> "aab").
The probability of a label sequence sums over every alignment that collapses to it:

    p(y | x) = sum_{pi : B(pi) = y} prod_t p(pi_t | x),      loss = -log p(y | x)

optax.ctc_loss computes it with the forward algorithm. Decoding looks for argmax_y p(y | x):
best path (greedy) collapses the single most probable alignment, which can miss the best y
when its mass is spread over many alignments; prefix beam search (Hannun et al., 2014)
keeps, for each candidate prefix, the mass of alignments ending in a blank (p_b) and in its
last label (p_nb), so that the probability of a prefix sums over its alignments.
"""

import collections
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np
import optax

BLANK_ID = 0


def ctc_loss(logits_BxTxK, logit_paddings_BxT, labels_BxN, label_paddings_BxN):
  """-log p(y | x) per example: [B]. Paddings are 1.0 at padded positions (right-padded)."""
  return optax.ctc_loss(logits_BxTxK.astype(jnp.float32), logit_paddings_BxT, labels_BxN,
                        label_paddings_BxN, blank_id=BLANK_ID)


def greedy_decode(logits_BxTxK, logit_paddings_BxT):
  """Best path: argmax per frame, collapse repeats, remove blanks; jittable, static shapes.

  Returns:
    labels_BxT, left-aligned and padded with 0, and label_paddings_BxT (1.0 = padding), the
    same format ctc_loss takes.
  """
  best_BxT = jnp.argmax(logits_BxTxK, axis=-1).astype(jnp.int32)
  best_BxT = jnp.where(logit_paddings_BxT > 0, BLANK_ID, best_BxT)
  previous_BxT = jnp.pad(best_BxT[:, :-1], ((0, 0), (1, 0)), constant_values=BLANK_ID)
  keep_BxT = (best_BxT != previous_BxT) & (best_BxT != BLANK_ID)
  # Frame t's label goes to slot (number of kept frames before it); dropped frames go to
  # slot T, which is out of range and discarded.
  B, T = best_BxT.shape
  slot_BxT = jnp.where(keep_BxT, jnp.cumsum(keep_BxT, axis=1) - 1, T)
  rows_BxT = jnp.broadcast_to(jnp.arange(B)[:, None], (B, T))
  labels_BxT = jnp.zeros((B, T), jnp.int32).at[rows_BxT, slot_BxT].set(best_BxT, mode='drop')
  lengths_Bx1 = jnp.sum(keep_BxT, axis=1, keepdims=True)
  label_paddings_BxT = (jnp.arange(T)[None, :] >= lengths_Bx1).astype(jnp.float32)
  return labels_BxT, label_paddings_BxT


def unpad(labels_BxN, label_paddings_BxN) -> list[list[int]]:
  """Padded label arrays -> one Python list of labels per example."""
  labels, paddings = np.asarray(labels_BxN), np.asarray(label_paddings_BxN)
  return [row[pad == 0].tolist() for row, pad in zip(labels, paddings)]


def prefix_beam_search(log_probs_TxK, beam_width: int = 8):
  """Prefix beam search over one utterance's frame log-probabilities (host, NumPy).

  For each prefix l the search carries log p_b(l) and log p_nb(l), the probability of the
  frames so far over alignments that collapse to l and end in a blank / in l's last label.
  At frame t, with p = p(. | frame t):
    blank:                  p_b(l)     += (p_b(l) + p_nb(l)) p(blank)
    repeat of last c of l:  p_nb(l)    += p_nb(l) p(c)        (collapses into l)
                            p_nb(l + c) += p_b(l) p(c)        (a blank separated them)
    other label c:          p_nb(l + c) += (p_b(l) + p_nb(l)) p(c)
  and the beam_width prefixes with the largest p_b + p_nb survive.

  Returns:
    [(labels tuple, log p(labels | x))] for the surviving prefixes, most probable first.
    With a beam wide enough never to prune, the log probabilities are exact.
  """
  log_probs_TxK = np.asarray(log_probs_TxK, np.float64)
  beams = {(): (0.0, -np.inf)}  # prefix -> (log p_b, log p_nb)
  for log_p_K in log_probs_TxK:
    grown = collections.defaultdict(lambda: [-np.inf, -np.inf])
    for prefix, (log_pb, log_pnb) in beams.items():
      log_total = np.logaddexp(log_pb, log_pnb)
      stay = grown[prefix]
      stay[0] = np.logaddexp(stay[0], log_total + log_p_K[BLANK_ID])
      for c in range(log_p_K.shape[0]):
        if c == BLANK_ID:
          continue
        extended = grown[prefix + (c,)]
        if prefix and prefix[-1] == c:
          stay[1] = np.logaddexp(stay[1], log_pnb + log_p_K[c])
          extended[1] = np.logaddexp(extended[1], log_pb + log_p_K[c])
        else:
          extended[1] = np.logaddexp(extended[1], log_total + log_p_K[c])
    # Prefixes no alignment reaches yet (such as "aa" after one frame) have p = 0: dropped.
    ranked = sorted(((np.logaddexp(*logs), prefix, logs) for prefix, logs in grown.items()
                     if np.logaddexp(*logs) > -np.inf), key=lambda item: -item[0])
    beams = {prefix: tuple(logs) for _, prefix, logs in ranked[:beam_width]}
  return [(prefix, float(np.logaddexp(*logs))) for prefix, logs in beams.items()]


def beam_decode(logits_BxTxK, logit_paddings_BxT, beam_width: int = 8) -> list[list[int]]:
  """The most probable label sequence of each example by prefix beam search."""
  log_probs = np.asarray(jax.nn.log_softmax(jnp.asarray(logits_BxTxK, jnp.float32)))
  frames = np.asarray(logit_paddings_BxT) == 0
  return [list(prefix_beam_search(lp[keep], beam_width)[0][0])
          for lp, keep in zip(log_probs, frames)]


def edit_distance(hypothesis: Sequence, reference: Sequence) -> int:
  """Levenshtein distance: fewest insertions, deletions and substitutions (dynamic program).

  d[i][j] = min(d[i-1][j] + 1, d[i][j-1] + 1, d[i-1][j-1] + [h_i != r_j]).
  """
  previous = list(range(len(reference) + 1))
  for i, h in enumerate(hypothesis, 1):
    current = [i]
    for j, r in enumerate(reference, 1):
      current.append(min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (h != r)))
    previous = current
  return previous[-1]


def character_error_rate(hypotheses: Sequence[Sequence], references: Sequence[Sequence]):
  """Corpus CER = sum of edit distances / sum of reference lengths (strings or label lists)."""
  errors = sum(edit_distance(h, r) for h, r in zip(hypotheses, references, strict=True))
  return errors / max(sum(len(r) for r in references), 1)


def sequence_accuracy(hypotheses: Sequence[Sequence], references: Sequence[Sequence]):
  """Fraction of examples decoded exactly right."""
  pairs = list(zip(hypotheses, references, strict=True))
  return sum(list(h) == list(r) for h, r in pairs) / max(len(pairs), 1)

"""Corpus BLEU (Papineni et al., 2002) on detokenized text, as sacreBLEU computes it by default.

Both sides are tokenized with mteval-v13a's rules ("13a"), n-grams are counted over the
whole corpus (one reference per hypothesis), and

    p_n  = sum_s |hyp_s n-grams matched in ref_s, clipped to the ref counts| / sum_s |hyp_s n-grams|
    BP   = 1 if c >= r else exp(1 - r / c)        c, r: total hypothesis / reference tokens
    BLEU = 100 * BP * exp((1/4) sum_{n=1..4} log p_n)

An order with no match at all would make BLEU 0; like sacreBLEU's default ('exp', the NIST
smoothing of mteval-v13a) it is instead given p_n = 1 / (2^k * total_n), k = 1, 2, ... for
the first, second, ... such order. BLEU is 0 if nothing matches or some order has no n-grams.
Scores are percentages, like sacreBLEU's: bleu and precisions in [0, 100].
"""

import collections
import math
import re
from collections.abc import Sequence

MAX_ORDER = 4

# mteval-v13a's language-dependent rules (Western languages), applied in order.
_13A_RULES = (
    # Space out ASCII punctuation and symbols, except . , - and ' (handled below or kept):
    # { | } ~  [ \ ] ^ _ `  space ! " # $ % &  ( ) * +  : ; < = > ? @  /
    (re.compile(r'([\{-\~\[-\` -\&\(-\+\:-\@\/])'), r' \1 '),
    (re.compile(r'([^0-9])([\.,])'), r'\1 \2 '),  # period, comma not after a digit
    (re.compile(r'([\.,])([^0-9])'), r' \1 \2'),  # period, comma not before a digit
    (re.compile(r'([0-9])(-)'), r'\1 \2 '),  # dash after a digit
)


def tokenize_13a(line: str) -> str:
  """mteval-v13a tokenization: "It costs $3.50, right?" -> "It costs $ 3.50 , right ?"."""
  line = line.replace('<skipped>', '').replace('-\n', '').replace('\n', ' ')
  if '&' in line:  # unescape the XML entities mteval's input could carry
    for entity, char in (('&quot;', '"'), ('&amp;', '&'), ('&lt;', '<'), ('&gt;', '>')):
      line = line.replace(entity, char)
  line = f' {line} '
  for pattern, replacement in _13A_RULES:
    line = pattern.sub(replacement, line)
  return ' '.join(line.split())


def ngram_counts(tokens: Sequence[str], max_order: int = MAX_ORDER) -> collections.Counter:
  """Counts of every n-gram (as a tuple), 1 <= n <= max_order."""
  return collections.Counter(tuple(tokens[i:i + n]) for n in range(1, max_order + 1)
                             for i in range(len(tokens) - n + 1))


def sentence_statistics(hypothesis: str, reference: str, max_order: int = MAX_ORDER):
  """(hyp length, ref length, matches per order, hyp n-grams per order) of one pair."""
  hyp = tokenize_13a(hypothesis.rstrip()).split()
  ref = tokenize_13a(reference.rstrip()).split()
  hyp_counts, ref_counts = ngram_counts(hyp, max_order), ngram_counts(ref, max_order)
  matches, totals = [0] * max_order, [0] * max_order
  for ngram, count in hyp_counts.items():
    totals[len(ngram) - 1] += count
    matches[len(ngram) - 1] += min(count, ref_counts[ngram])  # clipped to the reference
  return len(hyp), len(ref), matches, totals


def brevity_penalty(sys_len: int, ref_len: int) -> float:
  """1 if c >= r, else exp(1 - r / c) (and 0 for an empty output)."""
  if sys_len >= ref_len:
    return 1.0
  return math.exp(1.0 - ref_len / sys_len) if sys_len > 0 else 0.0


def bleu_from_statistics(matches, totals, sys_len, ref_len) -> dict:
  """BLEU from corpus-level counts, with sacreBLEU's default 'exp' smoothing."""
  bp = brevity_penalty(sys_len, ref_len)
  precisions = [0.0] * len(totals)
  smoothing = 1.0
  for n, (matched, total) in enumerate(zip(matches, totals)):
    if total == 0 or not any(matches):
      break
    if matched == 0:
      smoothing *= 2.0
      precisions[n] = 100.0 / (smoothing * total)
    else:
      precisions[n] = 100.0 * matched / total
  if all(p > 0 for p in precisions):
    bleu = bp * math.exp(sum(math.log(p) for p in precisions) / len(precisions))
  else:
    bleu = 0.0
  return {'bleu': bleu, 'precisions': precisions, 'bp': bp, 'sys_len': sys_len,
          'ref_len': ref_len, 'matches': list(matches), 'totals': list(totals)}


def corpus_bleu(hypotheses: Sequence[str], references: Sequence[str],
                max_order: int = MAX_ORDER) -> dict:
  """Corpus BLEU of detokenized hypotheses against one detokenized reference each.

  Returns:
    {'bleu', 'precisions' (per order, %), 'bp', 'sys_len', 'ref_len', 'matches', 'totals'}.
  """
  if len(hypotheses) != len(references):
    raise ValueError(f'corpus_bleu got {len(hypotheses)} hypotheses but {len(references)} '
                     'references; pass exactly one reference string per hypothesis.')
  sys_len = ref_len = 0
  matches, totals = [0] * max_order, [0] * max_order
  for hypothesis, reference in zip(hypotheses, references):
    h, r, m, t = sentence_statistics(hypothesis, reference, max_order)
    sys_len, ref_len = sys_len + h, ref_len + r
    matches = [a + b for a, b in zip(matches, m)]
    totals = [a + b for a, b in zip(totals, t)]
  return bleu_from_statistics(matches, totals, sys_len, ref_len)

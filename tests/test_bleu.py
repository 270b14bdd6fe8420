"""Corpus BLEU: hand-counted n-grams, closed forms, and sacreBLEU where it is installed."""

import math

import numpy as np
import pytest

from train import bleu


def test_13a_tokenizer_on_hand_tokenized_lines():
  cases = {
      'Hello, world!': 'Hello , world !',
      'It costs $3.50, right?': 'It costs $ 3.50 , right ?',
      "Don't re-use 1,000 items.": "Don't re-use 1,000 items .",
      'pages 10-12 (see "notes")': 'pages 10 - 12 ( see " notes " )',
      'A &amp; B &lt;3': 'A & B < 3',
      '  spaced\tout \n words ': 'spaced out words',
      'end.': 'end .',
  }
  for line, expected in cases.items():
    assert bleu.tokenize_13a(line) == expected, line


def test_identical_corpus_scores_100():
  corpus = ['The quick brown fox jumps over the lazy dog.', 'Hello there, general Kenobi!']
  result = bleu.corpus_bleu(corpus, corpus)
  assert result['bleu'] == pytest.approx(100.0)
  assert result['precisions'] == pytest.approx([100.0] * 4)
  assert result['bp'] == 1.0


def test_hand_counted_example():
  hyps = ['the cat sat on the mat', 'a dog barked.']
  refs = ['the cat is on the mat', 'the dog barked loudly.']
  # Sentence 1, 6 tokens each. Matched / total n-grams:
  #   1: the x2, cat, on, mat = 5/6      2: "the cat", "on the", "the mat" = 3/5
  #   3: "on the mat" = 1/4              4: 0/3
  # Sentence 2: "a dog barked ." (4 tokens) against "the dog barked loudly ." (5):
  #   1: dog, barked, . = 3/4            2: "dog barked" = 1/3
  #   3: 0/2                             4: 0/1
  matches, totals = [5 + 3, 3 + 1, 1 + 0, 0 + 0], [6 + 4, 5 + 3, 4 + 2, 3 + 1]
  # No 4-gram matches anywhere: 'exp' smoothing gives p_4 = 1 / (2 * 4).
  precisions = [m / t for m, t in zip(matches[:3], totals[:3])] + [1 / (2 * totals[3])]
  bp = math.exp(1 - 11 / 10)  # c = 10 < r = 11
  expected = 100 * bp * math.exp(sum(math.log(p) for p in precisions) / 4)

  result = bleu.corpus_bleu(hyps, refs)
  assert (result['sys_len'], result['ref_len']) == (10, 11)
  assert result['matches'] == matches and result['totals'] == totals
  assert result['precisions'] == pytest.approx([100 * p for p in precisions])
  assert result['bp'] == pytest.approx(bp)
  assert result['bleu'] == pytest.approx(expected)


def test_brevity_penalty_closed_form():
  """A hypothesis that is a prefix of its reference matches every n-gram, so
  BLEU = 100 * BP = 100 * exp(1 - r / c)."""
  refs = ['one two three four five six seven eight nine ten', 'a b c d e f g h']
  for c1, c2 in ((6, 4), (10, 5), (10, 8)):
    hyps = [' '.join(refs[0].split()[:c1]), ' '.join(refs[1].split()[:c2])]
    result = bleu.corpus_bleu(hyps, refs)
    c, r = c1 + c2, 18
    expected_bp = 1.0 if c >= r else math.exp(1 - r / c)
    assert result['bp'] == pytest.approx(expected_bp)
    assert result['bleu'] == pytest.approx(100 * expected_bp)
  # Longer than the reference: no penalty; precisions alone lower the score.
  assert bleu.corpus_bleu([refs[1] + ' x y'], [refs[1]])['bp'] == 1.0


def test_no_match_and_empty_output_score_zero():
  assert bleu.corpus_bleu(['x y z w'], ['a b c d'])['bleu'] == 0.0
  result = bleu.corpus_bleu([''], ['a b c d'])
  assert result['bleu'] == 0.0 and result['bp'] == 0.0
  # Fewer than 4 tokens in the whole corpus: no 4-grams at all, so BLEU is 0.
  assert bleu.corpus_bleu(['a b c'], ['a b c'])['bleu'] == 0.0


def random_corpus(rng, size):
  """Sentence pairs with punctuation, numbers and partial overlap."""
  words = ['the', 'cat', 'dog', 'sat', 'on', 'mat', 'a', 'big', 'house', "isn't", 'U.S.',
           '3.5', '1,000', '10-12', 'co-op', '(yes)', '"quoted"', 'end.', 'pause,', 'why?',
           'wow!', '&amp;', 'x/y', '$5', '50%', 'e-mail', 'Mr.', 'A', 'B', 'C']
  hyps, refs = [], []
  for _ in range(size):
    ref = list(rng.choice(words, rng.integers(1, 15)))
    hyp = [w if rng.random() < 0.7 else str(rng.choice(words)) for w in ref]
    hyp = hyp[:rng.integers(0, len(hyp) + 3)]
    refs.append(' '.join(ref))
    hyps.append(' '.join(hyp) + rng.choice(['', '.', ' .', '!', '  ']))
  return hyps, refs


def test_matches_sacrebleu():
  sacrebleu = pytest.importorskip('sacrebleu')
  rng = np.random.default_rng(0)
  corpora = [random_corpus(rng, n) for n in (1, 2, 5, 30, 200)]
  corpora += [(['a b c d e'], ['a x b y c']),  # matches only at n = 1: 'exp' smoothing x3
              (['Hello, world!'], ['Hello world!']),
              (['a hyphen-\nated line ending co-\n'], ['a hyphenated line ending co-'])]
  for hyps, refs in corpora:
    ours = bleu.corpus_bleu(hyps, refs)
    theirs = sacrebleu.corpus_bleu(hyps, [refs])
    assert ours['bleu'] == pytest.approx(theirs.score, abs=1e-9)
    assert ours['precisions'] == pytest.approx(theirs.precisions, abs=1e-9)
    assert ours['bp'] == pytest.approx(theirs.bp)
    assert (ours['sys_len'], ours['ref_len']) == (theirs.sys_len, theirs.ref_len)
  tokenizer = sacrebleu.tokenizers.tokenizer_13a.Tokenizer13a()
  for line in corpora[-3][0] + corpora[-3][1]:
    assert bleu.tokenize_13a(line) == tokenizer(line)

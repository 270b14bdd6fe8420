"""Extractive QA: best-span decoding, the generated CoNLL questions, the span loss, and a
tiny BERT that learns to answer."""

import itertools

import jax
import numpy as np
import pytest
from conftest import SHARED_DATA
from ml_collections import ConfigDict

from nets.bert import best_spans
from train.data import qa, registry
from train.data.tokenizers import CLS, SEP
from train.span_tasks import SpanExtraction, span_scores


def brute_force_span(start_T, end_T, allowed_T, max_len):
  """The best (i, j) by trying every pair: i <= j < i + max_len, both allowed."""
  pairs = [(i, j) for i, j in itertools.product(range(len(start_T)), repeat=2)
           if allowed_T[i] and allowed_T[j] and i <= j < i + max_len]
  return max(pairs, key=lambda p: start_T[p[0]] + end_T[p[1]])


@pytest.mark.parametrize('max_len', [1, 3, 20])
def test_best_span_is_the_brute_force_argmax(max_len):
  rng = np.random.default_rng(max_len)
  start, end = rng.normal(size=(2, 32, 11)).astype(np.float32)
  allowed = rng.random((32, 11)) < 0.6
  allowed[:, 5] = True  # every row has a position to answer from
  start_B, end_B = map(np.asarray, best_spans(start, end, allowed, max_len))
  assert (start_B <= end_B).all() and (end_B < start_B + max_len).all()
  expected = [brute_force_span(*row, max_len) for row in zip(start, end, allowed)]
  np.testing.assert_array_equal(np.stack([start_B, end_B], 1), expected)


def test_span_scores_count_shared_positions():
  rng = np.random.default_rng(0)
  a, b, c, d = rng.integers(0, 12, (4, 200))
  s, e, gs, ge = np.minimum(a, b), np.maximum(a, b), np.minimum(c, d), np.maximum(c, d)
  exact, f1 = map(np.asarray, span_scores(s, e, gs, ge))
  for k in range(200):
    pred, gold = set(range(s[k], e[k] + 1)), set(range(gs[k], ge[k] + 1))
    precision, recall = len(pred & gold) / len(pred), len(pred & gold) / len(gold)
    expected = 2 * precision * recall / (precision + recall) if pred & gold else 0.0
    assert f1[k] == pytest.approx(expected) and exact[k] == (pred == gold)


def test_loss_is_cross_entropy_over_the_context():
  """Start and end cross-entropies over the context positions only; filler rows count 0."""
  rng = np.random.default_rng(1)
  B, T, Q = 5, 9, 3  # context: positions Q..T-2 of rows that are not padded shorter
  inputs = rng.integers(7, 50, (B, T))
  inputs[:, 0], inputs[:, Q - 1], inputs[:, T - 1] = CLS, SEP, SEP
  inputs[1, 6:] = [SEP, 0, 0]  # a shorter row: its context ends at position 5
  segments = np.where(np.arange(T) >= Q, 1, 0)[None].repeat(B, 0) * (inputs != 0)
  batch = {'inputs': inputs, 'segments': segments, 'start': np.array([3, 4, 3, 5, 0]),
           'end': np.array([3, 5, 7, 6, 0]), 'question': np.array([0, 1, 1, 0, 0]),
           'mask': np.array([1, 1, 1, 1, 0], np.float32)}  # the last row fills the batch
  start, end = rng.normal(size=(2, B, T)).astype(np.float32) * 3
  task = SpanExtraction(ConfigDict({'task': 'span_extraction', 'max_answer_len': 30}),
                        {'question_types': ('PER', 'LOC')})
  loss_sum, aux = jax.jit(task.loss_of)(start, end, batch)  # one compilation, not one per op
  expected = 0.0
  for b in range(4):
    context = [t for t in range(T) if segments[b, t] == 1 and inputs[b, t] != SEP]
    for logits, gold in ((start[b], batch['start'][b]), (end[b], batch['end'][b])):
      expected -= logits[gold] - np.log(np.sum(np.exp(logits[context])))
  assert float(loss_sum) == pytest.approx(expected, rel=1e-5)
  assert float(aux.weight) == 4 and float(aux.sums['count']) == 4
  report = task.report(aux.sums)
  assert report['loss'] == pytest.approx(expected / 4, rel=1e-5)
  assert report['questions'] == 4 and 0 <= report['exact_match'] <= report['f1'] <= 1


def iob_entities(tags):
  """(type, first, last) of each entity, read independently of conlleval's code:
  an entity starts at B-X, or at I-X not continuing an X; it goes on over I-X."""
  found = []
  for k, tag in enumerate(tags):
    if tag == 'O':
      continue
    prefix, type_ = tag.split('-', 1)
    if prefix == 'I' and found and found[-1][0] == type_ and found[-1][2] == k - 1:
      found[-1][2] = k
    else:
      found.append([type_, k, k])
  return found


def test_iob1_entities_read_as_conlleval_does():
  tags = ['I-PER', 'I-PER', 'B-PER', 'O', 'I-LOC', 'I-ORG', 'I-ORG', 'O', 'B-MISC']
  assert qa.entities(tags) == [('PER', 0, 1), ('PER', 2, 2), ('LOC', 4, 4), ('ORG', 5, 6),
                               ('MISC', 8, 8)]
  assert [tuple(e) for e in iob_entities(tags)] == qa.entities(tags)


def read_sentences(path, count):
  """The first `count` sentences of a CoNLL file: (words, NER tags) each."""
  sentences, words, tags = [], [], []
  for line in open(path):
    fields = line.split()
    if fields and fields[0] != '-DOCSTART-':
      words.append(fields[0])
      tags.append(fields[-1])
    elif words:
      sentences.append((words, tags))
      words, tags = [], []
  return (sentences + [(words, tags)] * bool(words))[:count]


@pytest.fixture(scope='module')
def small_conll(tmp_path_factory):
  """The first 300 sentences of each of CoNLL-2003's real files, in a temporary folder."""
  if not SHARED_DATA.is_dir():
    pytest.skip(f'{SHARED_DATA} is absent (it only exists on the project machines).')
  folder = tmp_path_factory.mktemp('conll')
  for name in ('train.txt', 'valid.txt', 'test.txt'):
    sentences = read_sentences(SHARED_DATA / 'conll2003' / name, 300)
    (folder / name).write_text('\n\n'.join(
        '\n'.join(f'{w} NN O {t}' for w, t in zip(*s)) for s in sentences) + '\n')
  return folder


def test_questions_answer_with_the_first_entity_of_their_type(small_conll, tmp_path):
  config = ConfigDict({'dataset': 'conll_qa', 'data_dir': str(small_conll),
                       'tfds_data_dir': str(tmp_path / 'tfds'),
                       'data': {'vocab_size': 1000, 'bucketing': True}})
  splits = registry.build(config)
  tokenizer = splits.info['tokenizer']
  expected = []  # (question, context, answer), in the builder's order
  for words, tags in read_sentences(small_conll / 'train.txt', 300):
    first = {}
    for type_, a, b in iob_entities(tags):
      first.setdefault(type_, ' '.join(words[a:b + 1]))
    expected += [(qa.QUESTIONS[t], ' '.join(words), first[t]) for t in qa.QUESTIONS
                 if t in first]
  found = {}
  for batch in splits.train.eval_batches(64):
    for row in np.flatnonzero(batch['mask']):
      inputs, segments = batch['inputs'][row], batch['segments'][row]
      length = np.count_nonzero(inputs)
      q_end = list(inputs).index(SEP)  # the [SEP] after the question
      assert inputs[0] == CLS and inputs[length - 1] == SEP
      np.testing.assert_array_equal(segments[:q_end + 1], 0)  # [CLS] question [SEP]
      np.testing.assert_array_equal(segments[q_end + 1:length], 1)  # context [SEP]
      start, end = batch['start'][row], batch['end'][row]
      assert q_end < start <= end < length - 1
      found[batch['index'][row]] = (tokenizer.decode(inputs[1:q_end]),
                                    tokenizer.decode(inputs[q_end + 1:length - 1]),
                                    tokenizer.decode(inputs[start:end + 1]))
  assert len(found) == len(expected) > 300
  assert [found[i] for i in range(len(found))] == expected


def test_a_tiny_bert_learns_to_answer(small_conll, tmp_path):
  """60 steps of a 1-layer BERT on 300 sentences: dev exact match far above chance (the
  mean over questions of 1 / the number of spans best_spans chooses from)."""
  from experiments.configs import conll_qa_bert
  from train import loop
  c = conll_qa_bert.get_config()
  c.update(data_dir=str(small_conll), tfds_data_dir=str(tmp_path / 'tfds'), batch_size=32,
           eval_batch_size=128, num_steps=60, max_answer_len=8)
  c.data.update(vocab_size=1000, bucketing=False, max_len=48,
                tokenizer_dir=str(tmp_path / 'tokenizer'))
  c.model.update(num_layers=1, num_heads=2, model_dim=32, mlp_dim=64, dropout_rate=0.0)
  c.optimizer.update(learning_rate=3e-3, warmup_steps=10)
  exp = loop.build(c)
  train_step, eval_step = loop.compile_steps(exp, exp.state)
  state = exp.state
  for _ in range(c.num_steps):
    state, sums = train_step(state, exp.par.place_batch(next(exp.train_iter), c.batch_size))
  dev = loop.evaluate(exp, eval_step, state, exp.splits.eval)
  chance = []
  for batch in exp.splits.eval.eval_batches(128):
    for row in np.flatnonzero(batch['mask']):
      inputs, segments = batch['inputs'][row], batch['segments'][row]
      n = np.count_nonzero((segments == 1) & (inputs != SEP) & (inputs != 0))
      chance.append(1 / sum(min(n - i, c.max_answer_len) for i in range(n)))
  assert dev['questions'] == len(chance) > 300
  assert dev['exact_match'] > 5 * np.mean(chance)  # measured: 0.124 against 0.0084
  assert dev['f1'] > dev['exact_match']

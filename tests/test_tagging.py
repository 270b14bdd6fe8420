"""Entity-level scoring as conlleval does it, the recurrent tagger and sentence classifier,
the window classifier and its max-margin objective, and pretrained word vectors."""

import jax
import jax.numpy as jnp
import nets
import numpy as np
import pytest
from ml_collections import ConfigDict

from train import pretrained, tagging_tasks
from train.errors import UserError
from train.tagging_tasks import EntityCounts

TAGS = ['O', 'B-PER', 'I-PER', 'B-ORG', 'I-ORG', 'B-LOC', 'I-LOC', 'B-MISC', 'I-MISC']


# conlleval, worked by hand: (gold tags, guessed tags) of six sentences.
SENTENCES = [
    # Gold PER 0-1, LOC 3; guessed PER 0-1 (right), ORG 3 (right span, wrong type).
    ('B-PER I-PER O B-LOC O', 'B-PER I-PER O B-ORG O'),
    # An I- tag starts an entity (IOB1): gold LOC 1-2; the guess writes the same span as
    # B-LOC I-LOC (IOB2): the same entity, so right.
    ('O I-LOC I-LOC O', 'O B-LOC I-LOC O'),
    # The type changes mid-span: the I-ORG starts a chunk of its own, so the guess is
    # PER 0 and ORG 1, and neither is the gold PER 0-1.
    ('B-PER I-PER', 'B-PER I-ORG'),
    # IOB1: B- separates two adjacent LOC entities (0-1 and 2); the guess merges them.
    ('I-LOC I-LOC B-LOC O', 'I-LOC I-LOC I-LOC O'),
    # The guess stops one word early: a partial span is wrong.
    ('B-ORG I-ORG I-ORG', 'B-ORG I-ORG O'),
    # An entity at the very end of a sentence is closed by the sentence boundary.
    ('O B-MISC', 'O B-MISC'),
]


def counted(sentences):
  counts = EntityCounts()
  for gold, guess in sentences:
    counts.add(gold.split(), guess.split())
  return counts


def test_conlleval_counts_worked_by_hand():
  counts = counted(SENTENCES)
  # Gold: s1 PER, LOC; s2 LOC; s3 PER; s4 LOC, LOC; s5 ORG; s6 MISC.
  assert dict(counts.gold) == {'PER': 2, 'LOC': 4, 'ORG': 1, 'MISC': 1}
  # Guessed: s1 PER, ORG; s2 LOC; s3 PER, ORG; s4 LOC; s5 ORG; s6 MISC.
  assert dict(counts.guessed) == {'PER': 2, 'ORG': 3, 'LOC': 2, 'MISC': 1}
  # Right: s1 PER, s2 LOC, s6 MISC.
  assert {k: v for k, v in counts.correct.items() if v} == {'PER': 1, 'LOC': 1, 'MISC': 1}
  # Tokens 5+4+2+4+3+2 = 20; equal whole tags 4+3+1+3+2+2 = 15.
  assert (counts.tokens, counts.correct_tags) == (20, 15)
  scores = counts.scores()
  assert scores['precision'] == pytest.approx(3 / 8)
  assert scores['recall'] == pytest.approx(3 / 8)
  assert scores['f1'] == pytest.approx(3 / 8)
  assert scores['accuracy'] == pytest.approx(15 / 20)
  assert scores['entities'] == 8
  assert scores['precision_LOC'] == pytest.approx(1 / 2)
  assert scores['recall_LOC'] == pytest.approx(1 / 4)
  assert scores['f1_LOC'] == pytest.approx(2 * (1 / 2) * (1 / 4) / (1 / 2 + 1 / 4))
  assert scores['f1_PER'] == pytest.approx(1 / 2)
  assert scores['f1_ORG'] == 0.0 and scores['f1_MISC'] == 1.0


def test_iob1_and_iob2_read_alike():
  """The same entities in IOB1 and in IOB2 match exactly, whichever side is gold."""
  iob1 = 'I-PER I-PER O I-LOC B-LOC O I-ORG I-MISC'
  iob2 = 'B-PER I-PER O B-LOC B-LOC O B-ORG B-MISC'
  for gold, guess in [(iob1, iob2), (iob2, iob1)]:
    scores = counted([(gold, guess)]).scores()
    assert (scores['precision'], scores['recall'], scores['f1']) == (1.0, 1.0, 1.0)
    assert scores['entities'] == 5


def test_sentences_start_and_end_outside_entities():
  """An entity ending one sentence and one starting the next are two entities, not one."""
  counts = counted([('B-PER', 'B-PER'), ('I-PER', 'I-PER')])
  assert dict(counts.gold) == {'PER': 2} and dict(counts.correct) == {'PER': 2}
  assert dict(counted([('B-PER I-PER', 'B-PER I-PER')]).gold) == {'PER': 1}


def test_no_guesses_score_zero_not_nan():
  scores = counted([('B-PER O', 'O O')]).scores()
  assert (scores['precision'], scores['recall'], scores['f1']) == (0.0, 0.0, 0.0)


def test_finalize_reads_words_at_the_mask_and_skips_filler_rows():
  """The task's split score from padded per-example arrays equals counting the sentences."""
  config = ConfigDict({'task': 'sequence_tagging', 'dataset': 'conll2003'})
  task = tagging_tasks.SequenceTagging(config, {'class_names': TAGS, 'max_len': 8})
  ids = {t: i for i, t in enumerate(TAGS)}
  rows = len(SENTENCES) + 1  # and a filler row, mask 0 throughout
  label, tags, mask = (np.zeros((rows, 8), np.int32) for _ in range(3))
  for r, (gold, guess) in enumerate(SENTENCES):
    gold, guess = gold.split(), guess.split()
    # Short sentences put their words at every other position, as the first pieces of
    # two-piece words would be.
    cols = 2 * np.arange(len(gold)) if 2 * len(gold) <= 8 else np.arange(len(gold))
    label[r, cols] = [ids[t] for t in gold]
    tags[r, cols] = [ids[t] for t in guess]
    mask[r, cols] = 1
  # Entities off the mask (later pieces, padding, the filler row) must not count.
  tags[mask == 0], label[mask == 0] = ids['B-PER'], ids['I-ORG']
  sums = {'loss': 1.0, 'count': 2.0, 'correct': 1.0}
  got = task.finalize(sums, {'tags': tags, 'label': label, 'mask': mask})
  want = counted(SENTENCES).scores()
  assert {k: got[k] for k in want} == want
  assert got['loss'] == 0.5


# The window classifier against NumPy.


def np_window_scores(params, tokens, features, k, centre=None):
  """s_t = U tanh(W [E w_{t-k}; ...; E w_{t+k}; F f_{t-k}; ...] + b) + c, in float64."""
  p = jax.tree.map(lambda a: np.asarray(a, np.float64), params)
  tables = [p['embed']['embedding']] + [p[f'feature_{i}']['embedding']
                                        for i in range(len(features))]
  rows, length = tokens.shape
  out = np.zeros((rows, length, p['output']['kernel'].shape[1]))
  for b in range(rows):
    for t in range(length):
      parts = []
      for table, ids in zip(tables, [tokens] + features):
        for j in range(t - k, t + k + 1):
          word = ids[b, j] if 0 <= j < length else 0  # PAD outside the sentence
          if centre is not None and j == t and table is tables[0]:
            word = centre[b, t]
          parts.append(table[word])
      h = np.tanh(np.concatenate(parts) @ p['hidden']['kernel'] + p['hidden']['bias'])
      out[b, t] = h @ p['output']['kernel'] + p['output']['bias']
  return out


def test_window_classifier_matches_numpy():
  rng = np.random.default_rng(0)
  tokens = np.array([[5, 6, 7, 8, 9], [3, 4, 0, 0, 0]], np.int32)
  pos = rng.integers(1, 6, tokens.shape).astype(np.int32)
  model = nets.create('window_ner', vocab_size=12, num_outputs=3, half_width=2, embed_dim=4,
                      feature_sizes=(6,), feature_dim=2, hidden=5)
  params = jax.jit(model.init)(jax.random.key(0), tokens, pos)['params']
  assert params['hidden']['kernel'].shape == (5 * 4 + 5 * 2, 5)  # (2k+1)(D + F) inputs
  apply = jax.jit(model.apply)
  got = apply({'params': params}, tokens, pos)
  np.testing.assert_allclose(got, np_window_scores(params, tokens, [pos], 2), atol=1e-5)
  # Corrupted copies: the centre word replaced, the context (and its features) kept.
  centres = rng.integers(1, 12, (2, 5, 3)).astype(np.int32)
  true, corrupt = apply({'params': params}, tokens, pos, centres_BxTxS=centres)
  np.testing.assert_allclose(true, got, atol=1e-6)
  for s in range(3):
    np.testing.assert_allclose(corrupt[:, :, s],
                               np_window_scores(params, tokens, [pos], 2, centres[..., s]),
                               atol=1e-5)


# The max-margin objective.


def test_margin_hinge_worked_by_hand():
  true = jnp.array([2.0, 0.5])
  corrupt = jnp.array([[0.9, 1.0], [0.0, -1.0]])
  # max(0, 1 - s + s_c): [[-0.1, 0.0] -> 0, 0], [0.5, -0.5 -> 0].
  loss = lambda t, c: tagging_tasks.margin_hinge(t, c).sum()
  assert float(loss(true, corrupt)) == pytest.approx(0.5)
  d_true, d_corrupt = jax.grad(loss, argnums=(0, 1))(true, corrupt)
  np.testing.assert_array_equal(d_true, [0.0, -1.0])  # only the violated pair pulls
  np.testing.assert_array_equal(d_corrupt, [[0.0, 0.0], [1.0, 0.0]])


def margin_setup(margin: float):
  """A WindowMargin task on LOC, a tiny window model, its state and a batch."""
  from train import state as state_lib
  import optax
  config = ConfigDict({'task': 'window_margin', 'dataset': 'conll2003',
                       'margin': {'entity': 'LOC', 'num_corrupt': 3, 'margin': margin},
                       'model': {'name': 'window_ner', 'half_width': 1, 'embed_dim': 3,
                                 'hidden': 4}})
  info = {'class_names': TAGS, 'max_len': 6, 'vocab_size': 15}
  task = tagging_tasks.WindowMargin(config, info)
  fields = nets.MODELS['window_ner'].__dataclass_fields__
  model = nets.create('window_ner', **task.model_kwargs(config, info, fields))
  ids = {t: i for i, t in enumerate(TAGS)}
  batch = {'inputs': np.array([[5, 6, 7, 8, 0, 0], [9, 10, 11, 12, 13, 14]], np.int32),
           'label': np.array([[0, ids['B-LOC'], ids['I-LOC'], 0, 0, 0],
                              [ids['B-PER'], 0, 0, ids['B-LOC'], 0, 0]], np.int32),
           'mask': np.array([[1, 1, 1, 1, 0, 0], [1, 1, 1, 1, 1, 1]], np.float32)}
  init = state_lib.initializer(model, optax.sgd(0.1), 0, (), task.init_params)
  return task, jax.jit(init)(batch['inputs']), batch


def margin_loss(task, state, batch):
  """A jitted (loss, aux), grads of the task's loss, with a fixed key for the corruptions."""
  return jax.jit(jax.value_and_grad(
      lambda p: task.loss(state, p, batch, jax.random.key(1), train=True), has_aux=True))


def test_margin_loss_gradient_matches_finite_differences():
  task, state, batch = margin_setup(margin=1.0)
  with jax.enable_x64(True):
    params = jax.tree.map(lambda a: np.asarray(a, np.float64), state.params)
    value_and_grad = margin_loss(task, state, batch)
    (_, aux), grads = value_and_grad(params)
    # Three LOC words, each against 3 corrupted windows: every pair is active at init
    # (all scores near 0, so 1 - s + s_c > 0), so the loss is smooth here.
    assert float(aux.weight) == 3.0 and float(aux.sums['correct']) == 0.0
    leaves, treedef = jax.tree.flatten(params)
    direction = jax.tree.unflatten(treedef, [np.random.default_rng(i).normal(size=a.shape)
                                             for i, a in enumerate(leaves)])
    eps = 1e-6
    shifted = lambda sign: jax.tree.map(lambda a, v: a + sign * eps * v, params, direction)
    numeric = (value_and_grad(shifted(1))[0][0] - value_and_grad(shifted(-1))[0][0]) / (2 * eps)
    analytic = sum(np.vdot(g, v) for g, v in zip(jax.tree.leaves(grads),
                                                 jax.tree.leaves(direction)))
    assert abs(analytic) > 1e-3
    np.testing.assert_allclose(analytic, numeric, rtol=1e-6)


def test_margin_loss_is_zero_once_the_margin_is_met():
  # A margin of -1e3 is met by any scores of this small model: no loss, no gradient.
  task, state, batch = margin_setup(margin=-1e3)
  (loss, aux), grads = margin_loss(task, state, batch)(state.params)
  assert float(loss) == 0.0
  assert all(np.all(g == 0) for g in jax.tree.leaves(grads))
  assert float(aux.sums['correct']) == 3.0  # every pair of the 3 LOC windows is apart


# The recurrent tagger and classifier: padding never changes a real token's result.


SHORT = np.array([[5, 6, 7, 0], [8, 9, 0, 0]], np.int32)
LONG = np.array([[5, 6, 7, 0, 0, 0, 0], [8, 9, 0, 0, 0, 0, 0], [3, 4, 5, 6, 7, 8, 9],
                 [5, 6, 8, 0, 0, 0, 0]], np.int32)


def test_tagger_ignores_padding():
  model = nets.create('rnn_tagger', vocab_size=10, num_outputs=3, embed_dim=4, hidden_size=5,
                      num_layers=2, feature_sizes=(4,), feature_dim=2)
  params = jax.jit(model.init)(jax.random.key(0), LONG, LONG % 3 + 1)
  apply = jax.jit(model.apply)
  got_short, got_long = apply(params, SHORT, SHORT % 3 + 1), apply(params, LONG, LONG % 3 + 1)
  for row, length in enumerate((3, 2)):
    np.testing.assert_allclose(got_short[row, :length], got_long[row, :length], atol=1e-6)
  # Bidirectional: changing the third word changes the first word's logits.
  assert not np.allclose(got_long[3, 0], got_long[0, 0])
  assert params['params']['encoder']['rnn']['layer_1'].keys() == {'forward', 'backward'}


def test_classifier_pools_ignore_padding():
  models = [nets.create('rnn_classifier', vocab_size=10, num_outputs=3, embed_dim=4,
                        hidden_size=5, pool=pool) for pool in ('max', 'mean', 'last')]
  params = jax.jit(models[0].init)(jax.random.key(0), LONG)  # every pool has these shapes
  apply_all = jax.jit(lambda p, x: [m.apply(p, x) for m in models])
  for got_short, got_long in zip(apply_all(params, SHORT), apply_all(params, LONG)):
    np.testing.assert_allclose(got_short, got_long[:2], atol=1e-6)
    assert not np.allclose(got_long[2], got_long[0])
  # The pools differ from one another (each reads the outputs its own way).
  short = apply_all(params, SHORT)
  assert not np.allclose(short[0], short[1]) and not np.allclose(short[1], short[2])


# Pretrained word vectors.


def write_vectors(path, lines, header=None):
  rows = [line.split() for line in lines]
  header = header or f'{len(rows)} {len(rows[0]) - 1}'
  path.write_text('\n'.join([header] + lines) + '\n')
  return str(path)


def test_word_vectors_replace_found_rows_only(tmp_path, capsys):
  vocab = ['<pad>', '<unk>', 'Paris', 'the', 'zebra', 'THE']
  path = write_vectors(tmp_path / 'v.txt', ['paris 1 2 3', 'the 0 0 -1', 'Paris 4 4 4',
                                            'cat 9 9 9'])

  class Tokenizer:
    tokens = vocab
  config = ConfigDict({'pretrained_embeddings': path})
  init_params = pretrained.word_vectors(config, {'tokenizer': Tokenizer()})
  assert '3 of 6 vocabulary words found (2 exact, 1 lower-cased)' in capsys.readouterr().out
  table = np.random.default_rng(0).normal(size=(6, 3)).astype(np.float32)
  params = {'encoder': {'embed': {'embedding': table}, 'rnn': {'kernel': np.ones((3, 3))}}}
  new = jax.jit(init_params)(params)
  got = np.asarray(new['encoder']['embed']['embedding'])
  found = np.array([[4, 4, 4], [0, 0, -1], [0, 0, -1]], np.float32)  # Paris, the, THE
  scale = table.std() / found.std()  # found vectors on the scale of the random rows
  np.testing.assert_allclose(got[[2, 3, 5]], found * scale, rtol=1e-5)
  np.testing.assert_array_equal(got[[0, 1, 4]], table[[0, 1, 4]])  # not found: unchanged
  np.testing.assert_array_equal(new['encoder']['rnn']['kernel'], np.ones((3, 3)))


@pytest.mark.parametrize('lines,header,message', [
    (['a 1 2'], '1', 'does not start with the word2vec header'),
    (['a 1 2', 'b 1'], '2 2', 'line 3: expected "word" and 2 numbers'),
    (['a 1 x'], '1 2', 'not a number'),
    (['a 1 2'], '2 2', 'has 1 vectors but its header says 2'),
])
def test_malformed_vector_files_are_named(tmp_path, lines, header, message):
  path = write_vectors(tmp_path / 'v.txt', lines, header)
  with pytest.raises(UserError, match=message):
    pretrained.read_word2vec_text(path)


def test_vectors_of_another_size_name_the_field(tmp_path):
  class Tokenizer:
    tokens = ['<pad>', 'a']
  path = write_vectors(tmp_path / 'v.txt', ['a 1 2'])
  init_params = pretrained.word_vectors(ConfigDict({'pretrained_embeddings': path}),
                                        {'tokenizer': Tokenizer()})
  with pytest.raises(UserError, match='embed_dim=2'):
    init_params({'embed': {'embedding': np.zeros((2, 5), np.float32)}})


# The engine, end to end, on small CoNLL files.

CONLL_SENTENCES = [
    'EU/NNP/B-NP/B-ORG rejects/VBZ/B-VP/O German/JJ/B-NP/B-MISC call/NN/I-NP/O',
    'Peter/NNP/B-NP/B-PER Blackburn/NNP/I-NP/I-PER',
    'BRUSSELS/NNP/B-NP/B-LOC 1996-08-22/CD/I-NP/O',
    # Ten words: a second length bucket (16), so the split's examples come in two widths.
    'The/DT/B-NP/O European/NNP/I-NP/B-ORG Commission/NNP/I-NP/I-ORG said/VBD/B-VP/O '
    'on/IN/B-PP/O Thursday/NNP/B-NP/O it/PRP/B-NP/O met/VBD/B-VP/O in/IN/B-PP/O '
    'Paris/NNP/B-NP/B-LOC',
]


def write_conll(folder):
  folder.mkdir()
  text = '-DOCSTART- -X- -X- O\n\n' + '\n\n'.join(
      '\n'.join(' '.join(word.split('/')) for word in s.split()) for s in CONLL_SENTENCES)
  for name, copies in (('train.txt', 3), ('valid.txt', 1), ('test.txt', 1)):
    (folder / name).write_text('\n\n'.join([text] * copies) + '\n')
  return folder


def test_tagging_task_through_the_engine(tmp_path, capsys):
  """The engine's build (data, features, word vectors in the jitted init), a train step, and
  the evaluation of a split whose examples come in two bucket widths."""
  from experiments.configs import conll_window_ner
  from train import loop
  vectors = write_vectors(tmp_path / 'v.txt', ['paris 1 0 0 1', 'the 0 1 0 1', 'london 1 1 0 0'])
  c = conll_window_ner.get_config()  # the window model: quick to compile
  c.update(data_dir=str(write_conll(tmp_path / 'conll')), tfds_data_dir=str(tmp_path / 'tfds'),
           batch_size=8, eval_batch_size=8, num_epochs=-1, num_steps=1,
           pretrained_embeddings=vectors, input_features=('pos',), word_dropout=0.5)
  c.model.update(embed_dim=4, hidden=3)
  c.data.update(max_len=None, tokenizer_dir=str(tmp_path / 'tokenizer'),
                vocabulary_from_vectors=True)
  exp = loop.build(c)
  # Paris (lower-cased), The, and the vectors' own words: paris, the, london.
  assert '5 of' in capsys.readouterr().out
  vocabulary = exp.splits.info['tokenizer'].tokens
  assert 'london' in vocabulary  # never in the CoNLL text: from the vectors only
  table = np.asarray(exp.state.params['embed']['embedding'])
  assert np.corrcoef(table[vocabulary.index('Paris')], [1, 0, 0, 1])[0, 1] == pytest.approx(1)
  assert np.corrcoef(table[vocabulary.index('london')], [1, 1, 0, 0])[0, 1] == pytest.approx(1)
  train_step, eval_step = loop.compile_steps(exp, exp.state)
  state, sums = train_step(exp.state, exp.par.place_batch(next(exp.train_iter), 8))
  assert np.isfinite(float(sums['loss'])) and float(sums['count']) > 0
  test = loop.evaluate(exp, eval_step, state, exp.splits.test)
  # ORG, MISC, PER, LOC, ORG, LOC: six entities in the test file, across both buckets.
  assert test['entities'] == 6
  assert 0 <= test['f1'] <= 1 and 'f1_LOC' in test and 'accuracy' in test


def test_vocabulary_from_vectors_without_vectors_names_both_fields(tmp_path):
  from experiments.configs import conll_window_ner
  from train import loop
  c = conll_window_ner.get_config()
  c.update(data_dir=str(write_conll(tmp_path / 'conll')), tfds_data_dir=str(tmp_path / 'tfds'))
  c.data.update(vocabulary_from_vectors=True)
  with pytest.raises(UserError, match='vocabulary_from_vectors.*pretrained_embeddings'):
    loop.build(c)

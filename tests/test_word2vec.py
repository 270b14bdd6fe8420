"""word2vec: Huffman codes, losses and gradients against NumPy, sub-sampling and windows,
the sparse step against dense SGD (one device and pmap), evaluation, export round trips,
and one run of the engine with the command-line tools."""

import json

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from ml_collections import ConfigDict

from experiments import conll_sentences
from experiments import word2vec as w2v_cli
from experiments.configs import wiki_word2vec
from nets.word2vec import Word2Vec
from train import loop, word2vec_eval, word2vec_huffman, word2vec_pairs
from train.data import word2vec_corpus
from train import state as state_lib
from train.errors import UserError
from train.word2vec_task import Word2VecTask

ONE_DEVICE = jax.devices()[:1]


def sigmoid(x):
  return 1.0 / (1.0 + np.exp(-x))


def softplus(x):
  return np.logaddexp(0.0, x)


# Huffman tree.


def test_huffman_codes_are_unique_prefix_free_and_frequent_words_no_deeper():
  rng = np.random.default_rng(0)
  counts = np.concatenate([rng.zipf(1.3, 150) % 5000 + 1, [7, 7, 7, 7]])  # ties too
  paths = word2vec_huffman.paths(counts)
  codes = [''.join(str(int(b)) for b in paths.codes[w, :paths.lengths[w]])
           for w in range(len(counts))]
  assert len(set(codes)) == len(codes)
  ordered = sorted(codes)
  assert not any(b.startswith(a) for a, b in zip(ordered, ordered[1:]))  # prefix-free
  assert sum(2.0 ** -len(c) for c in codes) == pytest.approx(1.0)  # a full binary tree
  depth = paths.lengths
  more = counts[:, None] > counts[None, :]
  assert np.all((depth[:, None] <= depth[None, :])[more])
  # Inner nodes: the root (V - 2) first; one node per distinct code prefix, V - 1 in all.
  assert np.all(paths.nodes[:, 0] == len(counts) - 2)
  node_of = {}
  for w, code in enumerate(codes):
    for l in range(len(code)):
      assert node_of.setdefault(code[:l], paths.nodes[w, l]) == paths.nodes[w, l]
  assert sorted(node_of.values()) == list(range(len(counts) - 1))
  assert np.array_equal(paths.mask.sum(1), depth)
  # Huffman is optimal: the expected length is the sum of the merged weights.
  weights = sorted(counts.tolist())
  merged = 0
  while len(weights) > 1:
    a, b = weights.pop(0), weights.pop(0)
    merged += a + b
    weights = sorted(weights + [a + b])
  assert np.sum(counts * depth) == merged


# Losses and gradients of one batch of chunks against loops over the predictions.

B, G, W, P, D, K, L, V = 2, 5, 2, 3, 4, 5, 3, 7
OFFSETS = [o for o in range(-W, W + 1) if o]


def make_task(architecture, output):
  c = wiki_word2vec.get_config(architecture)
  c.model.output = output
  c.data.update(wordsim353='', simlex999='', analogy='')
  return Word2VecTask(c, {'words': [f'w{i}' for i in range(V)], 'vocab_size': V,
                          'negatives': K})


def random_chunks(output, seed=0):
  rng = np.random.default_rng(seed)
  pair_mask = (rng.random((B, G, 2 * W)) < 0.7).astype(np.float32)
  pair_mask[0, 1] = 0.0  # a centre with no context (skipped by CBOW)
  center_mask = np.ones((B, G), np.float32)
  center_mask[1, -1] = 0.0
  pair_mask[1, -1] = 0.0
  batch = {'inputs': rng.integers(0, V, (B, G + 2 * W)).astype(np.int32),
           'pairs': word2vec_pairs.pack_pairs(pair_mask, center_mask),
           'pair_mask': pair_mask, 'center_mask': center_mask,  # for the reference
           'negatives': rng.integers(0, V, (B, P)).astype(np.int32),
           'path': rng.integers(0, V - 1, (B, G, L)).astype(np.int32),
           'code': rng.integers(0, 2, (B, G, L)).astype(np.float32),
           'path_mask': (rng.random((B, G, L)) < 0.8).astype(np.float32)}
  out_rows = {'negative': (B, G + P, D), 'hierarchical': (B, G, L, D), 'softmax': (V, D)}
  rows = {'input_embedding': rng.normal(size=(B, G + 2 * W, D)).astype(np.float32),
          'output_embedding': rng.normal(size=out_rows[output]).astype(np.float32)}
  return rows, batch


def reference(architecture, output, rows, batch):
  """(loss, gradients) by looping over every prediction, word2vec.c's way."""
  e, out = (rows[k].astype(np.float64) for k in ('input_embedding', 'output_embedding'))
  de, dout = np.zeros_like(e), np.zeros_like(out)
  loss = 0.0

  def predict(b, j, h):
    """Loss of predicting centre j of chunk b from h; adds the output gradient; dL/dh."""
    nonlocal loss
    dh = np.zeros(D)
    if output == 'negative':
      terms = [(j, 1.0, 1.0)] + [(G + p, 0.0, K / P) for p in range(P)]
    elif output == 'hierarchical':
      terms = [(l, 1.0 - batch['code'][b, j, l], batch['path_mask'][b, j, l]) for l in range(L)]
    if output == 'softmax':
      logits = out @ h
      prob = np.exp(logits - logits.max())
      prob /= prob.sum()
      center = batch['inputs'][b, W + j]
      loss += np.log(np.sum(np.exp(logits - logits.max()))) + logits.max() - logits[center]
      g = prob - np.eye(V)[center]
      dout[:] += np.outer(g, h)
      return out.T @ g
    for row, target, weight in terms:
      u = out[b, j, row] if output == 'hierarchical' else out[b, row]
      x = h @ u
      loss += weight * (softplus(x) - x * target)
      g = weight * (sigmoid(x) - target)
      dh += g * u
      if output == 'hierarchical':
        dout[b, j, row] += g * h
      else:
        dout[b, row] += g * h
    return dh

  for b in range(B):
    for j in range(G):
      contexts = [W + j + o for i, o in enumerate(OFFSETS) if batch['pair_mask'][b, j, i]]
      if architecture == 'skipgram':
        for s in contexts:
          de[b, s] += predict(b, j, e[b, s])
      elif contexts and batch['center_mask'][b, j]:
        dh = predict(b, j, np.mean([e[b, s] for s in contexts], axis=0))
        for s in contexts:  # word2vec.c: each context gets all of dh
          de[b, s] += dh
  return loss, {'input_embedding': de, 'output_embedding': dout}


@pytest.mark.parametrize('output', ['negative', 'hierarchical', 'softmax'])
@pytest.mark.parametrize('architecture', ['skipgram', 'cbow'])
def test_loss_and_gradients_match_numpy(architecture, output):
  task = make_task(architecture, output)
  rows, batch = random_chunks(output)
  device_batch = {k: jnp.asarray(v) for k, v in batch.items()
                  if k not in ('pair_mask', 'center_mask')}
  (loss, aux), grads = jax.jit(jax.value_and_grad(task.loss_of_rows, has_aux=True))(
      jax.tree.map(jnp.asarray, rows), device_batch)
  want_loss, want = reference(architecture, output, rows, batch)
  np.testing.assert_allclose(loss, want_loss, rtol=1e-5)
  for name in want:
    np.testing.assert_allclose(grads[name], want[name], rtol=1e-4, atol=1e-5, err_msg=name)
  used = batch['pair_mask'].sum(-1) if architecture == 'skipgram' else (
      batch['center_mask'] * (batch['pair_mask'].sum(-1) > 0))
  assert aux.weight == used.sum()


# The pair generator.


def test_subsampling_keeps_a_word_with_the_formula_probability():
  counts = np.array([40_000, 4_000, 400, 40, 4])
  sample = 1e-3
  total = counts.sum()
  expected = [min(1.0, (np.sqrt(f / (sample * total)) + 1) * sample * total / f)
              for f in counts]
  np.testing.assert_allclose(word2vec_pairs.keep_probabilities(counts, sample), expected)
  assert expected[0] < 0.2 and expected[-1] == 1.0
  tokens = np.repeat(np.arange(len(counts)), counts).astype(np.int32)
  settings = word2vec_pairs.PairSettings(window=2, sample=sample, chunk_len=16,
                                         output='softmax')
  keep = word2vec_pairs.keep_probabilities(counts, sample)
  kept = np.zeros(len(counts))
  epochs = 20
  for epoch in range(epochs):
    data = word2vec_pairs.Epoch(tokens, np.zeros_like(tokens), keep, None, settings, 0, epoch)
    kept += np.bincount(data.tokens, minlength=len(counts))
  n = counts * epochs
  sigma = np.sqrt(n * np.array(expected) * (1 - np.array(expected))) + 1e-9
  assert np.all(np.abs(kept - n * np.array(expected)) <= 4.5 * sigma), (kept / n, expected)


def test_chunks_hold_the_dynamic_windows_within_documents():
  rng = np.random.default_rng(1)
  window, chunk_len = 4, 16
  tokens = rng.integers(0, 50, 3000).astype(np.int32)
  documents = np.repeat(np.arange(3), [1000, 1500, 500]).astype(np.int32)
  counts = np.bincount(tokens, minlength=50)
  settings = word2vec_pairs.PairSettings(window, 0.0, chunk_len, 'negative', negative_pool=6)
  it = word2vec_pairs.ChunkIterator(tokens, documents, counts, settings, None, 8, seed=3)
  data = it.epoch(0)
  assert len(data.tokens) == len(tokens)  # sample=0 keeps every word
  chunk_ids = np.arange(data.num_chunks)
  got = data.chunks
  bits = (got['pairs'][..., None] >> np.arange(2 * window + 1)) & 1
  pair_mask, real = bits[..., :-1], bits[..., -1]
  offsets = word2vec_pairs.offsets(window)
  distance_used = np.zeros(window + 1)
  distance_all = np.zeros(window + 1)
  for c in chunk_ids:
    for j in range(chunk_len):
      t = c * chunk_len + j
      if t >= len(tokens):
        assert real[c, j] == 0 and not pair_mask[c, j].any()
        continue
      assert real[c, j] == 1 and got['inputs'][c, window + j] == tokens[t]
      for i, o in enumerate(offsets):
        inside = 0 <= t + o < len(tokens) and documents[t + o] == documents[t]
        want = inside and abs(o) <= data.windows[t]
        assert pair_mask[c, j, i] == want
        if want:
          assert got['inputs'][c, window + j + o] == tokens[t + o]
        if inside:
          distance_all[abs(o)] += 1
          distance_used[abs(o)] += want
  # A word at distance d is a context with probability (W - d + 1) / W.
  frequency = distance_used[1:] / distance_all[1:]
  np.testing.assert_allclose(frequency, (window - np.arange(1, window + 1) + 1) / window,
                             atol=0.03)
  assert got['negatives'].shape == (data.num_chunks, 6)
  # Noise words follow count^0.75.
  draws = np.bincount(got['negatives'].ravel(), minlength=50) / got['negatives'].size
  np.testing.assert_allclose(draws, counts ** 0.75 / np.sum(counts ** 0.75), atol=0.02)


def test_iterator_resumes_and_shards():
  tokens = np.arange(500, dtype=np.int32) % 40
  documents = np.zeros(500, np.int32)
  counts = np.bincount(tokens)
  settings = word2vec_pairs.PairSettings(2, 1e-2, 8, 'negative', negative_pool=4)
  make = lambda shard=word2vec_pairs.Shard(): word2vec_pairs.ChunkIterator(
      tokens, documents, counts, settings, None, 6, seed=0, shard=shard)
  first = make()
  batches = [next(first) for _ in range(30)]  # crosses several epochs
  resumed = make()
  for _ in range(7):
    next(resumed)
  state = resumed.get_state()
  again = make()
  again.set_state(json.loads(json.dumps(state)))
  for want in batches[7:]:
    got = next(again)
    for k in want:
      np.testing.assert_array_equal(got[k], want[k])
  halves = [make(word2vec_pairs.Shard(i, 2)) for i in range(2)]
  for want in batches[:5]:
    parts = [next(h) for h in halves]
    for k in want:
      np.testing.assert_array_equal(np.concatenate([p[k] for p in parts]), want[k])


# Evaluation and export.


def test_similarity_and_analogy_scores_against_direct_computations():
  rng = np.random.default_rng(2)
  words = [f'w{i}' for i in range(40)]
  vectors = rng.normal(size=(40, 6)).astype(np.float32)
  index = {w: i for i, w in enumerate(words)}
  unit = word2vec_eval.unit_rows(vectors)
  pairs = [(f'w{i}', f'w{i + 1}', float(rng.random())) for i in range(0, 30, 2)]
  pairs.append(('w1', 'unknown', 3.0))
  rho, used, skipped = word2vec_eval.similarity_score(unit, index, pairs)
  cos = [unit[index[a]] @ unit[index[b]] for a, b, _ in pairs[:-1]]
  rank = lambda x: np.argsort(np.argsort(x))
  d = rank(cos) - rank([s for *_, s in pairs[:-1]])
  n = len(d)
  assert rho == pytest.approx(1 - 6 * np.sum(d ** 2) / (n * (n ** 2 - 1)))
  assert (used, skipped) == (15, 1)
  # Make 'w3' the exact answer to w0 : w1 :: w2 : ? for one question.
  vectors[3] = 10 * (unit[1] - unit[0] + unit[2])
  unit = word2vec_eval.unit_rows(vectors)
  questions = [('w0', 'w1', 'w2', 'w3')] + [tuple(f'w{i}' for i in rng.choice(40, 4, False))
                                             for _ in range(30)] + [('w0', 'w1', 'nope', 'w2')]
  accuracy, answered, skipped = word2vec_eval.analogy_score(unit, index, questions)
  correct = []
  for a, b, c, d in questions[:-1]:
    query = unit[index[b]] - unit[index[a]] + unit[index[c]]
    best = max((w for w in words if w not in (a, b, c)),
               key=lambda w: unit[index[w]] @ query / np.linalg.norm(query))
    correct.append(best == d)
  assert correct[0]
  assert accuracy == pytest.approx(np.mean(correct))
  assert (answered, skipped) == (31, 1)
  near = word2vec_eval.nearest(vectors, words, 'w5', k=3)
  cosines = unit @ unit[5]
  cosines[5] = -np.inf
  assert [w for w, _ in near] == [words[i] for i in np.argsort(-cosines)[:3]]


def test_exported_vectors_load_back_identically(tmp_path):
  rng = np.random.default_rng(3)
  words = ['the', 'naïve', 'café', 'x1', '東京']
  vectors = (rng.normal(size=(5, 7)) * np.array([1e-8, 1e-3, 1, 1e3, 1e8, 1, 1])
             ).astype(np.float32)
  for save, load, name in ((word2vec_eval.save_text, word2vec_eval.load_text, 'v.txt'),
                           (word2vec_eval.save_binary, word2vec_eval.load_binary, 'v.bin')):
    save(tmp_path / name, words, vectors)
    got_words, got = load(tmp_path / name)
    assert got_words == words
    assert got.dtype == np.float32 and np.array_equal(got, vectors), name
  assert (tmp_path / 'v.txt').read_text(encoding='utf-8').splitlines()[0] == '5 7'


def test_gensim_reads_the_exports(tmp_path):
  keyed_vectors = pytest.importorskip('gensim.models').KeyedVectors
  words = ['alpha', 'beta', 'gamma']
  vectors = np.random.default_rng(4).normal(size=(3, 5)).astype(np.float32)
  word2vec_eval.save_text(tmp_path / 'v.txt', words, vectors)
  word2vec_eval.save_binary(tmp_path / 'v.bin', words, vectors)
  for name, binary in (('v.txt', False), ('v.bin', True)):
    kv = keyed_vectors.load_word2vec_format(str(tmp_path / name), binary=binary)
    assert list(kv.index_to_key) == words
    assert np.array_equal(kv.vectors, vectors)


# The sparse step, through the engine.


def tiny_config(tmp_path, architecture='skipgram', output='negative') -> ConfigDict:
  rng = np.random.default_rng(5)
  vocab = [f'w{i}' for i in range(30)]
  p = 1.0 / np.arange(1, 31)
  lines = [' '.join(rng.choice(vocab, 300, p=p / p.sum())) for _ in range(3)]
  (tmp_path / 'corpus.txt').write_text('\n'.join(lines) + '\n')
  (tmp_path / 'sim.tsv').write_text('# a comment\nw1\tw2\t5.0\nw3\tw4\t1.0\nw1\tw5\t2.0\n')
  (tmp_path / 'questions.txt').write_text(': section\nw1 w2 w3 w4\nw1 w2 w3 zzz\n')
  c = wiki_word2vec.get_config(architecture)
  c.data_dir = str(tmp_path)
  c.data.update(corpus='corpus.txt', min_count=1, window=2, chunk_len=8, negative_pool=8,
                sample=1e-2, wordsim353='sim.tsv', simlex999='sim.tsv',
                analogy='questions.txt')
  c.model.update(embed_dim=8, output=output)
  c.batch_size = 4
  c.chunks_per_update = 2
  c.eval_batch_size = 16
  c.num_steps = 3
  c.log_every = 1
  c.checkpoint_every = 3
  c.progress_bar = False
  return c


@pytest.mark.parametrize('architecture,output', [('skipgram', 'negative'),
                                                 ('cbow', 'hierarchical')])
def test_sparse_step_is_dense_sgd_and_pmap_agrees(tmp_path, architecture, output):
  c = tiny_config(tmp_path, architecture, output)
  exp = loop.build(c, ONE_DEVICE)
  batch = next(exp.train_iter)
  # Non-zero output rows, so that every gradient is non-zero.
  out = exp.state.params['output_embedding']
  params = {**exp.state.params,
            'output_embedding': jax.random.normal(jax.random.key(0), out.shape) * 0.3}
  state = exp.state.replace(params=params)
  want = params  # two SGD updates in turn, of chunks_per_update=2 chunks: 0, 2 then 1, 3
  for group in ([0, 2], [1, 3]):
    part = {k: v[group] for k, v in batch.items()}
    dense = jax.jit(jax.grad(lambda p: exp.task.loss(state, p, part, None)[0]))(want)
    want = jax.tree.map(lambda p, g: p - c.optimizer.learning_rate * g, want, dense)
  step = jax.jit(exp.task.make_train_step(c, None))
  new, sums = step(state, exp.par.place_batch(batch, c.batch_size))
  for name in want:
    np.testing.assert_allclose(new.params[name], want[name], rtol=1e-5, atol=1e-7)
  assert int(new.step) == 1 and float(sums['loss']) > 0
  if output != 'negative':
    return  # the pmap reduction is the same code for every output layer
  # pmap over 2 devices: each takes half the chunks; every replica applies every row.
  c.parallel_mode = 'pmap'
  pexp = loop.build(c, jax.devices()[:2])
  pstate = pexp.state.replace(params=jax.tree.map(lambda x: np.stack([np.asarray(x)] * 2),
                                                  params))
  pstep, _ = loop.compile_steps(pexp, pstate)
  pnew, psums = pstep(pstate, pexp.par.place_batch(batch, c.batch_size))
  for name in want:
    np.testing.assert_allclose(pnew.params[name][1], new.params[name], rtol=1e-5, atol=1e-7)
  assert float(psums['loss'][0]) == pytest.approx(float(sums['loss']), rel=1e-5)


def test_engine_run_and_command_line_tools(tmp_path):
  data = tmp_path / 'data'
  data.mkdir()
  c = tiny_config(data)
  workdir = tmp_path / 'run'
  state, test = loop.train_and_evaluate(c, str(workdir), devices=ONE_DEVICE)
  records = [json.loads(line) for line in (workdir / 'metrics.jsonl').read_text().splitlines()]
  assert [r['split'] for r in records].count('train') == 3
  final = [r for r in records if r['split'] == 'test'][-1]
  assert {'wordsim353', 'simlex999', 'analogy'} <= set(final)
  assert final['wordsim353_pairs'] == 3 and final['analogy_skipped'] == 1
  vectors = np.asarray(state.params['input_embedding'])
  text = w2v_cli.export(workdir, devices=ONE_DEVICE)
  words, got = word2vec_eval.load_text(text)
  assert np.array_equal(got, vectors) and words[0] == 'w0'
  png, shown = w2v_cli.plot(workdir, ['w1', 'w2', 'w3', 'absent'], devices=ONE_DEVICE)
  assert png.read_bytes().startswith(b'\x89PNG') and shown == ['w1', 'w2', 'w3']


def test_settings_it_cannot_use_are_refused_in_one_line(tmp_path):
  c = tiny_config(tmp_path)
  c.optimizer.name = 'adam'
  with pytest.raises(UserError, match='config.optimizer.name'):
    loop.build(c, ONE_DEVICE)
  c = tiny_config(tmp_path)
  c.data.window = 0
  with pytest.raises(UserError, match='config.data.window=0'):
    loop.build(c, ONE_DEVICE)
  c = tiny_config(tmp_path)
  c.chunks_per_update = 3
  exp = loop.build(c, ONE_DEVICE)
  with pytest.raises(UserError, match='config.chunks_per_update=3'):
    loop.compile_steps(exp, exp.state)[0](exp.state, exp.par.place_batch(
        next(exp.train_iter), c.batch_size))


def test_step_cost_does_not_grow_with_the_vocabulary():
  """The compiled step's FLOPs are the same for 50 and 50,000 words, and it never copies
  a table (the scatter-adds update the donated tables in place)."""
  flops = []
  for vocab in (50, 50_000):
    c = wiki_word2vec.get_config()
    c.model.embed_dim = 16
    c.data.update(wordsim353='', simlex999='', analogy='')
    c.batch_size, c.chunks_per_update = 8, 4
    task = Word2VecTask(c, {'words': ['w'] * vocab, 'vocab_size': vocab, 'negatives': 5})
    init = state_lib.initializer(Word2Vec(vocab, 16), optax.sgd(0.025), 0, ())
    state = jax.jit(init)(jnp.zeros(4, jnp.int32))
    chunk_len, window, pool = c.data.chunk_len, c.data.window, c.data.negative_pool
    batch = {'inputs': jnp.zeros((8, chunk_len + 2 * window), jnp.int32),
             'pairs': jnp.zeros((8, chunk_len), jnp.int32),
             'negatives': jnp.zeros((8, pool), jnp.int32), 'mask': jnp.ones(8)}
    compiled = jax.jit(task.make_train_step(c, None), donate_argnums=0).lower(
        state, batch).compile()
    flops.append(compiled.cost_analysis()['flops'])
    table = f'f32[{vocab},16]'
    assert not [line for line in compiled.as_text().splitlines()
                if ' copy(' in line and table in line]
  assert flops[0] == flops[1] > 0


def test_a_corpus_of_several_files_is_their_concatenation(tmp_path):
  """corpus='a.txt,/abs/b.txt' gives the vocabulary, stream and documents of one file
  holding both; the CoNLL sentence writer keeps words only, normalised like the wiki text."""
  conll = tmp_path / 'train.txt'
  conll.write_text('-DOCSTART- -X- -X- O\n\nEU NNP B-NP B-ORG\nrejects VBZ B-VP O\n'
                   "U.S. NNP I-NP B-LOC\n. . O O\n\nO'Neill NNP B-NP B-PER\n")
  assert list(conll_sentences.sentences(conll)) == [['eu', 'rejects', 'us'], ['oneill']]
  c = tiny_config(tmp_path)
  lines = (tmp_path / 'corpus.txt').read_text().splitlines()
  (tmp_path / 'a.txt').write_text('\n'.join(lines[:2]) + '\n')
  (tmp_path / 'b.txt').write_text(lines[2] + '\n')
  whole = word2vec_corpus.word2vec_corpus(c)
  c.data.corpus = f'a.txt, {tmp_path / "b.txt"}'
  parts = word2vec_corpus.word2vec_corpus(c)
  assert parts.info['words'] == whole.info['words']
  np.testing.assert_array_equal(parts.train.tokens, whole.train.tokens)
  np.testing.assert_array_equal(parts.train.documents, whole.train.documents)
  c.data.corpus = 'a.txt,missing.txt'
  with pytest.raises(UserError, match='missing.txt does not exist'):
    word2vec_corpus.word2vec_corpus(c)

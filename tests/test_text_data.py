"""Local builders against ../shared/data, catalog paths under mock data, and errors."""

import collections
import gzip
import os
import pathlib
import pickle
import subprocess
import sys
import warnings

import numpy as np
import pytest
import tensorflow_datasets as tfds
from conftest import SHARED_DATA
from ml_collections import ConfigDict

from train.data import registry, text

ROOT = pathlib.Path(__file__).resolve().parents[1]

KEYS = {
    'lm': {'inputs', 'targets', 'mask'},
    'tagging': {'inputs', 'label', 'pos', 'chunks', 'case', 'index', 'mask'},
    'classification': {'inputs', 'label', 'index', 'mask'},
    'translation': {'inputs', 'targets', 'index', 'mask'},
}


def _config(dataset, data_dir, tfds_dir, **data):
  return ConfigDict({'dataset': dataset, 'data_dir': data_dir and str(data_dir),
                     'tfds_data_dir': tfds_dir and str(tfds_dir), 'data': data})


def _lengths(splits):
  return len(splits.train), len(splits.eval), len(splits.test)


def _eval_examples(source, key='inputs'):
  """(row, mask) of every real example of `source`, in split order (evaluation batches
  come bucket by bucket; `index` puts them back in order)."""
  examples = []
  for batch in source.eval_batches(64):
    real = batch['mask'] if batch['mask'].ndim == 1 else batch['mask'].max(1)
    examples += [(i, row, mask) for i, row, mask, r in
                 zip(batch['index'], batch[key], batch['mask'], real) if r]
  return [(row, mask) for _, row, mask in sorted(examples, key=lambda e: e[0])]


@pytest.fixture(scope='module')
def tfds_dir(tmp_path_factory):
  return tmp_path_factory.mktemp('tfds')


@pytest.fixture(scope='module')
def build(tfds_dir):
  """Builds `dataset` from its ../shared/data folder, once per module and options."""
  if not SHARED_DATA.is_dir():
    pytest.skip(f'{SHARED_DATA} is absent (it only exists on the project machines).')
  cache = {}

  def make(dataset, folder, **data):
    key = (dataset, folder, tuple(sorted(data.items())))
    if key not in cache:
      cache[key] = registry.build(_config(dataset, SHARED_DATA / folder, tfds_dir, **data))
    return cache[key]
  return make


def _token_lines(path, cut_to=None):
  """Tokens of a CoNLL file, each sentence cut to `cut_to` tokens if given."""
  lengths = [0]
  for line in open(path):
    if not line.split():
      lengths.append(0)
    elif line.split()[0] != '-DOCSTART-':
      lengths[-1] += 1
  return sum(min(n, cut_to or n) for n in lengths)


# Counts from ../shared/data/README.md and contents checked against the raw files.


def test_conll2003_counts_and_first_sentence(build):
  splits = build('conll2003', 'conll2003')
  assert _lengths(splits) == (14_041, 3_250, 3_453)
  batch = next(splits.train.train_iterator(32, seed=0))
  assert set(batch) == KEYS['tagging'] and batch['mask'].ndim == 2
  tok, names = splits.info['tokenizer'], splits.info['class_names']
  ids, mask = _eval_examples(splits.train)[0]
  assert tok.decode(ids) == 'EU rejects German call to boycott British lamb .'
  labels = _eval_examples(splits.train, 'label')[0][0][mask > 0]
  assert [names[i] for i in labels] == ['B-ORG', 'O', 'B-MISC', 'O', 'O', 'O', 'B-MISC', 'O',
                                        'O']
  case = _eval_examples(splits.train, 'case')[0][0][mask > 0]
  assert [text.CASES[i] for i in case] == ['UPPER', 'lower', 'Title', 'lower', 'lower', 'lower',
                                           'Title', 'lower', 'other']
  # Test sentences longer than the longest training sentence are cut to max_len.
  total = sum(m.sum() for _, m in _eval_examples(splits.test))
  assert total == _token_lines(SHARED_DATA / 'conll2003' / 'test.txt',
                               cut_to=splits.info['max_len'])


def test_conll2003_subwords_tag_the_first_piece_of_each_word(build):
  splits = build('conll2003', 'conll2003', tokenizer='sentencepiece', vocab_size=2000)
  ids, mask = _eval_examples(splits.train)[0]
  assert mask.sum() == 9 and (ids > 0).sum() > 9  # some words split into pieces
  first = 'EU rejects German call to boycott British lamb .'
  assert splits.info['tokenizer'].decode(ids) == first
  total = sum(m.sum() for _, m in _eval_examples(splits.eval))
  assert total == _token_lines(SHARED_DATA / 'conll2003' / 'valid.txt')


def test_sst2_counts_and_labels(build):
  splits = build('sst2', 'sst2')
  assert _lengths(splits) == (6_920, 872, 1_821)
  assert splits.info['num_classes'] == 2
  labels = np.array([label for label, _ in _eval_examples(splits.train, 'label')])
  lines = open(SHARED_DATA / 'sst2' / 'stsa.binary.train').read().splitlines()
  np.testing.assert_array_equal(labels, [int(line.split()[0]) for line in lines])
  assert set(next(splits.train.train_iterator(32, seed=0))) == KEYS['classification']


def test_multi30k_counts_and_round_trip(build):
  splits = build('multi30k', 'multi30k')
  assert _lengths(splits) == (29_000, 1_014, 1_000)
  tok = splits.info['tokenizer']
  assert set(next(splits.test.eval_batches(4))) == KEYS['translation']
  folder = SHARED_DATA / 'multi30k'
  for language, key in (('de', 'inputs'), ('en', 'targets')):
    with gzip.open(folder / f'test_2016_flickr.{language}.gz', 'rt', encoding='utf-8') as f:
      first = f.readline().rstrip('\n')
    ids, mask = _eval_examples(splits.test, key)[0]
    assert tok.decode(ids) == first
  assert mask.sum() == len(tok.encode(first)) + 1  # target tokens and EOS


def _planetoid(part):
  with open(SHARED_DATA / 'cora' / f'ind.cora.{part}', 'rb') as f, warnings.catch_warnings():
    warnings.simplefilter('ignore', DeprecationWarning)
    return pickle.load(f, encoding='latin1')


def test_cora_planetoid_split(build):
  splits = build('cora', 'cora')
  assert splits.info['num_nodes'] == 2_708 and splits.info['num_classes'] == 7
  masks = [next(iter(s.eval_batches(1)))['mask'][0]
           for s in (splits.train, splits.eval, splits.test)]
  assert [int(m.sum()) for m in masks] == [140, 500, 1_000]
  assert masks[0][:140].all() and masks[1][140:640].all()
  test_index = [int(line) for line in open(SHARED_DATA / 'cora' / 'ind.cora.test.index')]
  assert set(np.flatnonzero(masks[2])) == set(test_index)
  batch = next(splits.train.train_iterator(1, seed=0))
  tx, ty = _planetoid('tx').toarray(), _planetoid('ty')
  for k in (0, 1, 500, 999):  # row k of tx/ty belongs to node test_index[k] (unsorted)
    np.testing.assert_array_equal(batch['inputs'][0, test_index[k]], tx[k])
    assert batch['label'][0, test_index[k]] == ty[k].argmax()
  np.testing.assert_array_equal(batch['label'][0, :140], _planetoid('y').argmax(1))
  edges = set(zip(batch['senders'][0], batch['receivers'][0]))
  assert all((b, a) in edges for a, b in edges) and not any(a == b for a, b in edges)
  graph = _planetoid('graph')
  assert all((a, b) in edges for a in (0, 1, 2707) for b in graph[a] if a != b)
  with pytest.raises(ValueError, match='config.batch_size=1'):
    splits.train.train_iterator(8, seed=0)


def test_tiny_shakespeare_is_the_file_cut_90_5_5(build):
  splits = build('tiny_shakespeare', 'tinyshakespeare', seq_len=128)
  text = open(SHARED_DATA / 'tinyshakespeare' / 'input.txt').read()
  cut, tok = int(len(text) * 0.9), splits.info['tokenizer']
  inputs, targets = splits.train.arrays['inputs'], splits.train.arrays['targets']
  assert len(splits.train) == (cut - 1) // 128
  assert tok.decode(np.append(inputs.ravel(), targets[-1, -1])) == text[:inputs.size + 1]
  assert tok.decode(splits.eval.arrays['inputs'][0]) == text[cut:cut + 128]
  assert splits.info['vocab_size'] == 7 + len(set(text[:cut]))
  assert set(next(splits.train.train_iterator(8, seed=0))) == KEYS['lm']


def test_text_corpus_word_vocabulary_from_the_training_part(build):
  splits = build('text_corpus', 'wiki/enwiki-text.txt', min_count=5)
  text = open(SHARED_DATA / 'wiki' / 'enwiki-text.txt').read()
  counts = collections.Counter(text[:int(len(text) * 0.9)].split())
  assert splits.info['vocab_size'] == 7 + sum(n >= 5 for n in counts.values())
  assert splits.info['tokenizer'].decode(splits.train.arrays['inputs'][0][:3]) == ' '.join(
      text.split()[:3])


# The TFDS catalog path, under mock data.

CATALOG = [('tiny_shakespeare', 'lm'), ('lm1b', 'lm'), ('conll2003', 'tagging'),
           ('sst2', 'classification'), ('imdb_reviews', 'classification'),
           ('multi30k', 'translation'), ('wmt14_de_en', 'translation')]


@pytest.mark.parametrize('dataset, kind', CATALOG)
def test_catalog_datasets_under_mock_data(dataset, kind):
  with tfds.testing.mock_data(num_examples=20):
    splits = registry.build(_config(dataset, None, None, seq_len=8, vocab_size=300))
  assert _lengths(splits)[0] >= 8
  batch = next(splits.train.train_iterator(8, seed=0))
  assert set(batch) == KEYS[kind]
  assert batch['inputs'].dtype == np.int32 and batch['mask'].dtype == np.float32
  assert 0 < batch['inputs'].max() < splits.info['vocab_size']
  if kind in ('tagging', 'classification'):
    assert splits.info['num_classes'] == {'conll2003': 9}.get(dataset, 2)


# Prepared data is cached, and refreshed when a source file changes.


def _write(path, text):
  path.parent.mkdir(parents=True, exist_ok=True)
  path.write_text(text)
  return path


def _sst_folder(root, train='1 good film\n0 bad film\n1 fine\n'):
  for split in ('train', 'dev', 'test'):
    _write(root / f'stsa.binary.{split}', train if split == 'train' else '1 ok\n')
  return root


def test_prepared_data_is_reused_until_a_source_changes(tmp_path):
  folder = _sst_folder(tmp_path / 'sst')
  config = _config('sst2', folder, tmp_path / 'tfds')
  assert len(registry.build(config).train) == 3
  registry.build(config)
  prepared = tmp_path / 'tfds' / 'local_labelled_sentences'
  assert len(os.listdir(prepared)) == 1
  _write(folder / 'stsa.binary.train', '1 good\n0 bad\n')
  assert len(registry.build(config).train) == 2
  assert len(os.listdir(prepared)) == 2


# Two processes that prepare the same files at once: both renames are held until both
# have written their records, so one of them must lose the race.
PREPARE_IN_STEP = """
import contextlib, os, pathlib, sys, time
from ml_collections import ConfigDict
from tensorflow_datasets.core import utils
from train.data import registry
barrier = pathlib.Path(sys.argv[3])
original = utils.incomplete_dir

@contextlib.contextmanager
def renamed_together(dirname, **options):
  with original(dirname, **options) as temporary:
    yield temporary
    (barrier / str(os.getpid())).touch()
    while len(list(barrier.iterdir())) < 2:
      time.sleep(0.01)

utils.incomplete_dir = renamed_together
config = ConfigDict({'dataset': 'sst2', 'data_dir': sys.argv[1], 'tfds_data_dir': sys.argv[2],
                     'data': {}})
print(len(registry.build(config).train))
"""


def test_two_processes_preparing_the_same_files_at_once_both_read_them(tmp_path):
  folder = _sst_folder(tmp_path / 'sst')
  (tmp_path / 'barrier').mkdir()
  args = [sys.executable, '-c', PREPARE_IN_STEP, str(folder), str(tmp_path / 'tfds'),
          str(tmp_path / 'barrier')]
  runs = [subprocess.Popen(args, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                           text=True) for _ in range(2)]
  for run in runs:
    out, err = run.communicate(timeout=300)
    assert run.returncode == 0, err[-2000:]
    assert out.split()[-1] == '3'
  assert len(os.listdir(tmp_path / 'barrier')) == 2  # both really reached the rename
  (prepared,) = os.listdir(tmp_path / 'tfds' / 'local_labelled_sentences')
  assert os.listdir(tmp_path / 'tfds' / 'local_labelled_sentences' / prepared) == ['1.0.0']


# Malformed or missing input: the message names the file and line, or the field.


def _conll_folder(root, train):
  for name in ('train.txt', 'valid.txt', 'test.txt'):
    _write(root / name, train if name == 'train.txt' else 'Hi NNP B-NP O\n')
  return root


MALFORMED = [
    ('conll2003', _conll_folder,
     '-DOCSTART- -X- -X- O\n\nEU NNP B-NP B-ORG\nrejects VBZ B-VP\n',
     r'train.txt, line 4: expected 4 columns .* found 3'),
    ('conll2003', _conll_folder, 'EU NNP B-NP B-ORG\n\nrejects VBZ B-VP B-WHAT\n',
     r"train.txt, line 3: 'B-WHAT' is not"),
    ('conll2003', _conll_folder, '\n\n', r'train.txt holds no examples'),
    ('sst2', _sst_folder, '1 good\npositive nice\n',
     r"stsa.binary.train, line 2: the label 'positive' is not an integer"),
    ('sst2', _sst_folder, '1 good\n0 bad\n2 odd\n',
     r'stsa.binary.train, line 3: the label 2 is not in 0..1'),
    ('sst2', _sst_folder, '1 good\n0\n',
     r'stsa.binary.train, line 2: the label has no sentence'),
]


@pytest.mark.parametrize('dataset, make_folder, train, message', MALFORMED)
def test_malformed_lines_are_named_with_file_and_line(tmp_path, dataset, make_folder, train,
                                                      message):
  folder = make_folder(tmp_path / dataset, train)
  with pytest.raises(ValueError, match=message):
    registry.build(_config(dataset, folder, tmp_path / 'tfds'))


def test_parallel_files_of_different_lengths_are_named(tmp_path):
  folder = tmp_path / 'multi30k'
  for prefix in ('train', 'val', 'test_2016_flickr'):
    _write(folder / f'{prefix}.en', 'a dog\na cat\n')
    with gzip.open(folder / f'{prefix}.de.gz', 'wt') as f:  # gzip and plain mix
      f.write('ein Hund\n' if prefix == 'val' else 'ein Hund\neine Katze\n')
  with pytest.raises(ValueError, match=r'val.de.gz has 1 lines, .*val.en has 2 lines; '
                                       r'line 2 has no translation in .*val.de.gz'):
    registry.build(_config('multi30k', folder, tmp_path / 'tfds'))


def test_empty_text_file_is_named(tmp_path):
  path = _write(tmp_path / 'empty.txt', '\n \n')
  with pytest.raises(ValueError, match='empty.txt is empty'):
    registry.build(_config('text_corpus', path, tmp_path / 'tfds'))


@pytest.mark.parametrize('dataset, data_dir, message', [
    ('conll2003', 'nowhere', r"config.data_dir='nowhere' should be the folder holding "
                             r'train.txt.*nowhere/train.txt'),
    ('cora', 'nowhere', r'config.data_dir=.* ind.cora'),
    ('cora', None, 'cora has no TFDS catalog counterpart: set config.data_dir'),
    ('text_corpus', None, 'set config.data_dir to a plain-text file'),
    ('lm1b', 'nowhere', r'lm1b is read from the TFDS catalog \(lm1b\) only'),
])
def test_missing_data_names_the_config_field(tmp_path, dataset, data_dir, message):
  with pytest.raises(ValueError, match=message):
    registry.build(_config(dataset, data_dir, tmp_path / 'tfds'))


def test_vocabulary_mismatch_with_the_workdir_is_named(tmp_path):
  folder = _sst_folder(tmp_path / 'sst')
  tokenizer_dir = str(tmp_path / 'workdir' / 'tokenizer')
  config = _config('sst2', folder, tmp_path / 'tfds', tokenizer_dir=tokenizer_dir)
  first = registry.build(config)
  assert registry.build(config).info['vocab_size'] == first.info['vocab_size']
  config.data.min_count = 2
  with pytest.raises(ValueError, match='Vocabulary mismatch.*tokenizer'):
    registry.build(config)

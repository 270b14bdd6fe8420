"""Property-based tests: random config overrides and damaged data files fail with one
sentence (a UserError or nets.ModelConfigError) or not at all, never with a traceback.

`BAD_INPUTS_TRIED` holds one entry (the reader, or 'config (...)') per input tried, so
a report can say how many bad inputs the suite threw at the code: len(BAD_INPUTS_TRIED)
after a run, and collections.Counter(BAD_INPUTS_TRIED) per target.
"""

import collections
import gzip
import os
import pickle
import re

import hypothesis
import jax
import nets
import numpy as np
import pytest
import scipy.sparse
import tensorflow_datasets as tfds
from absl import flags
from hypothesis import strategies as st
from ml_collections import ConfigDict

from experiments import main
from experiments.configs import default
from train import config_checks, loop
from train.data import graph, images, registry, tokenizers
from train.data import text_builders as tb
from train.errors import UserError

# ml_collections loads config files with the deprecated load_module(), once per example.
pytestmark = pytest.mark.filterwarnings('ignore:the load_module:DeprecationWarning')

BAD_INPUTS_TRIED: list[str] = []
# FUZZ_SCALE=30 tries 30 times as many inputs, with fresh random ones on every run; by
# default the same inputs are tried every time, so a failure reproduces.
SCALE = float(os.environ.get('FUZZ_SCALE', 1))


def examples(n: int) -> hypothesis.settings:
  return hypothesis.settings(max_examples=max(1, int(n * SCALE)), deadline=None,
                             database=None,
                             derandomize=SCALE == 1,
                             suppress_health_check=list(hypothesis.HealthCheck))


SETTINGS = examples(30)


def one_line(error: Exception) -> str:
  message = str(error)
  assert message and '\n' not in message, f'not one line: {message!r}'
  return message


# Config overrides, through the same command-line parser as experiments/main.py.


def leaves(config: ConfigDict, prefix: str = '') -> dict:
  out = {}
  for key, value in config.items():
    if isinstance(value, ConfigDict):
      out.update(leaves(value, f'{prefix}{key}.'))
    else:
      out[prefix + key] = value
  return out


FIELDS = leaves(default.get_config())
# Fields whose size scales memory (widths, example counts, padded eval batches) get
# moderate sizes only: eval_batch_size=2**31 pads a 16 GiB batch and the kernel kills
# the process before any message.
SIZES = {'model.hidden', 'data.num_train', 'data.num_test', 'data.num_classes',
         'batch_size', 'eval_batch_size'}
BASE = ['--config=experiments/configs/default.py',  # the base config: every field
        '--config.data.num_train=64', '--config.data.num_test=64', '--config.batch_size=32',
        '--config.eval_batch_size=64', '--config.progress_bar=False']

numbers = st.one_of(
    st.integers(-2**70, 2**70), st.sampled_from([0, -1, 1, 2**31, 2**63, 10**30]),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([float('nan'), float('inf'), -1e-300, 1e300, 0.5, 1.0]))
small = st.integers(-5, 300)
words = st.one_of(st.just(''), st.text(max_size=8),
                  st.sampled_from(['abc', 'None', '(', '1,2', '()', '[1]', 'relu', 'sgd']))


def same_type(path: str) -> st.SearchStrategy:
  """Values of the field's own type, of any size or sign (moderate sizes for SIZES)."""
  default_value = FIELDS[path]
  if isinstance(default_value, tuple):
    return st.lists(st.one_of(small, st.floats(-2, 2), words), max_size=3).map(tuple)
  if path in SIZES:
    return small
  return {bool: st.booleans(), int: st.one_of(st.integers(-2**70, 2**70), small),
          float: numbers.map(float)}.get(type(default_value), words)


anything = st.one_of(numbers, words, st.booleans(), st.none(),
                     st.lists(st.one_of(numbers, words), max_size=3).map(tuple))


def as_flag(path: str, value) -> str:
  text = repr(value) if isinstance(value, (tuple, float)) else str(value)
  return f'--config.{path}={text}'


@st.composite
def overrides(draw, value_for):
  """1-3 (field path, value) pairs, each value drawn from `value_for(path)`."""
  paths = draw(st.lists(st.sampled_from(sorted(FIELDS)), min_size=1, max_size=3,
                        unique=True))
  return [(p, draw(value_for(p))) for p in paths]


def build(config: ConfigDict) -> None:
  """What a run does before its first step; only the project's own errors may escape."""
  try:
    config_checks.validate(config)
    loop.build(config, jax.devices()[:1])
  except (UserError, nets.ModelConfigError) as error:
    one_line(error)


def mangled(path: str) -> st.SearchStrategy:
  """`path` made into one that names no field (or a tuple element)."""
  return st.sampled_from([f'{path}.x', f'{path}[0]', f'{path}x', f'.{path}', '', 'x.y',
                          path.rpartition('.')[0] + '.' + path.rpartition('.')[0]])


def any_value(path: str) -> st.SearchStrategy:
  """Values of any type; of any size too, except for SIZES (see there)."""
  if path in SIZES:
    return st.one_of(same_type(path), words, st.floats(allow_nan=True), st.none(),
                     st.lists(small, max_size=3).map(tuple))
  return st.one_of(same_type(path), anything)


@hypothesis.given(overrides(any_value),
                  st.one_of(st.none(), st.sampled_from(sorted(FIELDS)).flatmap(mangled)))
@SETTINGS
def test_random_command_line_overrides(pairs, bad_path):
  BAD_INPUTS_TRIED.append('config (command line)')
  argv = ['main', '--workdir=unused', *BASE, *(as_flag(p, v) for p, v in pairs)]
  if bad_path is not None:
    argv.append(f'--config.{bad_path}=1')
  flag_values = flags.FlagValues()
  try:
    main.define_flags(flag_values, argv)
    main.parse_flags(argv, flag_values)
  except UserError as error:
    one_line(error)
    return
  build(flag_values.config)


def config_with(pairs) -> ConfigDict:
  config = default.get_config()
  config.data.update(num_train=64, num_test=64)
  config.update(batch_size=32, eval_batch_size=64, progress_bar=False)
  for path, value in pairs:
    *parents, leaf = path.split('.')
    node = config
    for key in parents:
      node = node[key]
    node[leaf] = value
  return config


@hypothesis.given(overrides(lambda path: st.one_of(same_type(path), st.none())))
@SETTINGS
def test_random_assignments_in_python(pairs):
  BAD_INPUTS_TRIED.append('config (python)')
  build(config_with(pairs))  # ConfigDict itself refuses a value of another type


@pytest.mark.parametrize('flags_, message', [
    (['--config.model.hidden=abc'], "'abc' is not an integer"),
    (['--config.model.hidden=1.5'], '1.5 is not an integer'),
    (['--config.num_steps=abc'], '--config.num_steps=abc is not an integer'),
    (['--config.optimizer.boundaries=(0.5,"x")'], "'x' is not a number"),
    (['--config.optimizer.learning_rate=nan'], 'learning_rate=nan must be a finite number'),
    (['--config.optimizer.b2=inf'], 'config.optimizer.b2=inf must be a finite number'),
    (['--config.seed=-1'], 'config.seed=-1 must be an integer in [0, 2**32)'),
    (['--config.seed=18446744073709551616'], 'config.seed=18446744073709551616 must be'),
    (['--config.data.num_classes=0'], 'config.data.num_classes=0 must be a positive'),
    (["--config.mesh_axes=('\xe9',)"], "config.mesh_axes=('\xe9',) must be distinct names"),
    (["--config.mesh_axes=('data','data')", '--config.mesh_shape=(1,-1)'],
     'must be distinct names'),
    (["--config.param_sharding=(('(', ()),)"], "regex '(' is not a valid regular expression"),
    (["--config.param_sharding=(('.*', ('model',)),)"], 'names axes outside'),
    (['--config.seed.x=1'], '--config.seed.x names a field the config does not have '
                            '(config.seed is an integer, not a group of fields)'),
    (['--config.=1'], "--config. names a field the config does not have (config has no "
                      "field '')"),
    (['--config.model.hidden[0]=5'], '(a tuple is set whole, e.g. --config.model.hidden=1,2)'),
    (['--config.optimizer.learnin_rate=1'], "config.optimizer has no field 'learnin_rate'; "
                                            "did you mean 'learning_rate'?"),
])
def test_overrides_found_by_the_fuzzer(flags_, message):
  argv = ['main', '--workdir=unused', *BASE, *flags_]
  flag_values = flags.FlagValues()
  with pytest.raises(UserError, match=re.escape(message)) as error:
    main.define_flags(flag_values, argv)
    main.parse_flags(argv, flag_values)
    config_checks.validate(flag_values.config)
  one_line(error.value)


@pytest.mark.parametrize('pairs, message', [
    ([('log_every', None)], 'config.log_every=None must be an integer'),
    ([('data.num_test', -1)], 'config.data.num_test=-1 must be a positive integer'),
    ([('optimizer.clip_global_norm', None)], 'clip_global_norm=None must be a number'),
    ([('mesh_axes', None)], 'config.mesh_axes=None must be a tuple'),
    ([('param_sharding', ((2**63, 0),))], 'must be (regex, partition spec)'),
    ([('mesh_shape', (0, -1)), ('mesh_axes', ('data', 'model'))], 'must hold positive sizes'),
])
def test_assignments_found_by_the_fuzzer(pairs, message):
  with pytest.raises(UserError, match=re.escape(message)):
    config_checks.validate(config_with(pairs))


# Damaged data files: every local reader.


@st.composite
def damaged(draw, valid: bytes, token: bytes = b' X'):
  """`valid` after 1-3 random edits, or random bytes."""
  if draw(st.integers(0, 9)) == 0:
    return draw(st.binary(max_size=200))
  data = bytearray(valid)
  for _ in range(draw(st.integers(1, 3))):
    at = draw(st.integers(0, len(data)))
    edit = draw(st.sampled_from(['truncate', 'flip', 'insert', 'field', 'drop', 'utf8',
                                 'line', 'crlf']))
    if edit == 'truncate':
      del data[at:]
    elif edit == 'flip' and at < len(data):
      data[at] ^= draw(st.integers(1, 255))
    elif edit == 'insert':
      data[at:at] = draw(st.binary(min_size=1, max_size=8))
    elif edit == 'field':
      data[at:at] = token
    elif edit == 'drop':
      data[at:at + draw(st.integers(1, 6))] = b''
    elif edit == 'utf8':
      data[at:at] = draw(st.sampled_from([b'\xff', b'\xc3', b'\xed\xa0\x80', b'\x80\x80']))
    elif edit == 'line':
      data[at:at] = draw(st.sampled_from([b'\n', b'\n\n', b'\x00', b'\r']))
    elif edit == 'crlf':
      data = bytearray(bytes(data).replace(b'\n', b'\r\n'))
  return bytes(data)


def gzipped(contents: st.SearchStrategy) -> st.SearchStrategy:
  """Compressed damaged text, or damaged compressed text."""
  return st.one_of(contents.map(gzip.compress),
                   contents.flatmap(lambda c: damaged(gzip.compress(c))))


def check(error: UserError, *names: str, line: bool = True) -> None:
  """The message is one line naming one of `names` and, for `line`, a line number."""
  message = one_line(error)
  assert any(n in message for n in names), message
  whole_file = ('holds no examples', 'is empty', 'not a gzip file', 'is cut short',
                'cannot be read', 'holds only', 'differ in length')
  assert not line or re.search(r'line \d+|:\d+:', message) or any(
      w in message for w in whole_file), message


def csv_rows(num_pixels: int, labels) -> bytes:
  return ''.join(','.join(['7'] * num_pixels + [str(k)]) + '\n' for k in labels).encode()


SMALL_CSV = csv_rows(4, [0, 1, 2, 0, 1])


@hypothesis.given(st.one_of(damaged(SMALL_CSV, b',5'), gzipped(damaged(SMALL_CSV, b',5'))))
@SETTINGS
def test_pixel_csv_reader(tmp_path_factory, data):
  BAD_INPUTS_TRIED.append('mnist csv')
  folder = tmp_path_factory.mktemp('csv', numbered=True)
  path = folder / ('x.csv.gz' if data[:2] == b'\x1f\x8b' else 'x.csv')
  path.write_bytes(data)
  try:
    images.read_pixel_csv(path, image_shape=(2, 2, 1), num_classes=10)
  except UserError as error:
    check(error, str(path))


MNIST_CSV = csv_rows(784, [0, 1] * 5)


@hypothesis.given(gzipped(damaged(MNIST_CSV, b',5')))
@examples(15)
def test_mnist_builder(tmp_path_factory, data):
  BAD_INPUTS_TRIED.append('mnist builder')
  folder = tmp_path_factory.mktemp('mnist', numbered=True)
  (folder / images.CSV_NAME).write_bytes(data)
  config = ConfigDict({'dataset': 'mnist', 'data_dir': str(folder), 'tfds_data_dir': None,
                       'data': {}})
  try:
    registry.build(config)
  except UserError as error:
    check(error, images.CSV_NAME)


# TFDS builders: the examples each builder generates are encoded as download_and_prepare
# would encode them (tests below go through the real preparation once each).


def generate(builder: tb.LocalBuilder) -> int:
  """Every example of every split, encoded with the builder's features; their count."""
  count = 0
  for examples in builder._split_generators(None).values():
    for _, example in examples:
      builder.info.features.encode_example(example)
      count += 1
  return count


def make_builder(cls, source, tmp, **options):
  return cls(source=str(source), data_dir=str(tmp / 'tfds'), file_format='array_record',
             config=tfds.core.BuilderConfig(name='fuzz'), **options)


CONLL = (b'-DOCSTART- -X- -X- O\n\nEU NNP B-NP B-ORG\nrejects VBZ B-VP O\n\n'
         b'Hi NNP B-NP O\n')


@pytest.fixture(scope='module')
def folder(tmp_path_factory):
  return tmp_path_factory.mktemp('readers')


@hypothesis.given(damaged(CONLL, b' NNP'))
@SETTINGS
def test_conll_reader(folder, data):
  BAD_INPUTS_TRIED.append('conll')
  for name in ('train.txt', 'valid.txt', 'test.txt'):
    (folder / name).write_bytes(data if name == 'train.txt' else CONLL)
  try:
    generate(make_builder(tb.LocalConll2003, folder, folder))
  except UserError as error:
    check(error, 'train.txt')


SST = b'1 a good film\n0 bad\n1 fine , really\n'


@hypothesis.given(damaged(SST, b' 7'))
@SETTINGS
def test_labelled_sentences_reader(folder, data):
  BAD_INPUTS_TRIED.append('sst2')
  files = ['sst.train', 'sst.dev', 'sst.test']
  for name in files:
    (folder / name).write_bytes(data if name == 'sst.train' else SST)
  try:
    generate(make_builder(tb.LocalLabelledSentences, folder, folder, files=files,
                          class_names=['negative', 'positive']))
  except UserError as error:
    check(error, 'sst.train')


PARALLEL = {'de': 'ein Hund\neine Katze\n'.encode(), 'en': b'a dog\na cat\n'}


@hypothesis.given(st.sampled_from(['.de', '.de.gz']).flatmap(lambda suffix: st.tuples(
    st.just(suffix), (gzipped if suffix.endswith('.gz') else lambda s: s)(
        damaged(PARALLEL['de'])))))
@SETTINGS
def test_parallel_text_reader(tmp_path_factory, suffix_data):
  BAD_INPUTS_TRIED.append('parallel text')
  suffix, data = suffix_data
  root = tmp_path_factory.mktemp('parallel', numbered=True)
  for prefix in ('train', 'val', 'test'):
    (root / f'{prefix}.en').write_bytes(PARALLEL['en'])
    (root / f'{prefix}{suffix if prefix == "train" else ".de"}').write_bytes(
        data if prefix == 'train' else PARALLEL['de'])
  try:
    generate(make_builder(tb.LocalParallelText, root, root, prefixes=['train', 'val', 'test'],
                          languages=['de', 'en']))
  except UserError as error:
    check(error, f'train{suffix}', 'train.en')


TEXT = 'First Citizen:\nBefore we proceed any further, hear me speak.\n\nAll:\nSpeak.\n'.encode()


@hypothesis.given(damaged(TEXT))
@SETTINGS
def test_text_corpus_reader(folder, data):
  BAD_INPUTS_TRIED.append('text corpus')
  path = folder / 'corpus.txt'
  path.write_bytes(data)
  try:
    generate(make_builder(tb.LocalTextCorpus, path, folder))
  except UserError as error:
    check(error, 'corpus.txt')


def planetoid_parts() -> dict[str, bytes]:
  """A valid 6-node Planetoid graph: 2 labelled, 4 in allx, nodes 4 and 5 for testing."""
  rng = np.random.default_rng(0)
  features = scipy.sparse.csr_matrix((rng.random((6, 3)) > 0.5).astype(np.float32))
  labels = np.eye(2, dtype=np.int64)[[0, 1, 0, 1, 1, 0]]
  adjacency = collections.defaultdict(list, {0: [1, 4], 1: [0], 2: [3], 3: [2, 5], 4: [0],
                                             5: [3]})
  parts = {'x': features[:2], 'y': labels[:2], 'allx': features[:4], 'ally': labels[:4],
           'tx': features[4:], 'ty': labels[4:], 'graph': adjacency}
  out = {p: pickle.dumps(v, protocol=2) for p, v in parts.items()}
  out['test.index'] = b'5\n4\n'
  return out


PLANETOID = planetoid_parts()


@hypothesis.given(st.sampled_from(sorted(PLANETOID)).flatmap(
    lambda part: st.tuples(st.just(part), damaged(PLANETOID[part], b'\x00'))))
@examples(40)
def test_planetoid_reader(tmp_path_factory, part_data):
  BAD_INPUTS_TRIED.append('planetoid')
  part, data = part_data
  root = tmp_path_factory.mktemp('cora', numbered=True)
  for name, valid in PLANETOID.items():
    (root / f'ind.cora.{name}').write_bytes(data if name == part else valid)
  try:
    graph.load_planetoid(str(root), 'cora')
  except UserError as error:
    check(error, 'ind.cora.', line=False)


@hypothesis.given(st.one_of(st.binary(max_size=60), damaged(
    b'{"kind": "word", "settings": {"corpus": "x", "vocab_size": 9, "min_count": 1}, '
    b'"tokens": ["a", "b"]}')))
@SETTINGS
def test_saved_tokenizer_reader(folder, data):
  BAD_INPUTS_TRIED.append('tokenizer')
  directory = folder / 'tokenizer'
  directory.mkdir(exist_ok=True)
  (directory / 'tokenizer.json').write_bytes(data)
  try:
    tokenizers.load(str(directory))
  except UserError as error:
    check(error, 'tokenizer.json', 'spm.model', line=False)


# Through the real preparation (TFDS download_and_prepare), once per kind of damage.


def test_the_original_samples_are_valid(tmp_path):
  images.read_pixel_csv(_write(tmp_path / 'x.csv', SMALL_CSV), (2, 2, 1), 10)
  assert graph.load_planetoid(str(_planetoid(tmp_path, {})), 'cora')['edges'].shape == (8, 2)
  for name in ('train.txt', 'valid.txt', 'test.txt'):
    _write(tmp_path / name, CONLL)
  assert generate(make_builder(tb.LocalConll2003, tmp_path, tmp_path)) == 6


def _write(path, data: bytes):
  path.parent.mkdir(parents=True, exist_ok=True)
  path.write_bytes(data)
  return path


def _planetoid(root, damage: dict):
  for name, valid in PLANETOID.items():
    _write(root / f'ind.cora.{name}', damage.get(name, valid))
  return root


def _config(dataset, data_dir, tmp_path):
  return ConfigDict({'dataset': dataset, 'data_dir': str(data_dir),
                     'tfds_data_dir': str(tmp_path / 'tfds'), 'data': {}})


@pytest.mark.parametrize('dataset, files, message', [
    ('conll2003', {'train.txt': CONLL + b'caf\xe9 NN B-NP O\n', 'valid.txt': CONLL,
                   'test.txt': CONLL}, r"train.txt, line 7: byte b'\\xe9' is not UTF-8"),
    ('sst2', {'stsa.binary.train': '1 good\n² odd\n'.encode(), 'stsa.binary.dev': SST,
              'stsa.binary.test': SST}, r"stsa.binary.train, line 2: the label '²' is not"),
    ('sst2', {'stsa.binary.train': b'1 good\n--1 odd\n', 'stsa.binary.dev': SST,
              'stsa.binary.test': SST}, r"stsa.binary.train, line 2: the label '--1' is not"),
    ('multi30k', {**{f'{p}.{lang}': PARALLEL[lang] for p in ('val', 'test_2016_flickr')
                     for lang in ('de', 'en')}, 'train.en': PARALLEL['en'],
                  'train.de.gz': gzip.compress(PARALLEL['de'])[:-12]},
     r'train.de.gz is cut short: its gzip data ends after line 1'),
    ('multi30k', {**{f'{p}.{lang}': PARALLEL[lang] for p in ('val', 'test_2016_flickr')
                     for lang in ('de', 'en')}, 'train.en': PARALLEL['en'],
                  'train.de.gz': PARALLEL['de']}, r'train.de.gz is not a gzip file'),
    ('tiny_shakespeare', {'input.txt': TEXT + b'\x80\n'},
     r"input.txt, line 6: byte b'\\x80' is not UTF-8"),
    ('cora', {'ind.cora.test.index': b'5\nfour\n'},
     r"ind.cora.test.index, line 2: 'four' is not a node number"),
    ('cora', {'ind.cora.tx': PLANETOID['tx'][:-9]}, r'ind.cora.tx is not a readable Planetoid'),
    ('cora', {'ind.cora.graph': b'\x80\x02cos\nsystem\nq\x00.'},
     r'ind.cora.graph is not a readable .* it names os.system'),
    ('mnist', {images.CSV_NAME: gzip.compress(MNIST_CSV)[:-20]},
     r'mnist_5k.csv.gz is cut short: its gzip data ends after line \d+'),
    ('mnist', {images.CSV_NAME: MNIST_CSV}, r'mnist_5k.csv.gz is not a gzip file'),
    ('mnist', {images.CSV_NAME: gzip.compress(csv_rows(784, [0, 1, 12]))},
     r'mnist_5k.csv.gz:3: the label 12 is not in 0..9'),
    ('mnist', {images.CSV_NAME: gzip.compress(csv_rows(784, [0, 1]))},
     r'mnist_5k.csv.gz holds only 2 examples'),
    ('mnist', {images.CSV_NAME: gzip.compress(csv_rows(784, [0, 10**20]))},
     r'mnist_5k.csv.gz:2: every field must be an integer'),
])
def test_damage_found_by_the_fuzzer_is_one_sentence(tmp_path, dataset, files, message):
  root = tmp_path / 'data'
  if dataset == 'cora':
    _planetoid(root, {k.removeprefix('ind.cora.'): v for k, v in files.items()})
  for name, data in files.items():
    _write(root / name, data)
  with pytest.raises(UserError, match=message) as error:
    registry.build(_config(dataset, root, tmp_path))
  one_line(error.value)

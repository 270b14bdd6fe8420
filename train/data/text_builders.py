"""TFDS builders for local files, prepared to ArrayRecord and read without TensorFlow.

`open_local` prepares a builder once (`download_and_prepare` runs TF-free for the
`array_record` file format) and reads it with `tfds.data_source`. Prepared data lives in
`<tfds_data_dir>/<builder>/<config>/1.0.0/`; the config name is a fingerprint of the
source files (path, size, modification time) and the builder's options, so replacing a
file prepares the dataset again instead of reading stale records.

Each builder's features and split names are those of the TFDS catalog dataset that the
same experiment reads without `data_dir`, so one conversion serves both:

| builder                  | catalog                 | features                         |
|--------------------------|-------------------------|----------------------------------|
| LocalTextCorpus          | tiny_shakespeare, lm1b  | text                             |
| LocalTextSplits          | none (PTB, WikiText)    | text                             |
| LocalConll2003           | conll2003               | tokens, pos, chunks, ner         |
| LocalLabelledSentences   | glue/sst2, imdb_reviews | sentence (text), label           |
| LocalParallelText        | wmt14_translate/de-en   | one text per language            |

A malformed line raises UserError naming the file and the line number.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import re
import zlib
from typing import Iterator, Sequence

import tensorflow_datasets as tfds

from train.errors import UserError

_CONLL = tfds.dataset_builders.conll.conll_dataset_builder_utils
_LINES_PER_DOCUMENT = 1000  # text corpora are stored in blocks, not one huge record


def numbered_lines(path: str) -> Iterator[tuple[int, str]]:
  """(line number from 1, line without its line break) of a plain or gzip UTF-8 file.

  Lines end at a line feed (a carriage return before it goes too). Each line is decoded
  on its own, so a byte that is not UTF-8 is reported with its line number.

  Raises:
    UserError: naming the file and line: not UTF-8, or (for .gz) not gzip or cut short.
  """
  opener = gzip.open if str(path).endswith('.gz') else open
  number = 0
  try:
    with opener(path, 'rb') as f:
      for number, raw in enumerate(f, 1):
        try:
          line = raw.decode('utf-8')
        except UnicodeDecodeError as error:
          raise UserError(f'{path}, line {number}: byte {raw[error.start:error.start + 1]!r} '
                          'is not UTF-8 text; save the file as UTF-8.') from None
        yield number, line.removesuffix('\n').removesuffix('\r')
  except (OSError, EOFError, zlib.error) as error:
    raise UserError(_unreadable(path, number, error)) from None


def corpus_paths(config, default: str) -> list[str]:
  """The text files of `config.data.corpus` (comma-separated; `default` if unset), each
  relative to `config.data_dir` unless absolute."""
  if not config.data_dir:
    raise UserError(f'{config.dataset} reads local text files: set config.data_dir to their '
                    'folder (e.g. ../shared/data/wiki) and config.data.corpus to the files.')
  paths = [os.path.join(config.data_dir, name.strip())
           for name in config.data.get('corpus', default).split(',') if name.strip()]
  for path in paths:
    if not os.path.isfile(path):
      raise UserError(f'{path} does not exist; set config.data.corpus to text files in '
                      f'config.data_dir={config.data_dir!r} (or absolute paths), separated '
                      'by commas.')
  return paths


def _unreadable(path: str, lines_read: int, error: Exception) -> str:
  """The sentence for a file that failed to read after `lines_read` good lines."""
  where = f'after line {lines_read}' if lines_read else 'at its start'
  if isinstance(error, gzip.BadGzipFile):
    return (f'{path} is not a gzip file ({error}); replace it with the complete original '
            '(or drop ".gz" from the name of a plain-text file).')
  if isinstance(error, EOFError):
    return (f'{path} is cut short: its gzip data ends {where}; replace it with a complete '
            'copy.')
  reason = ' '.join(str(error).split()) or type(error).__name__
  return f'{path} cannot be read {where} ({reason}); replace it with an intact copy.'


def _nonempty(path: str, examples: Iterator) -> Iterator:
  """Passes `examples` through; raises at the end if there were none."""
  count = 0
  for count, example in enumerate(examples, 1):
    yield example
  if not count:
    raise UserError(f'{path} holds no examples; check the file, or that config.data_dir '
                     'points at the right folder.')


def clip(text: str, limit: int = 40) -> str:
  """`text`, cut to `limit` characters for a message."""
  return text if len(text) <= limit else text[:limit - 3] + '...'


def read_text(path: str) -> str:
  """The whole UTF-8 file at `path`, every line break a line feed (as text mode gives).

  Raises:
    UserError: naming the file and line of the first byte that is not UTF-8.
  """
  try:
    with open(path, 'rb') as f:
      data = f.read()
  except OSError as error:
    raise UserError(_unreadable(path, 0, error)) from None
  try:
    text = data.decode('utf-8')
  except UnicodeDecodeError as error:
    line = data.count(b'\n', 0, error.start) + 1
    raise UserError(f'{path}, line {line}: byte {data[error.start:error.start + 1]!r} is not '
                    'UTF-8 text; save the file as UTF-8.') from None
  return text.replace('\r\n', '\n').replace('\r', '\n')


class LocalBuilder(tfds.core.GeneratorBasedBuilder, skip_registration=True):
  """A builder whose data is `source`, a local file or folder, not a download.

  Subclasses list their own constructor arguments in OPTIONS (kept in `self._options`),
  name the files per split with `source_files`, and read one split's files with
  `_generate_examples(*paths)`.
  """
  VERSION = tfds.core.Version('1.0.0')
  SPLITS: Sequence[str] = ('train', 'validation', 'test')
  OPTIONS: Sequence[str] = ()
  # Nothing is downloaded, so there is no checksum file to find next to the code (and
  # TFDS would look for it with importlib_resources, which it does not install).
  code_path = None

  def __init__(self, *, source: str, **kwargs):
    self._source = source
    self._options = {k: kwargs.pop(k) for k in self.OPTIONS}
    super().__init__(**kwargs)

  @classmethod
  def source_files(cls, source: str, **options) -> list[str]:
    """The files `source` must hold: SPLITS in order, the same number for each."""
    raise NotImplementedError

  def _info(self) -> tfds.core.DatasetInfo:
    # Examples keep file order: text corpora are read back as one contiguous stream.
    return tfds.core.DatasetInfo(builder=self, features=self._features(),
                                 disable_shuffling=True)

  def _features(self) -> tfds.features.FeaturesDict:
    raise NotImplementedError

  def _split_generators(self, dl_manager):
    del dl_manager  # nothing to download
    files = self.source_files(self._source, **self._options)
    per_split = len(files) // len(self.SPLITS)
    groups = [files[i:i + per_split] for i in range(0, len(files), per_split)]
    return {s: _nonempty(' and '.join(g), self._generate_examples(*g))
            for s, g in zip(self.SPLITS, groups)}


class LocalTextCorpus(LocalBuilder):
  """A plain-text file, cut 90/5/5 by characters exactly as catalog tiny_shakespeare is.

  Examples are blocks of lines; joining a split's blocks with newlines gives back its text.
  """

  @classmethod
  def source_files(cls, source: str) -> list[str]:
    return [source]

  def _features(self):
    return tfds.features.FeaturesDict({'text': tfds.features.Text()})

  def _split_generators(self, dl_manager):
    del dl_manager  # nothing to download; one file makes all three splits
    text = read_text(self._source)
    if not text.strip():
      raise UserError(f'{self._source} is empty; config.data_dir must name a text file.')
    i = int(len(text) * 0.9)
    train, rest = text[:i], text[i:]
    i = int(len(rest) * 0.5)
    return {'train': self._generate_examples(train),
            'validation': self._generate_examples(rest[:i]),
            'test': self._generate_examples(rest[i:])}

  def _generate_examples(self, text: str):
    split_lines = text.split('\n')
    for start in range(0, len(split_lines), _LINES_PER_DOCUMENT):
      yield start, {'text': '\n'.join(split_lines[start:start + _LINES_PER_DOCUMENT])}


class LocalTextSplits(LocalTextCorpus):
  """Plain-text files, one per split (Penn Treebank's ptb.{train,valid,test}.txt, ...)."""
  OPTIONS = ('files',)
  _split_generators = LocalBuilder._split_generators  # a file per split, not one file cut

  @classmethod
  def source_files(cls, source: str, files: Sequence[str] = ()) -> list[str]:
    return [os.path.join(source, f) for f in files]

  def _generate_examples(self, path: str):
    yield from super()._generate_examples(read_text(path))


class LocalConll2003(LocalBuilder):
  """CoNLL-2003 files: `token POS chunk NER` per line, sentences between blank lines."""
  SPLITS = ('train', 'dev', 'test')
  _FILES = ('train.txt', 'valid.txt', 'test.txt')
  _COLUMNS = tuple(_CONLL.CONLL_2003_ORDERED_FEATURES)  # tokens, pos, chunks, ner

  @classmethod
  def source_files(cls, source: str) -> list[str]:
    return [os.path.join(source, f) for f in cls._FILES]

  def _features(self):
    return tfds.features.FeaturesDict(_CONLL.CONLL_2003_ORDERED_FEATURES)

  def _generate_examples(self, path: str):
    tags = {c: set(self.info.features[c].feature.names) for c in self._COLUMNS[1:]}
    sentence = {c: [] for c in self._COLUMNS}
    for number, line in numbered_lines(path):
      fields = line.split()
      if fields and fields[0] != '-DOCSTART-':
        if len(fields) != len(self._COLUMNS):
          raise UserError(
              f'{path}, line {number}: expected 4 columns (token POS chunk NER) but found '
              f'{len(fields)}; fix or delete that line.')
        for column, value in zip(self._COLUMNS, fields):
          if column in tags and value not in tags[column]:
            raise UserError(f'{path}, line {number}: {clip(value)!r} is not a CoNLL-2003 '
                            f'{column} tag; fix that line.')
          sentence[column].append(value)
      elif sentence['tokens']:
        yield number, sentence
        sentence = {c: [] for c in self._COLUMNS}
    if sentence['tokens']:  # no blank line closed the last sentence
      yield number + 1, sentence


class LocalLabelledSentences(LocalBuilder):
  """Sentence classification files with one `label sentence` per line, label an integer."""
  OPTIONS = ('files', 'class_names')

  @classmethod
  def source_files(cls, source: str, files: Sequence[str] = (),
                   class_names: Sequence[str] = ()) -> list[str]:
    del class_names  # they name the labels, not files
    return [os.path.join(source, f) for f in files]

  def _features(self):
    return tfds.features.FeaturesDict({
        'sentence': tfds.features.Text(),
        'label': tfds.features.ClassLabel(names=self._options['class_names'])})

  def _generate_examples(self, path: str):
    num_classes = len(self._options['class_names'])
    for number, line in numbered_lines(path):
      label, _, sentence = line.strip().partition(' ')
      if not re.fullmatch(r'-?[0-9]+', label):
        raise UserError(f'{path}, line {number}: the label {clip(label)!r} is not an '
                        'integer; each line must be "<label> <sentence>".')
      if len(label) > 9 or not 0 <= int(label) < num_classes:
        raise UserError(f'{path}, line {number}: the label {clip(label)} is not in '
                        f'0..{num_classes - 1}; fix that line.')
      if not sentence.strip():
        raise UserError(f'{path}, line {number}: the label has no sentence after it.')
      yield number, {'sentence': sentence, 'label': int(label)}


class LocalParallelText(LocalBuilder):
  """Line-aligned translations: `<prefix>.<language>[.gz]`, one file per language."""
  OPTIONS = ('prefixes', 'languages')

  @classmethod
  def source_files(cls, source: str, prefixes: Sequence[str] = (),
                   languages: Sequence[str] = ()) -> list[str]:
    """Per split, one file per language; the plain file if present, else the gzip one."""
    files = []
    for prefix in prefixes:
      for language in languages:
        plain = os.path.join(source, f'{prefix}.{language}')
        files.append(plain if os.path.exists(plain) else plain + '.gz')
    return files

  def _features(self):
    return tfds.features.FeaturesDict(
        {lang: tfds.features.Text() for lang in self._options['languages']})

  def _generate_examples(self, *paths: str):
    texts = [[line for _, line in numbered_lines(p)] for p in paths]
    counts = [len(t) for t in texts]
    if len(set(counts)) > 1:
      short = counts.index(min(counts))
      raise UserError(
          'Parallel files differ in length: ' +
          ', '.join(f'{p} has {n} lines' for p, n in zip(paths, counts)) +
          f'; line {counts[short] + 1} has no translation in {paths[short]}, and the '
          'files must be line-aligned.')
    for number, pair in enumerate(zip(*texts), 1):
      yield number, dict(zip(self._options['languages'], pair))


def _fingerprint(files: Sequence[str], options: dict) -> str:
  """A config name that changes whenever a source file or a builder option does."""
  stats = [(os.path.realpath(f), os.stat(f).st_size, os.stat(f).st_mtime_ns) for f in files]
  digest = hashlib.sha1(json.dumps([stats, options], sort_keys=True).encode())
  return 'src_' + digest.hexdigest()[:16]


def open_local(builder: type[LocalBuilder], config, source: str, layout: str,
               **options) -> list:
  """Prepares `builder` from `source` if needed; its data sources in SPLITS order.

  Args:
    builder: the builder class.
    config: the experiment config; reads `data_dir` (for messages) and `tfds_data_dir`.
    source: the file or folder the builder reads (derived from config.data_dir).
    layout: what config.data_dir should be, for the message when files are missing.
    **options: the builder's own constructor arguments.
  """
  files = builder.source_files(source, **options)
  missing = [f for f in files if not os.path.isfile(f)]
  if missing:
    raise UserError(f'config.data_dir={config.data_dir!r} should be {layout}, but '
                     f'{", ".join(missing)} is missing.')
  name = _fingerprint(files, options)

  def prepared_sources():
    return tfds.data_source(
        builder.name, split=list(builder.SPLITS), data_dir=config.tfds_data_dir,
        builder_kwargs=dict(source=source, file_format='array_record', **options,
                            config=tfds.core.BuilderConfig(name=name)))
  try:
    return prepared_sources()
  except FileExistsError:
    # Another process prepared the same files at the same time (runs of a sweep started
    # together): TFDS writes into a temporary folder and renames it, the other rename won
    # and ours was undone. Its records are the ones we would have written: read them.
    return prepared_sources()

"""CoNLL-2003 training sentences as word2vec text: in-domain words for the word vectors.

  python -m experiments.conll_sentences --data_dir=../shared/data/conll2003 \
      --out=/tmp/conll_train.txt

Writes the sentences of train.txt one per line, lower-cased and with every character
other than a-z and 0-9 removed (a word left empty is dropped), the form of
../shared/data/wiki/enwiki-text.txt. Only the words are read, never the tags, so vectors
trained on it use no label of the tagging task. Train word2vec on both texts with
`--config.data.corpus=enwiki-text.txt,/tmp/conll_train.txt` (README, "Word vectors and
named entities").
"""

import pathlib
import re

from absl import app, flags

flags.DEFINE_string('data_dir', '../shared/data/conll2003', 'Folder of train.txt.')
flags.DEFINE_string('out', '/tmp/conll_train.txt', 'The text file to write.')
FLAGS = flags.FLAGS


def sentences(path: pathlib.Path):
  """Each sentence's words, normalised as the Wikipedia text is."""
  words = []
  with open(path, encoding='utf-8') as f:
    for line in f:
      token = line.split(' ', 1)[0].strip()
      if not token or token == '-DOCSTART-':  # a blank line or a document marker ends one
        if words:
          yield words
        words = []
        continue
      word = re.sub('[^a-z0-9]', '', token.lower())
      if word:
        words.append(word)
  if words:
    yield words


def main(argv):
  del argv
  source = pathlib.Path(FLAGS.data_dir) / 'train.txt'
  if not source.is_file():
    raise app.UsageError(f'{source} does not exist; set --data_dir to the CoNLL-2003 folder.')
  count = 0
  with open(FLAGS.out, 'w', encoding='utf-8') as out:
    for words in sentences(source):
      out.write(' '.join(words) + '\n')
      count += 1
  print(f'Wrote {count:,} sentences of {source} to {FLAGS.out}.')


if __name__ == '__main__':
  app.run(main)

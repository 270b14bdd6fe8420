"""Pretrained word vectors: a word2vec text file -> the rows of a model's embedding table.

The file is word2vec's text format: a header line "V D", then V lines "word v_1 ... v_D".
A word of the dataset's vocabulary takes the vector of the same word in the file, or, if
the file has no such word, that of its lower-cased form (vectors trained on lower-cased
text still cover "Paris" and "PARIS"); every other row keeps its random initialisation.

The found vectors are scaled by one common factor so that their standard deviation is
that of the random rows (E ~ N(0, 1/D) for flax's nn.Embed): the geometry of the vectors
is kept, and found and random rows start on the same scale.

A task reads the file in its `__init__` (`word_vectors(config, info)`) and applies the
result in its `init_params` hook, inside the jitted init.
"""

from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np

from train.errors import UserError

FIELD = 'pretrained_embeddings'  # the config field naming the file


def read_word2vec_text(path: str) -> tuple[list[str], np.ndarray]:
  """(words, vectors [V, D] float32) of a word2vec text-format file."""
  try:
    with open(path, encoding='utf-8') as f:
      header = f.readline().split()
      if len(header) != 2 or not all(h.isdigit() for h in header):
        raise UserError(f'config.{FIELD}={path!r} does not start with the word2vec header '
                        f'"V D" (found {" ".join(header)[:40]!r}); write the vectors in '
                        'word2vec text format.')
      count, dim = map(int, header)
      words, vectors = [], np.zeros((count, dim), np.float32)
      for line_number, line in enumerate(f, start=2):
        parts = line.rstrip('\n').split(' ')
        if len(words) == count or len(parts) != dim + 1:
          raise UserError(f'{path}, line {line_number}: expected "word" and {dim} numbers as '
                          f'the header says ({count} words of {dim} dimensions); the file '
                          'is cut or malformed.')
        vectors[len(words)] = np.asarray(parts[1:], np.float32)
        words.append(parts[0])
  except OSError as error:
    raise UserError(f'config.{FIELD}={path!r} cannot be read ({error.strerror}); set it to '
                    'a word2vec text file, or to None for random embeddings.') from None
  except ValueError as error:
    if isinstance(error, UserError):
      raise
    raise UserError(f'{path} holds a vector entry that is not a number ({error}).') from None
  if len(words) != count:
    raise UserError(f'{path} has {len(words)} vectors but its header says {count}; the file '
                    'is cut.')
  return words, vectors


def vocabulary_rows(vocabulary: list[str], words: list[str],
                    vectors: np.ndarray) -> tuple[np.ndarray, np.ndarray, int, int]:
  """(ids, rows, exact, lowered): the vocabulary ids that have a vector, and their vectors.

  `exact` ids matched the word itself, `lowered` ids its lower-cased form.
  """
  index = {w: i for i, w in enumerate(words)}
  ids, rows, exact = [], [], 0
  for token_id, token in enumerate(vocabulary):
    row = index.get(token)
    exact += row is not None
    if row is None:
      row = index.get(token.lower())
    if row is not None:
      ids.append(token_id)
      rows.append(row)
  rows_NxD = vectors[np.asarray(rows, np.int64)].reshape(-1, vectors.shape[1])
  return np.asarray(ids, np.int32), rows_NxD, exact, len(ids) - exact


def _embedding_path(params, vocab_size: int) -> tuple:
  """The key path of the one embedding table ([vocab_size, D] leaf named 'embedding')."""
  found = [path for path, leaf in jax.tree_util.tree_leaves_with_path(params)
           if getattr(path[-1], 'key', None) == 'embedding' and leaf.shape[0] == vocab_size]
  if len(found) != 1:
    raise UserError(f'config.{FIELD} needs a model with exactly one word embedding table '
                    f'({vocab_size} x D); this model has {len(found)}. Set it to None.')
  return found[0]


def word_vectors(config, info: dict) -> Callable:
  """`init_params(params) -> params` loading `config.pretrained_embeddings` (identity if None).

  Reads the file now (on the host, once) and prints how much of the vocabulary it covers.
  """
  path = config.get(FIELD)
  if not path:
    return lambda params: params
  vocabulary = getattr(info.get('tokenizer'), 'tokens', None)
  if vocabulary is None:
    raise UserError(f'config.{FIELD} needs whole-word tokens; set '
                    "config.data.tokenizer='word'.")
  words, vectors = read_word2vec_text(path)
  ids, rows, exact, lowered = vocabulary_rows(vocabulary, words, vectors)
  if not len(ids):
    raise UserError(f'None of the {len(vocabulary):,} vocabulary words is in {path}; check '
                    f'that config.{FIELD} names vectors of this language and dataset.')
  print(f'Pretrained vectors from {path}: {len(ids):,} of {len(vocabulary):,} vocabulary '
        f'words found ({exact:,} exact, {lowered:,} lower-cased), dimension '
        f'{vectors.shape[1]}.', flush=True)

  def init_params(params):
    path = _embedding_path(params, len(vocabulary))
    table_VxD = _get(params, path)
    if table_VxD.shape[1] != rows.shape[1]:
      raise UserError(f'config.{FIELD} holds {rows.shape[1]}-dimensional vectors but the '
                      f'model embeds in {table_VxD.shape[1]}; set config.model.embed_dim='
                      f'{rows.shape[1]}.')
    scale = jnp.std(table_VxD) / max(float(rows.std()), 1e-12)  # all-zero vectors stay 0
    table_VxD = table_VxD.at[ids].set(jnp.asarray(rows) * scale)
    return _set(params, path, table_VxD)

  return init_params


def _get(tree, path):
  for key in path:
    tree = tree[key.key]
  return tree


def _set(tree, path, value):
  if not path:
    return value
  return {**tree, path[0].key: _set(tree[path[0].key], path[1:], value)}

"""Word vectors: similarity and analogy benchmarks, nearest neighbours, export, PCA plot.

Every score uses cosine similarity, cos(a, b) = a.b / (|a| |b|):

  wordsim353, simlex999  Spearman's rank correlation between the cosine of each pair and
                         the human score, over the pairs whose words are both in the
                         vocabulary (the rest are skipped and counted, as gensim does).
  analogy                a : b :: c : ?  answered by 3CosAdd over the whole vocabulary,
                         argmax_x cos(x, b - a + c) with a, b, c themselves excluded
                         (unit vectors); accuracy over the questions whose four words are
                         all known, the others skipped and counted (Mikolov et al. 2013).

Benchmark words are lower-cased (the corpus is). The export formats are word2vec.c's:

  text    first line "V D", then one line per word: "word v_1 ... v_D"
  binary  "V D\\n", then per word: its UTF-8 bytes, a space, D little-endian float32s,
          and a line feed
"""

from __future__ import annotations

import dataclasses
import os
import pathlib
from typing import Sequence

import numpy as np

from train.errors import UserError

SIMILARITY = ('wordsim353', 'simlex999')


def _lines(path) -> list[str]:
  path = pathlib.Path(path)
  try:
    return path.read_text(encoding='utf-8').splitlines()
  except FileNotFoundError:
    raise UserError(f'{path} does not exist; point the config field at the benchmark file '
                    '(or set it to "" to skip that benchmark).') from None


def load_similarity(path) -> list[tuple[str, str, float]]:
  """(word, word, human score) per line of a tab-separated file; '#' starts a comment."""
  pairs = []
  for number, line in enumerate(_lines(path), 1):
    if not line.strip() or line.startswith('#'):
      continue
    fields = line.split('\t')
    try:
      pairs.append((fields[0].lower(), fields[1].lower(), float(fields[2])))
    except (IndexError, ValueError):
      raise UserError(f'{path}, line {number}: expected "word<TAB>word<TAB>score", got '
                      f'{line[:60]!r}.') from None
  return pairs


def load_analogies(path) -> list[tuple[str, str, str, str]]:
  """The questions (a, b, c, d) of a file in the Google format (': section' headers)."""
  questions = []
  for number, line in enumerate(_lines(path), 1):
    if not line.strip() or line.startswith(':'):
      continue
    words = line.lower().split()
    if len(words) != 4:
      raise UserError(f'{path}, line {number}: expected four words "a b c d", got '
                      f'{line[:60]!r}.')
    questions.append(tuple(words))
  return questions


@dataclasses.dataclass
class Benchmarks:
  """The word-similarity pair lists by metric name, and the analogy questions."""
  similarity: dict[str, list[tuple[str, str, float]]]
  analogies: list[tuple[str, str, str, str]] | None


def load_benchmarks(folder, wordsim353: str = '', simlex999: str = '',
                    analogy: str = '') -> Benchmarks:
  """The benchmark files in `folder` (or absolute paths); an empty name skips one."""
  path = lambda name: os.path.join(folder or '', name)
  similarity = {n: load_similarity(path(f)) for n, f in
                (('wordsim353', wordsim353), ('simlex999', simlex999)) if f}
  return Benchmarks(similarity, load_analogies(path(analogy)) if analogy else None)


def unit_rows(vectors: np.ndarray) -> np.ndarray:
  norms = np.linalg.norm(vectors, axis=1, keepdims=True)
  return vectors / np.where(norms == 0, 1.0, norms)


def similarity_score(unit: np.ndarray, index: dict[str, int],
                     pairs: Sequence[tuple[str, str, float]]) -> tuple[float, int, int]:
  """(Spearman rho, pairs used, pairs skipped for unknown words)."""
  known = [(index[a], index[b], s) for a, b, s in pairs if a in index and b in index]
  if len(known) < 2:
    return float('nan'), len(known), len(pairs) - len(known)
  a, b, human = (np.array(x) for x in zip(*known))
  cosine = np.sum(unit[a] * unit[b], axis=1)
  from scipy import stats  # imported here: it costs a second at every start of the engine
  return float(stats.spearmanr(cosine, human).statistic), len(known), len(pairs) - len(known)


def analogy_answers(unit: np.ndarray, a: np.ndarray, b: np.ndarray, c: np.ndarray,
                    block: int = 1024) -> np.ndarray:
  """3CosAdd: argmax_x cos(x, b - a + c) over the vocabulary minus {a, b, c}, per question."""
  answers = np.empty(len(a), np.int64)
  for start in range(0, len(a), block):
    rows = slice(start, start + block)
    query_QxD = unit[b[rows]] - unit[a[rows]] + unit[c[rows]]
    scores_QxV = query_QxD @ unit.T
    q = np.arange(len(query_QxD))
    for excluded in (a[rows], b[rows], c[rows]):
      scores_QxV[q, excluded] = -np.inf
    answers[rows] = np.argmax(scores_QxV, axis=1)
  return answers


def analogy_score(unit: np.ndarray, index: dict[str, int],
                  questions: Sequence[tuple[str, ...]]) -> tuple[float, int, int]:
  """(accuracy, questions answered, questions skipped for unknown words)."""
  known = [[index[w] for w in q] for q in questions if all(w in index for w in q)]
  skipped = len(questions) - len(known)
  if not known:
    return float('nan'), 0, skipped
  a, b, c, d = np.array(known).T
  return float(np.mean(analogy_answers(unit, a, b, c) == d)), len(known), skipped


def evaluate(vectors: np.ndarray, words: Sequence[str], benchmarks: Benchmarks) -> dict:
  """Every benchmark's score, with how many items were used and skipped."""
  unit = unit_rows(np.asarray(vectors, np.float32))
  index = {w: i for i, w in enumerate(words)}
  out = {}
  for name, pairs in benchmarks.similarity.items():
    out[name], out[f'{name}_pairs'], out[f'{name}_skipped'] = similarity_score(
        unit, index, pairs)
  if benchmarks.analogies is not None:
    out['analogy'], out['analogy_questions'], out['analogy_skipped'] = analogy_score(
        unit, index, benchmarks.analogies)
  return out


def nearest(vectors: np.ndarray, words: Sequence[str], word: str,
            k: int = 10) -> list[tuple[str, float]]:
  """The k words of highest cosine similarity to `word` (itself excluded)."""
  index = {w: i for i, w in enumerate(words)}
  if word not in index:
    raise UserError(f'{word!r} is not in the vocabulary of {len(words)} words (words seen '
                    'fewer than config.data.min_count times are left out).')
  unit = unit_rows(np.asarray(vectors, np.float32))
  cosine = unit @ unit[index[word]]
  cosine[index[word]] = -np.inf
  top = np.argsort(-cosine)[:k]
  return [(words[i], float(cosine[i])) for i in top]


# The word2vec.c formats.


def _check_words(words: Sequence[str]) -> None:
  bad = next((w for w in words if not w or any(ch.isspace() for ch in w)), None)
  if bad is not None:
    raise UserError(f'The word {bad!r} cannot be written in the word2vec format, whose '
                    'words are separated by spaces.')


def save_text(path, words: Sequence[str], vectors: np.ndarray) -> None:
  """'V D', then 'word v_1 ... v_D' per line; %.9g round-trips every float32 exactly."""
  _check_words(words)
  vectors = np.asarray(vectors, np.float32)
  row = ' '.join(['%.9g'] * vectors.shape[1])
  with open(path, 'w', encoding='utf-8') as f:
    f.write(f'{len(words)} {vectors.shape[1]}\n')
    for word, v in zip(words, vectors.astype(np.float64)):
      f.write(f'{word} {row % tuple(v)}\n')


def save_binary(path, words: Sequence[str], vectors: np.ndarray) -> None:
  """'V D\\n', then per word: its bytes, a space, D little-endian float32s, a line feed."""
  _check_words(words)
  vectors = np.asarray(vectors, '<f4')
  with open(path, 'wb') as f:
    f.write(f'{len(words)} {vectors.shape[1]}\n'.encode())
    for word, v in zip(words, vectors):
      f.write(word.encode('utf-8') + b' ' + v.tobytes() + b'\n')


def _header(path, line: str) -> tuple[int, int]:
  try:
    count, dim = (int(x) for x in line.split())
  except ValueError:
    raise UserError(f'{path}: the first line should be "<words> <dimensions>", got '
                    f'{line[:60]!r}; is it a word2vec file?') from None
  return count, dim


def load_text(path) -> tuple[list[str], np.ndarray]:
  """(words, vectors [V, D] float32) of a word2vec text file."""
  lines = _lines(path)
  count, dim = _header(path, lines[0] if lines else '')
  words, vectors = [], np.zeros((count, dim), np.float32)
  for i, line in enumerate(lines[1:count + 1]):
    fields = line.rstrip().split(' ')
    if len(fields) != dim + 1:
      raise UserError(f'{path}, line {i + 2}: expected a word and {dim} numbers, got '
                      f'{len(fields)} fields.')
    words.append(fields[0])
    vectors[i] = np.array(fields[1:], np.float32)
  if len(words) != count:
    raise UserError(f'{path} promises {count} words but holds {len(words)}; it is cut short.')
  return words, vectors


def load_binary(path) -> tuple[list[str], np.ndarray]:
  """(words, vectors [V, D] float32) of a word2vec binary file."""
  data = pathlib.Path(path).read_bytes()
  end = data.find(b'\n')
  count, dim = _header(path, data[:end].decode('utf-8', 'replace'))
  words, vectors, at = [], np.zeros((count, dim), np.float32), end + 1
  for i in range(count):
    while data[at:at + 1] == b'\n':  # the line feed after the previous vector, if any
      at += 1
    space = data.find(b' ', at)
    if space < 0 or space + 1 + 4 * dim > len(data):
      raise UserError(f'{path} promises {count} words but is cut short after {i}.')
    words.append(data[at:space].decode('utf-8'))
    vectors[i] = np.frombuffer(data, '<f4', dim, space + 1)
    at = space + 1 + 4 * dim
  return words, vectors


def pca_plot(path, words: Sequence[str], vectors: np.ndarray, chosen: Sequence[str],
             title: str = '') -> list[str]:
  """A scatter of `chosen` words on the first two principal components of their vectors.

  Returns the chosen words that were plotted (the ones in the vocabulary).
  """
  import matplotlib  # here, so evaluation never needs a plotting backend
  matplotlib.use('Agg')
  import matplotlib.pyplot as plt

  index = {w: i for i, w in enumerate(words)}
  shown = [w for w in chosen if w in index]
  if len(shown) < 2:
    raise UserError(f'Only {shown} of the chosen words are in the vocabulary; a PCA plot '
                    'needs at least 2 known words.')
  x_NxD = np.asarray(vectors, np.float64)[[index[w] for w in shown]]
  x_NxD = x_NxD - x_NxD.mean(axis=0)
  _, _, vt = np.linalg.svd(x_NxD, full_matrices=False)
  xy_Nx2 = x_NxD @ vt[:2].T
  fig, ax = plt.subplots(figsize=(7, 6))
  ax.scatter(xy_Nx2[:, 0], xy_Nx2[:, 1], s=12)
  for word, (x, y) in zip(shown, xy_Nx2):
    ax.annotate(word, (x, y), fontsize=9, xytext=(3, 3), textcoords='offset points')
  ax.set_xlabel('PC 1')
  ax.set_ylabel('PC 2')
  ax.set_title(title or 'word vectors, first two principal components')
  fig.tight_layout()
  fig.savefig(path, dpi=120)
  plt.close(fig)
  return shown

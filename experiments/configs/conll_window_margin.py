"""Location detection on CoNLL-2003 with the window network and the max-margin objective.

The conll_window_ner network with one output, a score s(window), trained so that every
window centred on a location word (B-LOC, I-LOC) scores at least 1 more than each of 5
copies of it whose centre word is replaced by a word drawn at random from the corpus:
J = sum max(0, 1 - s(x) + s(x_c)) (train/tagging_tasks.py, 'window_margin'). A word is a
location where s > 0; runs of them are locations, scored as conlleval scores entities.

Command:
  python -m experiments.main --config=experiments/configs/conll_window_margin.py \
      --config.data_dir=../shared/data/conll2003 --workdir=workdirs/conll_window_margin
Expected: test LOC F1 73.91 (precision 74.38, recall 73.44; dev 77.29) at threshold 1.5,
293 s on 2 CPU cores.
"""

from ml_collections import ConfigDict

from experiments.configs import conll_window_ner


def get_config():
  c = conll_window_ner.get_config()
  c.task = 'window_margin'
  c.margin = ConfigDict({'entity': 'LOC', 'num_corrupt': 5, 'margin': 1.0, 'threshold': 1.5,
                         'sample': 'corpus'})
  # Words only: with part-of-speech features a corrupted window keeps its centre's NNP,
  # and the windows of other words (whose tags training never shows) score anywhere.
  c.input_features = ()
  c.word_dropout = 0.0
  return c

"""CoNLL-2003 NER with the window classifier of Collobert et al. (2011), softmax objective.

Each word is tagged from the 5 words around it (2 each side): their embeddings (and
those of their part-of-speech and chunk tags) concatenated -> a tanh hidden layer -> a
softmax over the 9 IOB tags; entities scored as conlleval scores them.
conll_window_margin.py trains the same network with the max-margin objective instead.

Command:
  python -m experiments.main --config=experiments/configs/conll_window_ner.py \
      --config.data_dir=../shared/data/conll2003 --workdir=workdirs/conll_window_ner
Expected: test entity F1 77.67 (precision 78.21, recall 77.14; dev 84.78), 124 s on 2 CPU
cores. From word2vec vectors (--config.pretrained_embeddings=W/vectors.txt of a
wiki_word2vec run) 77.52: no better than random here; with the vectors' words in the
vocabulary too (--config.data.vocabulary_from_vectors=True) 77.80, dev 85.51 (README).
"""

from ml_collections import ConfigDict

from experiments.configs import conll_bilstm


def get_config():
  c = conll_bilstm.get_config()  # the same data and task; another network
  # The schedule its figures were measured with: 5 epochs, the last step tested.
  c.update(num_epochs=5, eval_every=1000, select_best='')
  c.input_features = ('pos', 'chunks')
  c.word_dropout = 0.1
  c.model = ConfigDict({'name': 'window_ner', 'half_width': 2, 'embed_dim': 100,
                        'feature_dim': 8, 'hidden': 300, 'activation': 'tanh',
                        'dropout_rate': 0.3})
  c.optimizer.update(learning_rate=3e-3, clip_global_norm=0.0)
  return c

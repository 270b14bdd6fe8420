"""CoNLL-2003 NER with a BiLSTM tagger, scored by entities as conlleval scores them.

Words (case kept, every training word in the vocabulary; 10% of training words replaced
by UNK so that unseen test words are tagged from their context) -> 100-d embeddings,
with 16-d embeddings of each word's part-of-speech tag, chunk tag and case (lower, Title,
UPPER, digits, other) -> a BiLSTM (128 per direction) -> a softmax over the 9 IOB tags
of each word; no CRF, no characters. 10 epochs, evaluated on the dev set every 500 steps;
the step of best dev entity F1 is the one tested (config.select_best).

Command:
  python -m experiments.main --config=experiments/configs/conll_bilstm.py \
      --config.data_dir=../shared/data/conll2003 --workdir=workdirs/conll_bilstm
Expected: test entity F1 81.49 (precision 80.77, recall 82.22; dev 88.22 at the selected
step 4,000 of 4,380), 168 s on 2 CPU cores. The earlier recipe (5 epochs, the last step
tested) gave 79.85, and 80.70 from word2vec vectors of the Wikipedia text plus the CoNLL
training sentences (--config.pretrained_embeddings; README, "Word vectors and named
entities"). Without the case feature 78.28; words alone and no word dropout 71.41.
"""

from ml_collections import ConfigDict, config_dict

from experiments.configs import default


def get_config():
  c = default.get_config()
  c.dataset = 'conll2003'
  c.data = ConfigDict({'tokenizer': 'word', 'min_count': 1, 'vocab_size': 50_000,
                       'bucketing': True, 'max_len': 128,
                       'tokenizer_dir': config_dict.placeholder(str),
                       # True: the pretrained vectors' words enter the vocabulary too
                       'vocabulary_from_vectors': False})
  c.task = 'sequence_tagging'
  c.input_features = ('pos', 'chunks', 'case')
  c.word_dropout = 0.1
  c.pretrained_embeddings = config_dict.placeholder(str)
  c.model = ConfigDict({'name': 'rnn_tagger', 'embed_dim': 100, 'cell': 'lstm',
                        'hidden_size': 128, 'num_layers': 1, 'bidirectional': True,
                        'dropout_rate': 0.5})
  c.optimizer.update(name='adam', learning_rate=2e-3, schedule='cosine', warmup_steps=50,
                     clip_global_norm=5.0)
  c.batch_size = 32
  c.eval_batch_size = 256
  c.num_steps = -1
  c.num_epochs = 10
  c.log_every = 100
  c.eval_every = 500
  c.checkpoint_every = 1000
  c.select_best = 'f1'
  return c

"""SST-2 sentiment with a BiLSTM: word embeddings -> BiLSTM -> max over time -> 2 classes.

The task is 'sentence_classification' (the 'classification' task that can also load
word2vec vectors into the embedding table, config.pretrained_embeddings).

Command:
  python -m experiments.main --config=experiments/configs/sst2_bilstm.py \
      --config.data_dir=../shared/data/sst2 --workdir=workdirs/sst2_bilstm
Expected: test accuracy 0.8215 (1,821 sentences), 109 s on 2 CPU cores.
"""

from ml_collections import ConfigDict, config_dict

from experiments.configs import default


def get_config():
  c = default.get_config()
  c.dataset = 'sst2'
  c.data = ConfigDict({'tokenizer': 'word', 'min_count': 1, 'vocab_size': 20_000,
                       'bucketing': True, 'tokenizer_dir': config_dict.placeholder(str)})
  c.task = 'sentence_classification'
  c.input_features = ()
  c.word_dropout = 0.25  # training words become UNK, so unknown test words are familiar
  c.pretrained_embeddings = config_dict.placeholder(str)
  c.model = ConfigDict({'name': 'rnn_classifier', 'embed_dim': 100, 'cell': 'lstm',
                        'hidden_size': 128, 'num_layers': 1, 'bidirectional': True,
                        'pool': 'max', 'dropout_rate': 0.5})
  c.optimizer.update(name='adam', learning_rate=2e-3, schedule='cosine', warmup_steps=50,
                     clip_global_norm=5.0)
  c.batch_size = 32
  c.eval_batch_size = 256
  c.num_steps = -1
  c.num_epochs = 4
  c.log_every = 50
  c.eval_every = 200
  c.checkpoint_every = 400
  return c

"""SST-2 sentiment with a neural bag of words (mean of word embeddings, then an MLP).

The smallest text classifier through the same engine as everything else: the word
vocabulary is built from the training sentences and saved in the workdir, batches are
bucketed by length, and the model's vocab_size comes from the dataset.

Command:
  python -m experiments.main --config=experiments/configs/sst2_bow.py \
      --config.data_dir=../shared/data/sst2 --workdir=workdirs/sst2_bow
Expected: test accuracy 0.805 on the 1,821 test sentences (measured; Iyyer et al. 2015
report 0.83 for a deeper averaging network with pretrained vectors), 38 s on 2 CPU cores.
"""

from ml_collections import ConfigDict, config_dict

from experiments.configs import default


def get_config():
  c = default.get_config()
  c.dataset = 'sst2'
  c.data = ConfigDict({'tokenizer': 'word', 'min_count': 1, 'vocab_size': 20_000,
                       'bucketing': True,
                       'tokenizer_dir': config_dict.placeholder(str)})
  c.model = ConfigDict({'name': 'bag_of_words', 'embed_dim': 128, 'hidden': (128,),
                        'activation': 'relu', 'dropout_rate': 0.3})
  c.optimizer.update(name='adam', learning_rate=2e-3, schedule='cosine', warmup_steps=50)
  c.batch_size = 64
  c.eval_batch_size = 256
  c.num_steps = -1
  c.num_epochs = 8
  c.log_every = 50
  c.eval_every = 200
  c.checkpoint_every = 400
  return c

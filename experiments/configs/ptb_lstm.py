"""A word-level LSTM language model (Zaremba et al. 2014) on Penn Treebank or WikiText.

config.data_dir names a folder in the layout of the word-level benchmarks: Penn Treebank's
ptb.{train,valid,test}.txt or WikiText's wiki.{train,valid,test}.tokens, whose three files
are the three splits (train/data/text.py, `text_corpus`). Words are split on whitespace;
each line ends with an end-of-sentence token; the 10,000 most frequent training words
(specials included) form the vocabulary, as in PTB. 2 LSTM layers of 256 with tied
embeddings, dropout 0.3, state carried across windows of 35 words (truncated BPTT), batch
32, Adam at 2e-3 with cosine decay, gradients clipped to norm 1. Reported: perplexity,
evaluated on independent windows of 350 words, each from a zero state.

Command (Penn Treebank: point data_dir at the folder of ptb.*.txt):
  python -m experiments.main --config=experiments/configs/ptb_lstm.py \
      --config.data_dir=/path/to/ptb --workdir=workdirs/ptb_lstm
To be measured on a stand-in, as no PTB is on the project machines: ../shared/data/wiki's 106
articles cut into three files (lines 1-98, 99-102, 103-106),
  mkdir -p /tmp/wiki_lm && W=../shared/data/wiki/enwiki-text.txt && \
  head -n 98 $W > /tmp/wiki_lm/wiki.train.tokens && \
  sed -n 99,102p $W > /tmp/wiki_lm/wiki.valid.tokens && tail -n 4 $W > /tmp/wiki_lm/wiki.test.tokens
  python -m experiments.main --config=experiments/configs/ptb_lstm.py \
      --config.data_dir=/tmp/wiki_lm --workdir=workdirs/wiki_lstm
Expected: on that stand-in (407k training words, vocabulary 10,000), valid perplexity 409.9
and test 419.7 after the 1,100 steps, 725 s on 2 CPU cores shared with the test suite; the
106 articles are far too few words for a 10k-word model (PTB is 887k training words).
"""

from ml_collections import ConfigDict, config_dict

from experiments.configs import default


def get_config():
  c = default.get_config()
  c.dataset = 'text_corpus'
  c.data = ConfigDict({'tokenizer': 'word', 'vocab_size': 10_000, 'seq_len': 35,
                       'eval_seq_len': 350, 'carry_state': True,
                       'tokenizer_dir': config_dict.placeholder(str)})
  c.task = 'language_model'
  c.model = ConfigDict({'name': 'rnn_lm', 'cell': 'lstm', 'embed_dim': 256, 'hidden_size': 256,
                        'num_layers': 2, 'dropout_rate': 0.3, 'tie_weights': True})
  c.optimizer.update(name='adam', learning_rate=2e-3, schedule='cosine', end_factor=0.1,
                     warmup_steps=0, clip_global_norm=1.0)
  c.samples = ConfigDict({'count': 1, 'length': 40, 'temperature': 0.8})
  c.batch_size = 32
  c.eval_batch_size = 32
  c.num_steps = 1100
  c.log_every = 50
  c.eval_every = 275
  c.checkpoint_every = 275
  return c

"""CoNLL-2003 NER with a small BERT from scratch, each word tagged at its first sub-word.

Sentencepiece sub-words (BPE, 8,000 pieces, trained on the training sentences), each
sentence read as [CLS] w_1 .. w_n [SEP] (config.data.cls_sep) -> BERT (nets/bert.py: 4
post-norm layers, 128 wide, 4 heads, 512-wide GELU FFN) -> a softmax over the 9 IOB tags
at every position (head 'token'), scored by entities as conlleval scores them (train/
tagging_tasks.py). Each word's tag sits on its FIRST piece
(train/data/text.py `_tagged`): the loss, the tag accuracy and the entity F1 read only
those positions (mask 1), so the scores are of words, exactly as the BiLSTM's are; the
later pieces, [CLS] and [SEP] are never scored. No part-of-speech, chunk or case features.
A pre-trained encoder can be loaded with config.init_from (the lead's BERT pre-training).

Command:
  python -m experiments.main --config=experiments/configs/conll_bert.py \
      --config.data_dir=../shared/data/conll2003 --workdir=workdirs/conll_bert
Expected: test entity F1 61.10 (precision 57.10, recall 65.70; dev 66.40; 5,648 test
entities; word accuracy 0.930) after 1,500 steps (3.4 epochs); from scratch, still below
the BiLSTM's 79.85 (300 steps gave 33.67). 192 s on 2 idle CPU cores.
"""

from ml_collections import ConfigDict, config_dict

from experiments.configs import default


def get_config():
  c = default.get_config()
  c.dataset = 'conll2003'
  c.data = ConfigDict({'tokenizer': 'sentencepiece', 'vocab_size': 8_000,
                       'model_type': 'bpe', 'cls_sep': True, 'bucketing': True,
                       'max_len': 192, 'tokenizer_dir': config_dict.placeholder(str)})
  c.task = 'sequence_tagging'
  c.model = ConfigDict({'name': 'bert', 'head': 'token', 'num_layers': 4, 'num_heads': 4,
                        'model_dim': 128, 'mlp_dim': 512, 'dropout_rate': 0.1,
                        'dtype': 'float32', 'remat': 'none', 'scan_layers': False})
  c.optimizer.update(name='adamw', learning_rate=1e-3, weight_decay=0.01,
                     schedule='cosine', warmup_steps=100, clip_global_norm=1.0)
  c.batch_size = 32
  c.eval_batch_size = 256
  c.num_steps = 1500
  c.num_epochs = -1
  c.log_every = 100
  c.eval_every = 500
  c.checkpoint_every = 500
  return c

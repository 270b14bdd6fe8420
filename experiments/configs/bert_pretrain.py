"""Pre-training a small BERT: masked language modelling and next-sentence prediction.

Sub-word pieces (sentencepiece BPE, 8,000) of the plain-text files config.data.corpus,
packed as [CLS] A [SEP] B [SEP] blocks of 64 pieces (train/data/bert_pretraining.py);
4 layers, 4 heads, width 128 (positions for 128 pieces, so fine-tuning may read longer
inputs); AdamW at 5e-4 with warm-up, as BERT but small.

Command (the Wikipedia articles, SST-2's training sentences without their labels, and
Multi30k's English training captions; nothing of any test split):
  cut -d' ' -f2- ../shared/data/sst2/stsa.binary.train > /tmp/sst2_train.txt
  python -m experiments.main --config=experiments/configs/bert_pretrain.py \\
      --config.data_dir=../shared/data \\
      --config.data.corpus=wiki/enwiki-text.txt,/tmp/sst2_train.txt,multi30k/train.en.gz \\
      --workdir=workdirs/bert_pretrain
Then fine-tune from it (its encoder, pooler and tokenizer):
  experiments/configs/sst2_bert.py with --config.init_from=workdirs/bert_pretrain.
Expected: after 3,000 steps test masked-LM accuracy 0.059 (6.69 nats; the corpus's unigram
entropy is 7.06) and next-sentence accuracy 0.756; 3,302 s on 2 CPU cores shared with other
runs. With --config.model.norm=pre --config.optimizer.learning_rate=1e-3: 0.096 and 0.763.
"""

from ml_collections import ConfigDict, config_dict

from experiments.configs import default


def get_config():
  c = default.get_config()
  c.dataset = 'bert_corpus'
  c.data = ConfigDict({'corpus': 'wiki/enwiki-text.txt', 'tokenizer': 'sentencepiece',
                       'vocab_size': 8000, 'max_len': 64,
                       'pair_task': 'nsp', 'mask_rate': 0.15,
                       'tokenizer_dir': config_dict.placeholder(str)})
  c.task = 'bert_pretraining'
  c.model = ConfigDict({'name': 'bert', 'head': 'pretraining', 'num_layers': 4,
                        'num_heads': 4, 'model_dim': 128, 'max_len': 128,
                        'dropout_rate': 0.1, 'norm': 'post',
                        'dtype': 'float32', 'remat': 'none', 'scan_layers': False})
  c.optimizer.update(name='adamw', learning_rate=5e-4, b2=0.98, weight_decay=0.01,
                     schedule='linear', warmup_steps=300, end_factor=0.0,
                     clip_global_norm=1.0)
  c.batch_size = 32
  c.eval_batch_size = 128
  c.num_steps = 3000
  c.log_every = 100
  c.eval_every = 1000
  c.checkpoint_every = 1000
  return c

"""SST-2 sentiment with a small BERT: fine-tuned from bert_pretrain, or trained from scratch.

[CLS] sentence [SEP] in sentencepiece pieces -> BERT (4 layers, 4 heads, width 128, as
bert_pretrain.py) -> the pooled [CLS] vector -> 2 classes. The evaluation on the dev split
after each epoch picks the step that is tested (config.select_best).

Fine-tuning (the pre-trained encoder, pooler and tokenizer; see bert_pretrain.py):
  python -m experiments.main --config=experiments/configs/sst2_bert.py \\
      --config.data_dir=../shared/data/sst2 --config.init_from=workdirs/bert_pretrain \\
      --workdir=workdirs/sst2_bert
Feature extraction (the encoder frozen, only the head trains): add
  --config.freeze='("encoder",)' --config.optimizer.learning_rate=1e-3 (measured: test
  accuracy 0.5349, dev 0.5493; the frozen encoder's [CLS] carries almost no sentiment)
From scratch (the same model and steps; its tokenizer is trained on SST-2's sentences):
  python -m experiments.main --config=experiments/configs/sst2_bert.py \\
      --config.data_dir=../shared/data/sst2 --workdir=workdirs/sst2_bert_scratch
Expected: at learning rate 3e-4 (chosen on dev over 1e-4 for both), from scratch with
--config.data.tokenizer_dir=workdirs/bert_pretrain/tokenizer, test accuracy 0.7710 (dev
0.7901); fine-tuned from bert_pretrain, 0.7699 (dev 0.7844): pre-training does not
help at this scale (the README's BERT section has the other variants). About 400 s on 2
CPU cores shared with other runs.
"""

from ml_collections import ConfigDict, config_dict

from experiments.configs import bert_pretrain, default


def get_config():
  c = default.get_config()
  pretrain = bert_pretrain.get_config()
  c.dataset = 'sst2'
  c.data = ConfigDict({'tokenizer': 'sentencepiece', 'vocab_size': pretrain.data.vocab_size,
                       'cls_sep': True, 'bucketing': True,
                       'tokenizer_dir': config_dict.placeholder(str)})
  c.task = 'classification'
  c.model = ConfigDict({**pretrain.model.to_dict(), 'head': 'sequence', 'pool': 'cls'})
  c.optimizer.update(name='adamw', learning_rate=3e-4, b2=0.98, weight_decay=0.01,
                     schedule='linear', warmup_steps=100, end_factor=0.0,
                     clip_global_norm=1.0)
  c.batch_size = 32
  c.eval_batch_size = 256
  c.num_steps = -1
  c.num_epochs = 4
  c.log_every = 50
  c.eval_every = 216  # an epoch of 6,920 sentences
  c.checkpoint_every = 216
  c.select_best = 'accuracy'
  return c

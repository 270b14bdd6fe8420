"""Multi30k German -> English with an RNN encoder-decoder and attention (Bahdanau et al. 2015).

A bidirectional GRU encoder, a GRU decoder with input feeding and additive attention
(nets/rnn_seq2seq.py), trained with teacher forcing and label smoothing on the 29,000
training pairs; a shared 8,000-piece sentencepiece vocabulary, learned from the training
text, is saved in the workdir. Evaluation decodes by beam search (greedy is scored too,
as greedy_bleu) and reports corpus BLEU on the detokenized text (sacreBLEU's definition).

Command:
  python -m experiments.main --config=experiments/configs/multi30k_rnn_seq2seq.py \
      --config.data_dir=../shared/data/multi30k --workdir=workdirs/multi30k_rnn_seq2seq
Expected: test BLEU 36.22 with beam search (4 beams, alpha 0.6), 34.71 greedy (val 35.24 /
33.13) after 4 epochs (904 steps), 1,715 s on 2 CPU cores shared with the test suite
for half the run. Scheduled sampling: --config.scheduled_sampling.schedule=linear
(or exponential, inverse_sigmoid); multiplicative attention:
--config.model.attention=multiplicative.
"""

from ml_collections import ConfigDict, config_dict

from experiments.configs import default


def get_config():
  c = default.get_config()
  c.dataset = 'multi30k'
  c.data = ConfigDict({'tokenizer': 'sentencepiece', 'vocab_size': 8_000, 'bucketing': True,
                       'source_language': 'de', 'target_language': 'en',
                       'tokenizer_dir': config_dict.placeholder(str)})
  c.task = 'seq2seq'
  c.label_smoothing = 0.1
  c.model = ConfigDict({'name': 'rnn_seq2seq', 'cell': 'gru', 'embed_dim': 256,
                        'encoder_size': 256, 'encoder_layers': 1, 'decoder_size': 512,
                        'attention': 'additive', 'attention_size': 256, 'output_dim': 256,
                        'share_embeddings': True, 'dropout_rate': 0.3})
  c.decoding = ConfigDict({'method': 'beam', 'beam_size': 4, 'length_penalty': 0.6,
                           'bleu': True})
  c.scheduled_sampling = ConfigDict({'schedule': 'none', 'decay_steps': 10_000, 'k': 0.9999,
                                     'min_teacher': 0.0})
  c.optimizer.update(name='adam', learning_rate=2e-3, schedule='cosine', warmup_steps=200,
                     clip_global_norm=1.0)
  c.batch_size = 128
  c.eval_batch_size = 256
  c.num_steps = -1
  c.num_epochs = 4
  c.log_every = 100
  c.eval_every = 1000
  c.checkpoint_every = 1000
  return c

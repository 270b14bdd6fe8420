"""A character-level LSTM on Tiny Shakespeare (char-rnn), state carried across windows.

2 LSTM layers of 384 over 64-dimensional character embeddings (nets/rnn_lm.py), no
dropout; batches of 32 rows x 64 characters, row-contiguous so that each row's state is
carried from one window to the next (truncated backpropagation through time over 64
steps; config.data.carry_state). Small batches are the point: 500 updates of 32 x 64
(1.0M characters) reach validation 1.813, where 600 of 64 x 128 (4.9M) reached 1.840.
Adam at 2e-3 with cosine decay to 2e-4 and gradients clipped to global norm 1 (the
char-rnn recipe). Evaluation reads independent windows of
1,024 characters, each from a zero state, and reports the loss in nats and bits per
character; every evaluation prints 2 samples of 300 characters at temperature 0.8.

Command:
  python -m experiments.main --config=experiments/configs/shakespeare_lstm.py \
      --config.data_dir=../shared/data/tinyshakespeare --workdir=workdirs/shakespeare_lstm
Expected: validation loss 1.502 nats per character at step 2,000 (14 minutes), 1.475 at
step 2,500 (17.5 minutes: the target, 1.50 within 20 minutes, is met there), 1.461 at the
last step, 3,000; test 1.577 (2.28 bits). The whole run, with its 6 evaluations and
their samples, takes 1,275 s (21 minutes) on 2 CPU cores, 0.31 s a step.
"""

from ml_collections import ConfigDict, config_dict

from experiments.configs import default


def get_config():
  c = default.get_config()
  c.dataset = 'tiny_shakespeare'
  c.data = ConfigDict({'tokenizer': 'char', 'seq_len': 64, 'eval_seq_len': 1024,
                       'carry_state': True, 'tokenizer_dir': config_dict.placeholder(str)})
  c.task = 'language_model'
  c.model = ConfigDict({'name': 'rnn_lm', 'cell': 'lstm', 'embed_dim': 64, 'hidden_size': 384,
                        'num_layers': 2, 'dropout_rate': 0.0, 'tie_weights': False})
  c.optimizer.update(name='adam', learning_rate=2e-3, schedule='cosine', end_factor=0.1,
                     warmup_steps=0, clip_global_norm=1.0)
  c.samples = ConfigDict({'count': 2, 'length': 300, 'temperature': 0.8})
  c.batch_size = 32
  c.eval_batch_size = 64
  c.num_steps = 3000
  c.log_every = 100
  c.eval_every = 500
  c.checkpoint_every = 500
  return c

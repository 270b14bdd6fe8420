"""Handwritten digit strings read by a CRNN trained with CTC (no segmentation given).

1 to 8 MNIST digits side by side (neighbours up to 4 columns apart or overlapping by up
to 4) on a 28 x 256 canvas; train strings use the 4,000 training digits of
mnist_5k.csv.gz, eval and test strings only the 1,000 held-out ones. Two conv blocks
(32, 64; each 3x3 conv, batch norm, ReLU, 2x2 max pool) turn the image into 64 frames of
7 x 64 features, a BiLSTM (128 per direction) reads them, and a dense layer gives 11
scores per frame (10 digits + blank). Test decodes greedily and by prefix beam search.

Command:
  python -m experiments.main --config=experiments/configs/digits_ctc.py \
      --config.data_dir=../shared/data/mnist5k --workdir=workdirs/digits_ctc
Expected: test sequence_accuracy 0.929 greedy and 0.929 by prefix beam search, CER 0.0169 /
0.0167, on the 1,000 held-out strings (target >= 0.90); 555 s on 2 shared CPU cores.
"""

from ml_collections import ConfigDict

from experiments.configs import default


def get_config():
  c = default.get_config()
  c.dataset = 'mnist_digit_sequences'
  c.data = ConfigDict({'num_train': 60_000, 'num_eval': 500, 'num_test': 1_000,
                       'min_length': 1, 'max_length': 8, 'min_gap': -4, 'max_gap': 4,
                       'max_shift': 3, 'seed': 0})
  c.task = 'ctc'
  c.decoding = ConfigDict({'beam_size': 8})  # 0: greedy decoding only
  c.model = ConfigDict({
      'name': 'crnn', 'features': (16, 32, 64), 'kernel_size': 3, 'batch_norm': True,
      'pool': 'max', 'pool_size': 2, 'activation': 'relu', 'initializer': 'he', 'cell': 'lstm',
      'hidden_size': 128, 'num_layers': 1, 'dropout_rate': 0.3})
  c.optimizer.update(name='adam', learning_rate=2e-3, schedule='cosine', warmup_steps=100,
                     clip_global_norm=1.0)
  c.batch_size = 32
  c.eval_batch_size = 250
  c.num_steps = 1500
  c.log_every = 100
  c.eval_every = 750
  c.checkpoint_every = 750
  return c

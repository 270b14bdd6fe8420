"""MNIST with a multi-layer perceptron (784-512-256-10, ReLU, dropout).

Command (local 5k digits, 4,000 train / 1,000 test):
  python -m experiments.main --config=experiments/configs/mnist_mlp.py \
      --config.data_dir=../shared/data/mnist5k --workdir=workdirs/mnist_mlp
Expected: test accuracy >= 0.95 on the 1,000 held-out digits (measured 0.964, 18 s on
2 CPU cores). Without data_dir it trains on the TFDS catalog's 60k MNIST.
"""

from experiments.configs import default


def get_config():
  c = default.get_config()
  c.dataset = 'mnist'
  # Random shifts of up to 2 pixels (train/data/images.py); no flips for digits.
  c.data.update(augment=True, crop_padding=2, flip=False)
  c.model.update(hidden=(512, 256), activation='relu', initializer='he', dropout_rate=0.3)
  c.optimizer.update(name='adam', learning_rate=1e-3, schedule='cosine', warmup_steps=100)
  c.batch_size = 128
  c.eval_batch_size = 200
  c.num_steps = -1
  c.num_epochs = 40
  c.log_every = 50
  c.eval_every = 250
  c.checkpoint_every = 250
  return c

"""CIFAR-10 with ResNet-20, the recipe of He et al. (2016, Section 4.2; nets/resnet.py).

Three stages of three basic blocks (16, 32, 64 wide; 32 -> 16 -> 8 pixels), 0.27 M
parameters; SGD with momentum 0.9 at learning rate 0.1, divided by 10 at 32k and 48k of
64k steps, L2 1e-4, batches of 128; training images padded by 4 zeros, cropped back to
32 x 32 at random and flipped left-right with probability 1/2. The paper trained on
45,000 images and chose its settings on the other 5,000; this config takes its settings
as published and trains on all 50,000 (to choose anew, hold rows out with
config.data.train_indices / eval_indices). The paper reports 8.75% test error (accuracy
0.9125); this config has not been run here (no CIFAR-10 on the project machines, and
64k steps of ResNet-20 need an accelerator).

Data: the TFDS catalog's `cifar10`, read without TensorFlow. Prepare it once on a machine
with internet: `pip install tensorflow && tfds build cifar10` (or copy a prepared
~/tensorflow_datasets/cifar10 folder over; --config.tfds_data_dir points elsewhere).

Command:
  python -m experiments.main --config=experiments/configs/cifar10_resnet.py \\
      --workdir=workdirs/cifar10_resnet
Expected: test accuracy about 0.91 (the paper's 0.9125), not measured here.
"""

from experiments.configs import mnist_resnet


def get_config():
  c = mnist_resnet.get_config()
  c.dataset = 'cifar10'
  c.data.update(augment=True, crop_padding=4, flip=True)
  c.model.update(stage_blocks=(3, 3, 3), features=(16, 32, 64), stem_features=16)
  c.optimizer.update(name='momentum', learning_rate=0.1, momentum=0.9, weight_decay=0.0,
                     schedule='step', boundaries=(0.5, 0.75), decay_factor=0.1,
                     warmup_steps=0)
  c.l2 = 1e-4
  c.batch_size = 128
  c.eval_batch_size = 500
  c.num_epochs = -1
  c.num_steps = 64_000
  c.log_every = 200
  c.eval_every = 4_000
  c.checkpoint_every = 4_000
  return c

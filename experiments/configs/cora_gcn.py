"""Cora with a graph convolutional network (Kipf & Welling 2017), full-batch, one graph.

Command:
  python -m experiments.main --config=experiments/configs/cora_gcn.py \
      --config.data_dir=../shared/data/cora --workdir=workdirs/cora_gcn
Expected: mean test accuracy over 10 seeds >= 81.0% (the GCN paper: 81.5).
Measured: 82.29 +- 0.53% over seeds 0-9 (val 79.00%), 1,000 steps, 43-68 s per seed on 2
CPU cores (python -m experiments.cora_seeds --config=gcn --seeds=10
--data_dir=../shared/data/cora).
"""

from ml_collections import ConfigDict

from experiments.configs import default


def get_config() -> ConfigDict:
  c = default.get_config()
  c.dataset = 'cora'
  c.data = ConfigDict({'normalize_features': True})  # rows sum to 1, as in the papers
  c.task = 'node_classification'
  c.model = ConfigDict({'name': 'gcn', 'hidden': 16, 'dropout_rate': 0.5})
  c.optimizer.update(name='adam', learning_rate=0.01, schedule='constant')
  c.l2 = 5e-4
  c.batch_size = 1  # one step = one epoch: the whole graph
  c.eval_batch_size = 1
  c.num_steps = 1000  # from the validation loss, see above
  c.num_epochs = -1
  c.log_every = 50
  c.eval_every = 100
  c.checkpoint_every = 1000
  c.keep_checkpoints = 1
  return c

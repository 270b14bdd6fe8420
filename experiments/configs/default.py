"""The base config, every field the engine reads: an MLP separates three spirals.

Every other config starts from this one and changes what it needs. Its own experiment
(data generated in code) is the quickest check that an install works. (The default of
`python -m experiments.main` is reverse_transformer.py, which derives from this.)

Command:  python -m experiments.main --config=experiments/configs/default.py \
              --workdir=workdirs/spirals
Expected: test accuracy >= 0.99 on 3,000 fresh points (measured 0.9997), about 10 s on
          2 CPU cores; curves in workdirs/spirals/curves.png.

Model selection: by default the test evaluates the last step. `select_best` names
validation metrics ('accuracy'; 'accuracy,loss' = at least as good in both, as in the GAT
paper's code; losses are minimised, the rest maximised): the run then keeps the parameters
of the best evaluation, saves them inside every checkpoint (so a resumed run keeps them),
tests those, and logs their step as `selected_step`; `patience` > 0 also stops training
after that many evaluations in a row that improve none of the metrics (train/selection.py).
"""

from ml_collections import ConfigDict, config_dict


def get_config() -> ConfigDict:
  c = ConfigDict()
  c.seed = 0

  # Data: a registered dataset name; data_dir = local files (None: the TFDS catalog).
  c.dataset = 'spirals'
  c.data_dir = config_dict.placeholder(str)
  c.tfds_data_dir = config_dict.placeholder(str)
  c.data = ConfigDict({'num_classes': 3, 'num_train': 3000, 'num_test': 3000,
                       'noise': 0.2, 'augment': False})

  # Task and model.
  c.task = 'classification'
  c.loss = 'softmax_cross_entropy'
  c.label_smoothing = 0.0
  c.model = ConfigDict({'name': 'mlp', 'hidden': (64, 64), 'activation': 'tanh',
                        'output': 'softmax', 'initializer': 'glorot', 'dropout_rate': 0.0})

  # Optimizer, schedule, regularisation.
  c.optimizer = ConfigDict({
      'name': 'adam', 'learning_rate': 0.01, 'momentum': 0.9, 'b1': 0.9, 'b2': 0.999,
      'eps': 1e-8, 'rho': 0.9, 'weight_decay': 0.0,
      'schedule': 'cosine', 'warmup_steps': 0, 'decay_factor': 0.1,
      'boundaries': (0.5, 0.75), 'end_factor': 0.0,
      'clip_global_norm': 0.0, 'clip_value': 0.0})
  c.l2 = 0.0  # coefficient of (1/2)||W||^2 added to the loss (weights only)

  # Transfer (train/transfer.py): start from a workdir or a Hugging Face directory, and
  # keep the parameters whose paths match `freeze` (regexes) fixed.
  c.init_from = config_dict.placeholder(str)
  c.freeze = ()

  # Loop. num_steps = -1 derives the step count from num_epochs.
  c.batch_size = 128
  c.eval_batch_size = 1000
  c.num_steps = 3000
  c.num_epochs = -1
  c.log_every = 100
  c.eval_every = 1000
  c.checkpoint_every = 1000
  c.keep_checkpoints = 3
  c.async_checkpoints = True
  c.progress_bar = True
  # A NaN/Inf loss or gradient is never applied; 'stop' ends the run naming the step and
  # the last checkpoint, 'skip' goes on and counts such steps (nonfinite_steps).
  c.on_nonfinite = 'stop'
  c.select_best = ''  # '' tests the last step; e.g. 'accuracy' tests the best evaluation's
  c.patience = 0  # evaluations without improvement before stopping (0: never stop early)

  # Parallelism: one mesh over all devices; batches split over 'data' (and 'fsdp').
  c.parallel_mode = 'mesh'  # or 'pmap'
  c.mesh_shape = (-1,)
  c.mesh_axes = ('data',)
  # Where the state's leaves live (train/parallel.py): regex rules first, then the logical
  # axes of the Transformer family under a preset ('data', 'fsdp', 'tensor', 'fsdp_tensor')
  # with (logical name, mesh axes) overrides; everything else is replicated.
  c.param_sharding = ()  # (regex on the parameter path, PartitionSpec) pairs
  c.sharding = 'data'
  c.logical_axis_rules = ()  # e.g. (('embed', 'fsdp'),)
  return c

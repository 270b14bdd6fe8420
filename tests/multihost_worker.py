"""One process of a multi-process training run on this machine (test_multihost.py starts
them): simulated CPU devices, a coordinator on 127.0.0.1, gloo collectives between the
processes. Writes the final parameters and test metrics of process 0 to --out."""

import argparse
import json
import os
import pathlib
import sys

parser = argparse.ArgumentParser()
parser.add_argument('--process_id', type=int, default=0)
parser.add_argument('--num_processes', type=int, default=1)
parser.add_argument('--local_devices', type=int, required=True)
parser.add_argument('--port', type=int, default=0)
parser.add_argument('--mode', choices=['pmap', 'data', 'model'], required=True)
parser.add_argument('--workdir', required=True)
parser.add_argument('--out', required=True)
args = parser.parse_args()

os.environ['XLA_FLAGS'] = f'--xla_force_host_platform_device_count={args.local_devices}'
os.environ['JAX_PLATFORMS'] = 'cpu'
sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

import jax  # noqa: E402
import numpy as np  # noqa: E402
from jax.experimental import multihost_utils  # noqa: E402

jax.config.update('jax_cpu_collectives_implementation', 'gloo')
if args.num_processes > 1:
  jax.distributed.initialize(f'127.0.0.1:{args.port}', args.num_processes, args.process_id)

from experiments.configs import default  # noqa: E402
from train import loop  # noqa: E402

c = default.get_config()
c.optimizer.update(name='sgd', learning_rate=0.3, schedule='constant')
c.update(num_steps=12, batch_size=32, eval_batch_size=40, log_every=6, eval_every=6,
         checkpoint_every=6, progress_bar=False, async_checkpoints=False)
c.data.update(num_train=512, num_test=200)
if args.mode == 'pmap':
  c.parallel_mode = 'pmap'
elif args.mode == 'model':  # a model axis across both processes: each loads every row
  c.update(mesh_shape=(1, -1), mesh_axes=('data', 'model'),
           param_sharding=(('Dense_[01]/kernel', (None, 'model')), ('.*', ())))

state, test = loop.train_and_evaluate(c, args.workdir)
params = state.params
if args.mode == 'model':
  if jax.process_count() > 1:  # really split over the processes
    assert not params['Dense_1']['kernel'].is_fully_addressable
  params = multihost_utils.process_allgather(params, tiled=True)
if jax.process_index() == 0:
  flat = {'/'.join(str(k.key) for k in path): np.asarray(x)
          for path, x in jax.tree_util.tree_leaves_with_path(jax.device_get(params))}
  np.savez(args.out, **flat)
  pathlib.Path(args.out + '.json').write_text(json.dumps(
      {k: v for k, v in test.items() if isinstance(v, (int, float))}))

"""Parallelism as configuration: a device mesh with sharding rules, or classic `pmap`.

mesh mode (default): `jax.make_mesh(config.mesh_shape, config.mesh_axes)` over every
device (-1 in `mesh_shape` means "the rest"). The batch is split along its first axis
over the `data` and `fsdp` axes; every leaf of the train state gets the PartitionSpec of
the first rule in `config.param_sharding` whose regex is found in its path, e.g.
`(('kernel', (None, 'model')), ('.*', ()))`. The step is one `jax.jit`; XLA inserts the
collectives, so the code is identical on 1 CPU, 8 simulated devices or a pod slice.

pmap mode (`config.parallel_mode='pmap'`): the state is replicated with a leading device
axis and the step is `jax.pmap` over axis 'data', averaging gradients explicitly.
"""

import re

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import AxisType, Mesh, NamedSharding, PartitionSpec as P
from ml_collections import ConfigDict

from train.data.pipeline import Shard

PMAP_AXIS = 'data'
BATCH_AXES = ('data', 'fsdp')


def path_name(path) -> str:
  return '/'.join(str(getattr(k, 'key', getattr(k, 'name', getattr(k, 'idx', k))))
                  for k in path)


def resolve_mesh_shape(shape, num_devices: int) -> tuple[int, ...]:
  """Replaces the one -1 in `shape` by whatever makes the product `num_devices`."""
  known = int(np.prod([d for d in shape if d != -1]))
  resolved = tuple(num_devices // known if d == -1 else d for d in shape)
  if list(shape).count(-1) > 1 or np.prod(resolved) != num_devices:
    raise ValueError(f'config.mesh_shape={tuple(shape)} does not multiply to the '
                     f'{num_devices} devices; use at most one -1 for "the rest".')
  return resolved


class MeshParallel:
  """jit over a named device mesh."""
  mode = 'mesh'

  def __init__(self, config: ConfigDict, devices=None):
    devices = jax.devices() if devices is None else devices
    if len(config.mesh_shape) != len(config.mesh_axes):
      raise ValueError(f'config.mesh_shape={tuple(config.mesh_shape)} and config.mesh_axes='
                       f'{tuple(config.mesh_axes)} must have the same length.')
    shape = resolve_mesh_shape(config.mesh_shape, len(devices))
    self.mesh = Mesh(np.asarray(devices).reshape(shape), tuple(config.mesh_axes),
                     axis_types=(AxisType.Auto,) * len(shape))
    self.rules = [(re.compile(pattern), P(*spec)) for pattern, spec in config.param_sharding]
    batch_axes = tuple(a for a in config.mesh_axes if a in BATCH_AXES)
    self.batch_sharding = NamedSharding(self.mesh, P(batch_axes))
    self.replicated = NamedSharding(self.mesh, P())
    self.num_batch_shards = int(np.prod([self.mesh.shape[a] for a in batch_axes]))

  def state_shardings(self, state):
    def spec_for(path, leaf):
      name = path_name(path)
      for pattern, spec in self.rules:
        if pattern.search(name) and len(spec) <= jnp.ndim(leaf):
          return NamedSharding(self.mesh, spec)
      return self.replicated
    return jax.tree_util.tree_map_with_path(spec_for, state)

  def place_state(self, state):
    return jax.device_put(state, self.state_shardings(state))

  def place_batch(self, local_batch: dict):
    return {k: jax.make_array_from_process_local_data(self.batch_sharding, v)
            for k, v in local_batch.items()}

  def compile(self, step, state, has_state_output: bool):
    shardings = self.state_shardings(state)
    out = (shardings, self.replicated) if has_state_output else self.replicated
    return jax.jit(step, in_shardings=(shardings, self.batch_sharding),
                   out_shardings=out, donate_argnums=(0,) if has_state_output else ())

  def unreplicate(self, state):
    return state

  def host_sums(self, sums):
    return jax.device_get(sums)


class PmapParallel:
  """Classic data parallelism: one replica of the state per local device."""
  mode = 'pmap'

  def __init__(self, config: ConfigDict, devices=None):
    del config
    self.devices = jax.local_devices() if devices is None else devices
    self.num_batch_shards = len(self.devices)
    # Arrays with a leading axis of one slice per device, laid out as pmap wants them.
    self.per_device = NamedSharding(Mesh(np.asarray(self.devices), ('replica',)),
                                    P('replica'))

  def place_state(self, state):
    n = len(self.devices)
    stacked = jax.tree.map(lambda x: jnp.broadcast_to(x[None], (n,) + jnp.shape(x)), state)
    return jax.device_put(stacked, self.per_device)

  def place_batch(self, local_batch: dict):
    n = len(self.devices)
    return jax.device_put({k: v.reshape((n, v.shape[0] // n) + v.shape[1:])
                           for k, v in local_batch.items()}, self.per_device)

  def compile(self, step, state, has_state_output: bool):
    del state
    return jax.pmap(step, axis_name=PMAP_AXIS, devices=self.devices,
                    donate_argnums=(0,) if has_state_output else ())

  def unreplicate(self, state):
    return jax.tree.map(lambda x: x[0], state)

  def host_sums(self, sums):
    return jax.device_get(jax.tree.map(lambda x: x[0], sums))  # psum'd: same everywhere


MODES = {'mesh': MeshParallel, 'pmap': PmapParallel}


def create(config: ConfigDict, devices=None):
  if config.parallel_mode not in MODES:
    raise ValueError(f'config.parallel_mode={config.parallel_mode!r} must be '
                     f"{' or '.join(map(repr, MODES))}.")
  return MODES[config.parallel_mode](config, devices)


def process_shard() -> Shard:
  return Shard(jax.process_index(), jax.process_count())

"""Parallelism as configuration: a device mesh with sharding rules, or classic `pmap`.

mesh mode (default): `jax.make_mesh`-style mesh of `config.mesh_shape` over
`config.mesh_axes` and every device of every process (-1 in `mesh_shape` means "the
rest"). The batch is split along its first axis over the `data` and `fsdp` axes. Every
leaf of the train state (parameters, and the optimizer state that mirrors them) is placed
by the first of:

  1. `config.param_sharding`: the PartitionSpec of the first rule whose regex is found in
     the leaf's path, e.g. `(('kernel', (None, 'model')),)`; any model.
  2. `config.sharding`: the parameter's logical axis names (nets/scale.py: the Transformer,
     BERT and GPT name theirs) mapped to mesh axes by a preset of SHARDING_RULES,
       'data'         nothing split: pure data parallelism;
       'fsdp'         'embed' split over the batch axes: every parameter and its optimizer
                      state is split over the data-parallel devices (FSDP / ZeRO-3); XLA
                      gathers each layer's weights when it needs them;
       'tensor'       'heads', 'mlp' and 'vocab' split over a 'model' axis (Megatron's
                      tensor parallelism: attention heads and FFN columns per device);
       'fsdp_tensor'  both;
     with `config.logical_axis_rules` (logical name, mesh axes) pairs overriding the
     preset's. A dimension that the mesh axes do not divide stays whole (a 65-character
     vocabulary on 2 devices), and each such case is printed once.
  3. replicated.

The state is created by a jitted `init`
whose outputs carry those shardings, so no device ever holds more than its shard. The
step is one `jax.jit`; XLA inserts the collectives, so the code is identical on 1 CPU, 8
simulated devices or a pod slice. Each process loads exactly the batch rows its own
devices hold (all of them when no batch axis spans processes), and the global batch is
assembled with `jax.make_array_from_process_local_data`.

pmap mode (`config.parallel_mode='pmap'`): the state is replicated with a leading axis of
one copy per local device and the step is `jax.pmap` over axis 'data' and every device of
every process; gradients and metric sums are summed across it by the step.
"""

import re

import jax
import numpy as np
from jax.experimental import multihost_utils
from jax.sharding import AxisType, Mesh, NamedSharding, PartitionSpec as P
from ml_collections import ConfigDict

from train.data.pipeline import Shard
from train.errors import UserError

PMAP_AXIS = 'data'
BATCH_AXES = ('data', 'fsdp')
_TENSOR = (('heads', ('model',)), ('mlp', ('model',)), ('vocab', ('model',)))
SHARDING_RULES = {  # logical axis -> mesh axes (those absent from the mesh are dropped)
    'data': (),
    'fsdp': (('embed', BATCH_AXES),),
    'tensor': _TENSOR,
    'fsdp_tensor': (('embed', BATCH_AXES),) + _TENSOR,
}


def path_name(path) -> str:
  return '/'.join(str(getattr(k, 'key', getattr(k, 'name', getattr(k, 'idx', k))))
                  for k in path)


def mesh_axes_of(entry) -> tuple:
  """A rule's mesh axes as a tuple: None -> (), 'data' -> ('data',), a tuple as it is."""
  return () if entry is None else (entry,) if isinstance(entry, str) else tuple(entry)


def resolve_mesh_shape(shape, num_devices: int) -> tuple[int, ...]:
  """Replaces the one -1 in `shape` by whatever makes the product `num_devices`."""
  known = int(np.prod([d for d in shape if d != -1]))
  resolved = tuple(num_devices // known if d == -1 else d for d in shape)
  if list(shape).count(-1) > 1 or np.prod(resolved) != num_devices:
    raise UserError(f'config.mesh_shape={tuple(shape)} does not multiply to the '
                    f'{num_devices} devices; use at most one -1 for "the rest".')
  return resolved


def shape_structs(tree):
  """ShapeDtypeStructs of a pytree of arrays (for `init` from shapes alone)."""
  return jax.tree.map(lambda x: jax.ShapeDtypeStruct(np.shape(x), x.dtype), tree)


def zeros_like_structs(structs):
  return [jax.numpy.zeros(s.shape, s.dtype) for s in structs]


class MeshParallel:
  """jit over a named device mesh."""
  mode = 'mesh'

  def __init__(self, config: ConfigDict, devices=None):
    devices = jax.devices() if devices is None else devices
    if len(config.mesh_shape) != len(config.mesh_axes):
      raise UserError(f'config.mesh_shape={tuple(config.mesh_shape)} and config.mesh_axes='
                      f'{tuple(config.mesh_axes)} must have the same length.')
    shape = resolve_mesh_shape(config.mesh_shape, len(devices))
    self.mesh = Mesh(np.asarray(devices).reshape(shape), tuple(config.mesh_axes),
                     axis_types=(AxisType.Auto,) * len(shape))
    self.rules = [(re.compile(pattern), P(*spec)) for pattern, spec in config.param_sharding]
    self.logical_rules = {**dict(SHARDING_RULES[config.sharding]),
                          **{name: mesh_axes_of(mesh_axes)
                             for name, mesh_axes in config.logical_axis_rules}}
    self.param_axes = {}  # {parameter path: logical axis names}, given to init_state
    self._kept_whole = set()
    batch_axes = tuple(a for a in config.mesh_axes if a in BATCH_AXES)
    self.batch_sharding = NamedSharding(self.mesh, P(batch_axes))
    self.replicated = NamedSharding(self.mesh, P())
    # Global: the batch is split this many ways over all processes together.
    self.num_batch_shards = int(np.prod([self.mesh.shape[a] for a in batch_axes]))

  def data_shard(self, global_batch_size: int) -> Shard:
    """The contiguous rows of each global batch that this process's devices hold."""
    index_map = self.batch_sharding.addressable_devices_indices_map((global_batch_size,))
    rows = sorted({s[0].indices(global_batch_size)[:2] for s in index_map.values()})
    start, stop = rows[0][0], max(r[1] for r in rows)
    size = stop - start
    gaps = any(b[0] > a[1] for a, b in zip(rows, rows[1:]))
    if gaps or global_batch_size % size or start % size:
      raise UserError(f'This process holds rows {sorted(rows)} of a batch of '
                      f'{global_batch_size}, not one aligned block; order config.mesh_axes '
                      'so that the batch axes come first.')
    return Shard(start // size, global_batch_size // size)

  def state_shardings(self, state):
    def spec_for(path, leaf):
      name, shape = path_name(path), np.shape(leaf)
      for pattern, spec in self.rules:
        if pattern.search(name) and len(spec) <= len(shape):
          self._check_divisible(name, shape, pattern.pattern, spec)
          return NamedSharding(self.mesh, spec)
      axes = self.logical_axes(name, shape)
      return self.replicated if axes is None else NamedSharding(
          self.mesh, self.logical_spec(name, shape, axes))
    return jax.tree_util.tree_map_with_path(spec_for, state)

  def logical_axes(self, name: str, shape) -> tuple | None:
    """The logical axes of the parameter whose path ends `name` (params/x/kernel, or the
    optimizer state's opt_state/0/mu/x/kernel), if the model named them."""
    parts = name.split('/')
    for start in range(len(parts)):
      axes = self.param_axes.get('/'.join(parts[start:]))
      if axes is not None and len(axes) == len(shape):
        return axes
    return None

  def logical_spec(self, name: str, shape, axes) -> P:
    """The PartitionSpec of logical `axes` under the rules; a mesh axis is used once."""
    used, spec = set(), []
    for size, logical in zip(shape, axes):
      mesh_axes = tuple(a for a in self.logical_rules.get(logical, ())
                        if a in self.mesh.shape and a not in used)
      ways = int(np.prod([self.mesh.shape[a] for a in mesh_axes]))
      if size % ways:
        if (name, logical) not in self._kept_whole and jax.process_index() == 0:
          print(f'Sharding: {name} keeps its {logical!r} axis of {size} whole; '
                f'{mesh_axes} ({ways} ways) do not divide it.', flush=True)
        self._kept_whole.add((name, logical))
        mesh_axes = ()
      used.update(mesh_axes)
      spec.append(mesh_axes[0] if len(mesh_axes) == 1 else (mesh_axes or None))
    return P(*spec)

  def _check_divisible(self, name, shape, pattern, spec):
    for size, axes in zip(shape, spec):
      ways = int(np.prod([self.mesh.shape[a] for a in np.atleast_1d(axes) if a is not None]))
      if size % ways:
        raise UserError(f'config.param_sharding rule {pattern!r} -> {tuple(spec)} splits '
                        f'{name} of shape {shape} {ways} ways, which does not divide it; '
                        'make the regex more specific or change config.mesh_shape.')

  def init_state(self, init_fn, input_structs, param_axes: dict):
    """Runs `init_fn` under jit so each leaf is created directly in its shards."""
    self.param_axes = param_axes
    make = lambda: init_fn(*zeros_like_structs(input_structs))
    shardings = self.state_shardings(jax.eval_shape(make))
    return jax.jit(make, out_shardings=shardings)()

  def restore_target(self, state):
    """The abstract state (shapes, dtypes, shardings) a checkpoint is restored into."""
    return jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=x.sharding),
                        state)

  def place_restored(self, state):
    return state  # restored straight into its shards

  def checkpointable(self, state):
    return state

  def place_batch(self, local_batch: dict, global_batch_size: int):
    return {k: jax.make_array_from_process_local_data(
        self.batch_sharding, v, (global_batch_size,) + v.shape[1:])
            for k, v in local_batch.items()}

  def compile(self, step, state, has_state_output: bool):
    shardings = self.state_shardings(state)
    out = (shardings, self.replicated) if has_state_output else None
    return jax.jit(step, in_shardings=(shardings, self.batch_sharding),
                   out_shardings=out, donate_argnums=(0,) if has_state_output else ())

  def unreplicate(self, state):
    return state

  def host_sums(self, sums):
    return jax.device_get(multihost_utils.process_allgather(sums, tiled=True))

  def host_examples(self, examples):
    """Per-example outputs of a batch, whole (every process's rows), as NumPy."""
    return jax.device_get(multihost_utils.process_allgather(examples, tiled=True))


class PmapParallel:
  """Classic data parallelism: one replica of the state per device."""
  mode = 'pmap'

  def __init__(self, config: ConfigDict, devices=None):
    del config
    # Given devices (tests) restrict the run to them; by default pmap spans every device
    # of every process, so its collectives are global in a multi-host run.
    self.pmap_devices = devices
    self.devices = jax.local_devices() if devices is None else devices
    everywhere = jax.devices() if devices is None else devices
    self.num_batch_shards = len(everywhere)
    # Arrays with a leading axis of one slice per local device, laid out as pmap wants.
    self.per_device = NamedSharding(Mesh(np.asarray(self.devices), ('replica',)),
                                    P('replica'))
    # One global array replicated on every device: what checkpoints save and restore.
    self.replicated = NamedSharding(Mesh(np.asarray(everywhere), ('all',)), P())

  def data_shard(self, global_batch_size: int) -> Shard:
    del global_batch_size
    return Shard(jax.process_index(), jax.process_count())

  def _stack(self, copies, shape):
    """pmap's layout [local devices, ...] from one copy of shape `shape` per device."""
    return jax.make_array_from_single_device_arrays((len(copies),) + shape, self.per_device,
                                                    [c[None] for c in copies])

  def init_state(self, init_fn, input_structs, param_axes: dict):
    del param_axes  # every device holds the whole state
    make = lambda: init_fn(*zeros_like_structs(input_structs))
    single = jax.sharding.SingleDeviceSharding(self.devices[0])
    state = jax.jit(make, out_shardings=single)()
    # Each replica is put on its device directly, never n copies on device 0 first.
    return jax.tree.map(lambda x: self._stack([jax.device_put(x, d) for d in self.devices],
                                              x.shape), state)

  def restore_target(self, state):
    return jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape[1:], x.dtype,
                                                       sharding=self.replicated), state)

  def place_restored(self, state):
    return jax.tree.map(lambda x: self._stack([s.data for s in x.addressable_shards],
                                              x.shape), state)

  def checkpointable(self, state):
    """The replicas as one global array per leaf, which Orbax can save from every host."""
    return jax.tree.map(lambda x: jax.make_array_from_single_device_arrays(
        x.shape[1:], self.replicated, [s.data[0] for s in x.addressable_shards]), state)

  def place_batch(self, local_batch: dict, global_batch_size: int):
    del global_batch_size
    n = len(self.devices)
    return jax.device_put({k: v.reshape((n, v.shape[0] // n) + v.shape[1:])
                           for k, v in local_batch.items()}, self.per_device)

  def compile(self, step, state, has_state_output: bool):
    del state
    return jax.pmap(step, axis_name=PMAP_AXIS, devices=self.pmap_devices,
                    donate_argnums=(0,) if has_state_output else ())

  def unreplicate(self, state):
    """This process's first replica (all replicas are equal)."""
    return jax.tree.map(lambda x: x.addressable_shards[0].data[0], state)

  def host_sums(self, sums):
    return jax.device_get(self.unreplicate(sums))  # psum'd: the same everywhere

  def host_examples(self, examples):
    local = jax.device_get(jax.tree.map(
        lambda x: np.concatenate([s.data for s in x.addressable_shards]), examples))
    flat = jax.tree.map(lambda x: x.reshape((-1,) + x.shape[2:]), local)
    return multihost_utils.process_allgather(flat, tiled=True)


MODES = {'mesh': MeshParallel, 'pmap': PmapParallel}


def create(config: ConfigDict, devices=None):
  if config.parallel_mode not in MODES:
    raise UserError(f'config.parallel_mode={config.parallel_mode!r} must be '
                    f"{' or '.join(map(repr, MODES))}.")
  return MODES[config.parallel_mode](config, devices)

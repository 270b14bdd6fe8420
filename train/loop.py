"""train_and_evaluate(config, workdir): the one loop every experiment runs.

config -> dataset (train.data) -> model (nets) -> task -> optimizer -> state -> resume from
the workdir's newest checkpoint -> jitted steps -> metrics / checkpoints / plots. Host
syncs happen only at log, eval and checkpoint intervals; in between, steps are
dispatched asynchronously and metric sums accumulate on device.
"""

import dataclasses
import json
import pathlib
import signal
import time

import jax
import nets
import numpy as np
from absl import logging
from ml_collections import ConfigDict
from tqdm import tqdm

from train import checkpoint, config_checks, data, optimizers, parallel, reporting
from train import state as state_lib
from train import steps, tasks


def model_kwargs(config: ConfigDict, info: dict, mode: str) -> dict:
  kwargs = {k: v for k, v in config.model.items() if k != 'name'}
  kwargs.setdefault('num_outputs', info['num_classes'])
  if mode == 'pmap' and 'batch_axis_name' in nets.MODELS[config.model.name].__dataclass_fields__:
    kwargs['batch_axis_name'] = parallel.PMAP_AXIS  # batch norm syncs over the pmap axis
  return kwargs


def total_steps(config: ConfigDict, num_train: int) -> int:
  if config.num_steps > 0:
    return config.num_steps
  return config.num_epochs * (num_train // config.batch_size)


class PreemptionFlag:
  """Set by SIGTERM (the Cloud TPU preemption notice); the loop saves and exits."""

  def __init__(self):
    self.raised = False
    self._previous = signal.signal(signal.SIGTERM, self._handle)

  def _handle(self, signum, frame):
    del signum, frame
    self.raised = True

  def restore(self):
    signal.signal(signal.SIGTERM, self._previous)


def evaluate(task, par, eval_step, state, source, batch_size: int) -> dict:
  total = None
  for batch in source.eval_batches(batch_size, parallel.process_shard()):
    total = steps.add_sums(total, eval_step(state, par.place_batch(batch)))
  return task.report(par.host_sums(total))


@dataclasses.dataclass
class Experiment:
  """Everything a run is made of, before any step has been taken."""
  config: ConfigDict
  par: object
  splits: data.Splits
  task: object
  state: state_lib.TrainState  # on the host, not yet placed on devices
  num_steps: int
  train_iter: object


def build(config: ConfigDict, devices=None) -> Experiment:
  """Validates the config, then builds data, model, task, optimizer and initial state."""
  par = parallel.create(config, devices)
  config_checks.validate(config, par.num_batch_shards * jax.process_count())
  splits = data.build(config)
  model = nets.create(config.model.name, **model_kwargs(config, splits.info, par.mode))
  task = tasks.create(config, splits.info)
  num_steps = total_steps(config, len(splits.train))
  tx = optimizers.create(config.optimizer, num_steps)
  shard = parallel.process_shard()
  train_iter = splits.train.train_iterator(config.batch_size, config.seed, shard)
  example = next(splits.eval.eval_batches(config.eval_batch_size, shard))
  state = state_lib.create(model, tx, example, config.seed)
  logging.info('%s: %d parameters', config.model.name, state_lib.parameter_count(state.params))
  return Experiment(config, par, splits, task, state, num_steps, train_iter)


def compile_steps(exp: Experiment, placed_state):
  """(train_step, eval_step), jitted over the mesh or pmapped."""
  axis = parallel.PMAP_AXIS if exp.par.mode == 'pmap' else None
  train_step = exp.par.compile(steps.make_train_step(exp.task, exp.config.l2, axis),
                               placed_state, True)
  eval_step = exp.par.compile(steps.make_eval_step(exp.task, axis), placed_state, False)
  return train_step, eval_step


def train_and_evaluate(config: ConfigDict, workdir: str, devices=None):
  """Trains, evaluates and tests; returns (final unreplicated state, test metrics)."""
  if 'tokenizer_dir' in config.data and config.data.tokenizer_dir is None:
    # A trained tokenizer belongs to the run: saved in, and reloaded from, the workdir.
    config.data.tokenizer_dir = str(pathlib.Path(workdir) / 'tokenizer')
  exp = build(config, devices)
  par, splits, task, state, num_steps, train_iter = (
      exp.par, exp.splits, exp.task, exp.state, exp.num_steps, exp.train_iter)
  workdir = pathlib.Path(workdir)
  workdir.mkdir(parents=True, exist_ok=True)

  ckpt = checkpoint.Checkpointer(workdir / 'checkpoints', config.keep_checkpoints,
                                 config.async_checkpoints)
  restored = ckpt.restore_latest(state)
  start = 0
  if restored is not None:
    state, data_state, start = restored
    train_iter.set_state(data_state)
    print(f'Resumed from the checkpoint at step {start} in {workdir}.', flush=True)
  if jax.process_index() == 0:
    (workdir / 'config.json').write_text(config.to_json_best_effort(indent=2))
  writer = reporting.MetricWriter(workdir, start, enabled=jax.process_index() == 0)

  state = par.place_state(state)
  train_step, eval_step = compile_steps(exp, state)
  learning_rate = optimizers.schedule(config.optimizer, num_steps)
  preemption = PreemptionFlag()

  sums, window_start, window_steps = None, time.perf_counter(), 0
  bar = tqdm(total=num_steps, initial=start, disable=not config.progress_bar,
             unit='step', dynamic_ncols=True)
  try:
    for step in range(start + 1, num_steps + 1):
      state, step_sums = train_step(state, par.place_batch(next(train_iter)))
      sums = steps.add_sums(sums, step_sums)
      window_steps += 1
      if step % config.log_every == 0 or step == num_steps:
        host = par.host_sums(sums)  # the only host sync between logs
        elapsed = time.perf_counter() - window_start
        metrics = reporting.scalars(task.report(host))
        metrics.update(grad_norm=float(host['grad_norm'] / host['steps']),
                       learning_rate=float(learning_rate(step - 1)),
                       examples_per_sec=window_steps * config.batch_size / elapsed,
                       step_time_ms=1e3 * elapsed / window_steps)
        writer.write(step, 'train', metrics)
        bar.set_postfix(loss=f'{metrics["loss"]:.4f}',
                        ex_per_s=f'{metrics["examples_per_sec"]:.0f}')
        bar.update(window_steps)
        sums, window_start, window_steps = None, time.perf_counter(), 0
      if step % config.eval_every == 0 and step != num_steps:
        writer.write(step, 'eval', reporting.scalars(
            evaluate(task, par, eval_step, state, splits.eval, config.eval_batch_size)))
      if step % config.checkpoint_every == 0 or step == num_steps or preemption.raised:
        ckpt.save(step, par.unreplicate(state), train_iter.get_state(),
                  force=preemption.raised)
      if preemption.raised:
        logging.warning('SIGTERM received: saved step %d, exiting.', step)
        ckpt.close()
        raise SystemExit(143)
    test = evaluate(task, par, eval_step, state, splits.test, config.eval_batch_size)
    writer.write(num_steps, 'test', test)
    print(f'Test at step {num_steps}: {json.dumps(reporting.scalars(test))}', flush=True)
  finally:
    bar.close()
    writer.close()
    preemption.restore()
  ckpt.close()
  if jax.process_index() == 0:
    reporting.plot_curves(workdir)
  return par.unreplicate(state), test

"""train_and_evaluate(config, workdir): the one loop every experiment runs.

config -> dataset (train.data) -> task -> model (nets) -> optimizer -> state, created in
its shards by a jitted init -> resume from the workdir's newest checkpoint -> jitted
steps -> metrics / checkpoints / plots. Host syncs happen only at log, eval and
checkpoint intervals; in between, steps are dispatched asynchronously and metric sums
accumulate on device.
"""

import dataclasses
import json
import signal
import sys
import time

import jax
import nets
import numpy as np
from etils import epath
from jax.experimental import multihost_utils
from ml_collections import ConfigDict
from tqdm import tqdm

from train import checkpoint, config_checks, data, optimizers, parallel, reporting
from train import run_record, selection, transfer
from train import state as state_lib
from train import language_tasks  # noqa: F401  (registers the language-model task)
from train import word2vec_task  # noqa: F401  (registers the word2vec task)
from train import seq2seq_tasks  # noqa: F401  (registers the sequence-to-sequence tasks)
from train import tagging_tasks  # noqa: F401  (registers tagging and sentence-classification tasks)
from train import ctc_tasks  # noqa: F401  (registers the CTC recognition task)
from train import bert_tasks  # noqa: F401  (registers BERT pre-training)
from train import regression_task  # noqa: F401  (registers the regression task)
from train import span_tasks  # noqa: F401  (registers extractive question answering)
from train import steps, tasks
from train.errors import UserError


def create_model(config: ConfigDict, task, info: dict, mode: str):
  """The model of `config.model.name`, its constructor arguments chosen by the task."""
  if config.model.name not in nets.MODELS:
    raise UserError(f'config.model.name={config.model.name!r} is not a known model; '
                    f'choose one of {sorted(nets.MODELS)}.')
  fields = nets.MODELS[config.model.name].__dataclass_fields__
  kwargs = task.model_kwargs(config, info, fields)
  if mode == 'pmap' and 'batch_axis_name' in fields:
    kwargs['batch_axis_name'] = parallel.PMAP_AXIS  # batch norm syncs over the pmap axis
  return nets.create(config.model.name, **kwargs)


def total_steps(config: ConfigDict, num_train: int) -> int:
  if config.num_steps > 0:
    return config.num_steps
  return config.num_epochs * (num_train // config.batch_size)


class Preemption:
  """Whether to save and stop now: SIGTERM (the Cloud TPU preemption notice) or Ctrl-C.

  In a multi-process run every process must save the same step (Orbax saves are
  collective), but the notice reaches the hosts at different steps: JAX's preemption
  sync point (which listens for SIGTERM itself) answers True on every process at the
  same step.
  """

  SIGNALS = (signal.SIGTERM, signal.SIGINT)

  def __init__(self):
    self.raised = None
    self._previous = {}
    if jax.process_count() == 1:
      for sig in self.SIGNALS:
        self._previous[sig] = signal.signal(sig, self._handle)

  def _handle(self, signum, frame):
    del frame
    self.raised = signal.Signals(signum).name

  def reached(self, step: int) -> bool:
    if jax.process_count() > 1:
      if multihost_utils.reached_preemption_sync_point(step):
        self.raised = 'SIGTERM'
    return self.raised is not None

  def restore(self):
    for sig, handler in self._previous.items():
      signal.signal(sig, handler)


@dataclasses.dataclass
class Experiment:
  """Everything a run is made of, before any step has been taken."""
  config: ConfigDict
  par: object
  splits: data.Splits
  task: object
  model: object
  state: state_lib.TrainState  # created in its shards (pmap: one replica per device)
  num_steps: int
  train_iter: object


def build(config: ConfigDict, devices=None) -> Experiment:
  """Validates the config, then builds data, task, model, optimizer and initial state."""
  config_checks.validate(config)  # before the mesh is built from the config
  par = parallel.create(config, devices)
  config_checks.validate(config, par.num_batch_shards)
  splits = data.build(config)
  task = tasks.create(config, splits.info)
  model = create_model(config, task, splits.info, par.mode)
  num_steps = total_steps(config, len(splits.train))
  train_iter = splits.train.train_iterator(config.batch_size, config.seed,
                                           par.data_shard(config.batch_size))
  example = next(splits.eval.eval_batches(config.eval_batch_size,
                                          par.data_shard(config.eval_batch_size)))
  state = initial_state(config, par, task, model, example, num_steps)
  return Experiment(config, par, splits, task, model, state, num_steps, train_iter)


def initial_state(config: ConfigDict, par, task, model, example: dict, num_steps: int):
  """The fresh train state (optimizer, init_from, freeze), created in its shards from
  the shapes of an example batch."""
  tx = optimizers.frozen(optimizers.create(config.optimizer, num_steps), config.freeze)
  init = state_lib.initializer(model, tx, config.seed, task.state_collections,
                               transfer.initializer(config, task.init_params))
  inputs = parallel.shape_structs(task.model_inputs(example))
  try:
    return par.init_state(init, inputs, state_lib.param_axes(model, *inputs))
  except (TypeError, ValueError, IndexError) as error:
    if isinstance(error, (UserError, nets.ModelConfigError)):
      raise
    shapes = ', '.join(f'{s.dtype}{list(s.shape)}' for s in inputs)
    raise UserError(f'config.model.name={config.model.name!r} cannot read the batches of '
                    f'config.dataset={config.dataset!r} (inputs {shapes}): '
                    f'{checkpoint.one_line(error)}; choose a model made for this data.'
                    ) from error


def compile_steps(exp: Experiment, state):
  """(train_step, eval_step), jitted over the mesh or pmapped."""
  axis = parallel.PMAP_AXIS if exp.par.mode == 'pmap' else None
  train_step = exp.par.compile(steps.make_train_step(exp.task, exp.config, axis), state, True)
  eval_step = exp.par.compile(steps.make_eval_step(exp.task, axis), state, False)
  return train_step, eval_step


def evaluate(exp: Experiment, eval_step, state, source) -> dict:
  """One pass over `source`: sums added on device, per-example outputs on the host."""
  size = exp.config.eval_batch_size
  sums, examples = None, []
  for batch in source.eval_batches(size, exp.par.data_shard(size)):
    out = eval_step(state, exp.par.place_batch(batch, size))
    sums = steps.add_sums(sums, out.sums)
    if out.examples is not None:
      examples.append(exp.par.host_examples(out.examples))
  sums = None if sums is None else exp.par.host_sums(sums)
  examples = jax.tree.map(concatenate_padded, *examples) if examples else None
  return exp.task.finalize(sums, examples)


def concatenate_padded(*arrays: np.ndarray) -> np.ndarray:
  """Per-example arrays of several batches in one: trailing axes padded with 0 to the
  widest batch's (length buckets make token arrays differ in width)."""
  widest = np.max([a.shape for a in arrays], axis=0)
  return np.concatenate([np.pad(a, [(0, 0)] + [(0, w - n) for w, n in
                                               zip(widest[1:], a.shape[1:])])
                         for a in arrays])


def restore(ckpt, exp: Experiment, workdir: epath.Path, chosen: selection.Selection):
  """(state, start step): the newest usable checkpoint's, or the fresh state's and 0."""
  try:
    restored = ckpt.restore_latest(exp.par.restore_target(exp.state),
                                   chosen.restore_target(exp.par, exp.state))
  except checkpoint.IncompatibleCheckpoint as error:
    previous = run_record.previous_config(workdir) or {}
    changes = run_record.config_changes(
        previous, json.loads(exp.config.to_json_best_effort())) if previous else []
    fields = run_record.describe(changes) or 'none recorded'
    raise UserError(
        f'{workdir} holds the checkpoints of a different model ({error.difference}; config '
        f'changes: {fields}). Use a new --workdir, or pass --fresh to move the old run to '
        f'{workdir / run_record.ARCHIVE}/ and start over.') from None
  if restored is None:
    return exp.state, 0
  state, data_state, start, best = restored
  exp.train_iter.set_state(data_state)
  chosen.restore(exp.par, best)
  print(f'Resumed from the checkpoint at step {start} in {workdir}.', flush=True)
  return exp.par.place_restored(state), start


def finished_test(workdir: epath.Path, num_steps: int) -> dict | None:
  tests = [r for r in reporting.read_metrics(workdir)  # the run's own, not evaluate's
           if r['split'] == 'test' and r['step'] == num_steps and 'source' not in r]
  return tests[-1] if tests else None


# The metrics an evaluation line on the console shows, where a task reports them.
HEADLINE = ('loss', 'accuracy', 'exact_match', 'f1', 'perplexity', 'bleu',
            'sequence_accuracy', 'cer', 'wordsim353', 'analogy')


def summary(exp: Experiment, workdir: epath.Path, start: int) -> str:
  """Two lines on the console at the start: what runs, and on what."""
  c = exp.config
  count = state_lib.parameter_count(exp.par.unreplicate(exp.state).params)
  model = ', '.join(f'{k}={v}' for k, v in c.model.items() if k != 'name')
  return (f'{c.model.name} ({model}): {count:,} parameters; task {c.task} on {c.dataset}; '
          f'{c.optimizer.name} lr {c.optimizer.learning_rate} ({c.optimizer.schedule}), '
          f'batch {c.batch_size}, {exp.num_steps} steps'
          f'{f" from step {start}" if start else ""}.\n'
          f'{exp.par.num_batch_shards}-way data parallel ({exp.par.mode}) on '
          f'{jax.device_count()} {jax.devices()[0].platform} device(s); writing {workdir}.')


# curves.png is redrawn at an evaluation at most this often, and always at the end.
PLOT_EVERY_S = 30.0


class TrainingDiverged(UserError):
  """A NaN or Inf loss or gradient with config.on_nonfinite='stop'."""


def train_and_evaluate(config: ConfigDict, workdir: str, devices=None, fresh: bool = False):
  """Trains, evaluates and tests; returns (tested unreplicated state, test metrics).

  The tested state is the last step's, or with config.select_best the kept evaluation's
  (train/selection.py), which config.patience may also end early.

  `fresh` moves whatever a previous run left in `workdir` to W/archive/<time>/ first.
  """
  workdir = run_record.prepare(workdir)
  if fresh and jax.process_index() == 0:
    moved = run_record.archive(workdir)
    if moved:
      print(f'--fresh: moved the previous run in {workdir} to {moved}.', flush=True)
  transfer.copy_tokenizer(config, workdir)
  if 'tokenizer_dir' in config.data and config.data.tokenizer_dir is None:
    # A trained tokenizer belongs to the run: saved in, and reloaded from, the workdir.
    config.data.tokenizer_dir = str(workdir / 'tokenizer')
  exp = build(config, devices)
  par, splits, task, num_steps, train_iter = (
      exp.par, exp.splits, exp.task, exp.num_steps, exp.train_iter)

  ckpt = checkpoint.Checkpointer(workdir / 'checkpoints', config.keep_checkpoints,
                                 config.async_checkpoints)
  chosen = selection.Selection(config)
  state, start = restore(ckpt, exp, workdir, chosen)
  last = start if chosen.stopped else num_steps  # early stopping ends the run at `last`
  if start > num_steps:
    ckpt.close()
    raise UserError(
        f'{workdir} holds a checkpoint at step {start}, past the {num_steps} steps this '
        'config trains; use a new --workdir, or pass --fresh to move the old run to '
        f'{workdir / run_record.ARCHIVE}/ and start over.')
  done = finished_test(workdir, last) if start == last else None
  if done is not None:
    ckpt.close()
    print(f'{workdir} already finished at step {last}; its test result: '
          f'{json.dumps(reporting.scalars(done))}', flush=True)
    return par.unreplicate(chosen.tested(state)), done
  main_process = jax.process_index() == 0
  if main_process:
    run_record.record_start(workdir, config, start)
    print(summary(exp, workdir, start), flush=True)
  writer = reporting.MetricWriter(workdir, start, enabled=main_process)
  title = f'{workdir.name}: {config.model.name} on {config.dataset}'

  train_step, eval_step = compile_steps(exp, state)
  learning_rate = optimizers.schedule(config.optimizer, num_steps)
  preemption = Preemption()
  place = lambda batch: par.place_batch(batch, config.batch_size)

  # Throughput counts train steps only: the clock restarts after the first step of the
  # run (its compilation) and after every evaluation and checkpoint.
  sums, clock, timed_steps = None, time.perf_counter(), 0
  plotted = -PLOT_EVERY_S
  bar = tqdm(total=num_steps, initial=start, disable=not config.progress_bar,
             unit='step', dynamic_ncols=True)
  try:
    for step in range(start + 1, last + 1):
      state, step_sums = train_step(state, place(next(train_iter)))
      sums = steps.add_sums(sums, step_sums)
      timed_steps += 1
      if step == start + 1:
        jax.block_until_ready(state)
        clock, timed_steps = time.perf_counter(), 0
      if step % config.log_every == 0 or step == num_steps:
        host = par.host_sums(sums)  # the only host sync between logs
        elapsed = time.perf_counter() - clock
        metrics = reporting.scalars(task.report(host))
        if 'grad_norm' in host:
          metrics['grad_norm'] = float(host['grad_norm'] / host['steps'])
        if 'nonfinite_steps' in host:
          metrics['nonfinite_steps'] = int(host['nonfinite_steps'])
        metrics['learning_rate'] = float(learning_rate(step - 1))
        if timed_steps:
          metrics.update(examples_per_sec=timed_steps * config.batch_size / elapsed,
                         step_time_ms=1e3 * elapsed / timed_steps)
        writer.write(step, 'train', metrics)
        if metrics.get('nonfinite_steps') and config.on_nonfinite == 'stop':
          raise TrainingDiverged(
              f'The loss or a gradient was NaN or infinite at {metrics["nonfinite_steps"]} '
              f'of the steps up to step {step} (those updates were not applied); the last '
              f'checkpoint is step {ckpt.latest_step()} in {workdir}. Lower the learning '
              'rate or clip gradients (--config.optimizer.clip_global_norm=1.0), or pass '
              '--config.on_nonfinite=skip to skip such updates and go on.')
        bar.set_postfix(loss=f'{metrics["loss"]:.4f}')
        bar.update(step - bar.n)
        sums, clock, timed_steps = None, time.perf_counter(), 0
      if step % config.eval_every == 0 or step == num_steps:
        metrics = reporting.scalars(evaluate(exp, eval_step, state, splits.eval))
        writer.write(step, 'eval', metrics)
        chosen.update(step, metrics, state)
        bar.write(f'eval at step {step}: ' + ', '.join(
            f'{k} {v:.4g}' for k, v in metrics.items() if k in HEADLINE), file=sys.stdout)
        if main_process and time.perf_counter() - plotted >= PLOT_EVERY_S:
          reporting.plot_curves(workdir, title)  # about 0.5 s of CPU: not at every eval
          plotted = time.perf_counter()
        clock, timed_steps = time.perf_counter(), 0
      stop = preemption.reached(step)
      if chosen.stopped:
        last = step
      if step % config.checkpoint_every == 0 or step == last or stop:
        writer.flush()  # the metrics up to a checkpoint are kept wherever it is resumed
        ckpt.save(step, par.checkpointable(state), train_iter.get_state(), force=stop,
                  best=chosen.checkpoint(par))
        clock, timed_steps = time.perf_counter(), 0
      if stop:
        ckpt.close()
        print(f'{preemption.raised} received: saved step {step} in {workdir}; run the '
              'same command to resume.', flush=True)
        raise SystemExit(143 if preemption.raised == 'SIGTERM' else 130)
      if step == last:
        break
    state = chosen.tested(state)
    test = evaluate(exp, eval_step, state, splits.test)
    if chosen.variables is not None:
      test['selected_step'] = chosen.record['step']
    writer.write(last, 'test', test)
    bar.write(f'Test at step {last}: {json.dumps(reporting.scalars(test))}',
              file=sys.stdout)
  finally:
    bar.close()
    writer.close()
    preemption.restore()
    ckpt.close()  # waits for a save in flight, so no finished step is left half-written
  if main_process:
    reporting.plot_curves(workdir, title)
  return par.unreplicate(state), test

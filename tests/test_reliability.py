"""Lose nothing, explain every failure: fault injection, refused and recorded config
changes, Ctrl-C, corrupt bytes, the non-finite guard, and a summary of what survived."""

import json
import os
import pathlib
import shutil
import signal
import subprocess
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import SHARED_DATA
from ml_collections import ConfigDict

from experiments import fault_injection
from experiments.configs import default
from train import loop, reporting, tasks
from train.errors import UserError

ROOT = pathlib.Path(__file__).resolve().parents[1]
SUMMARY = {'kills tried': 0, 'resumes exact': 0, 'bad inputs tried': 0, 'data lost': 0}
SMALL = ['--config.num_steps=300', '--config.checkpoint_every=100', '--config.log_every=100',
         '--config.eval_every=100', '--config.progress_bar=False']


def main(workdir, *flags_, wait=True):
  env = {**os.environ, 'JAX_PLATFORMS': 'cpu', 'XLA_FLAGS': '', 'PYTHONUNBUFFERED': '1'}
  if not any(f.startswith('--config=') for f in flags_):  # the base (spirals) config
    flags_ = ('--config=experiments/configs/default.py', *flags_)
  args = [sys.executable, '-m', 'experiments.main', f'--workdir={workdir}', *flags_]
  if not wait:
    return subprocess.Popen(args, cwd=ROOT, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
  return subprocess.run(args, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)


def snapshot(workdir: pathlib.Path) -> dict:
  return {p: p.read_bytes() for p in workdir.rglob('*') if p.is_file()}


def count_lost(before: dict, after: dict) -> int:
  """Files written before that are gone or changed after."""
  return sum(after.get(p) != data for p, data in before.items())


def test_fault_injection_mnist_cnn(tmp_path):
  """SIGKILL a real MNIST CNN run 4 times (during asynchronous saves when caught in
  one); the resumed run ends bit-identical to an uninterrupted one."""
  if not SHARED_DATA.is_dir():
    pytest.skip(f'{SHARED_DATA} is absent (it only exists on the project machines).')
  flags_ = ['--config=experiments/configs/mnist_cnn.py',
            f'--config.data_dir={SHARED_DATA / "mnist5k"}', '--config.model.features=(4,8)',
            '--config.model.hidden=(16,)', '--config.batch_size=32',
            '--config.num_epochs=-1', '--config.num_steps=240', '--config.log_every=10',
            '--config.eval_every=80', '--config.checkpoint_every=10',
            '--config.eval_batch_size=500', '--config.progress_bar=False']
  report = fault_injection.inject(flags_, tmp_path, kills=4, seed=0)
  SUMMARY['kills tried'] += report.kills
  assert report.kills == 4 and report.kills_during_save >= 1
  assert report.resumes == report.kills  # every restart after the first checkpoint, + the last
  assert all(step > 0 for step in report.resumed_from)  # each restart really resumed
  assert report.params_equal and report.metrics_equal
  SUMMARY['resumes exact'] += report.resumes


@pytest.fixture(scope='module')
def trained_once(tmp_path_factory):
  workdir = tmp_path_factory.mktemp('finished')
  result = main(workdir, *SMALL)
  assert result.returncode == 0, result.stderr[-2000:]
  return workdir


@pytest.fixture
def finished_run(trained_once, tmp_path):
  """A copy of one finished run for each test (a moved or copied workdir must work too)."""
  workdir = tmp_path / 'run'
  shutil.copytree(trained_once, workdir)
  return workdir


def test_changed_model_width_is_refused_naming_the_field_and_nothing_is_lost(finished_run):
  before = snapshot(finished_run)
  result = main(finished_run, *SMALL, '--config.model.hidden=(32,32)')
  assert result.returncode == 1 and 'Traceback' not in result.stderr
  message = result.stderr.strip().splitlines()[-1]
  assert 'holds the checkpoints of a different model' in message
  assert "model.hidden: [64, 64] -> [32, 32]" in message and '--fresh' in message
  lost = count_lost(before, snapshot(finished_run))
  SUMMARY['data lost'] += lost
  assert lost == 0
  assert not (finished_run / 'corrupt_checkpoints').exists()  # a mismatch is not corruption


def test_fresh_moves_the_previous_run_to_the_archive(finished_run):
  before = snapshot(finished_run)
  result = main(finished_run, *SMALL, '--config.model.hidden=(32,32)', '--fresh')
  assert result.returncode == 0, result.stderr[-2000:]
  (archived,) = (finished_run / 'archive').iterdir()
  moved = {archived / p.relative_to(finished_run): data for p, data in before.items()}
  lost = count_lost(moved, snapshot(archived))
  SUMMARY['data lost'] += lost
  assert lost == 0
  assert json.loads((finished_run / 'config.json').read_text())['model']['hidden'] == [32, 32]


def test_changed_hyperparameter_is_recorded_and_said(finished_run):
  result = main(finished_run, *SMALL[1:], '--config.num_steps=400',
                '--config.optimizer.learning_rate=0.002')
  assert result.returncode == 0, result.stderr[-2000:]
  assert 'Resumed from the checkpoint at step 300' in result.stdout
  assert 'optimizer.learning_rate: 0.01 -> 0.002' in result.stdout
  history = [json.loads(line) for line in
             (finished_run / 'run_history.jsonl').read_text().splitlines()]
  assert [h['start_step'] for h in history] == [0, 300]
  assert ['optimizer.learning_rate', 0.01, 0.002] in history[1]['config_changes']
  environment = history[0]['environment']
  for name in ('python', 'jax', 'flax', 'optax', 'orbax_checkpoint', 'device_kind',
               'git_commit'):
    assert environment[name], name
  assert environment['jax'] == jax.__version__


def test_finished_run_started_again_writes_nothing(finished_run):
  before = snapshot(finished_run)
  result = main(finished_run, *SMALL)
  assert result.returncode == 0 and 'already finished at step 300' in result.stdout
  after = snapshot(finished_run)
  assert set(after) == set(before)  # no new TensorBoard event file, no new history line
  assert count_lost(before, after) == 0


def test_fewer_steps_than_the_workdir_holds_is_refused(tmp_path):
  c = default.get_config()
  c.update(num_steps=20, checkpoint_every=10, log_every=10, eval_every=10,
           progress_bar=False)
  loop.train_and_evaluate(c, tmp_path, devices=jax.devices()[:1])
  before = snapshot(tmp_path)
  c.num_steps = 10
  with pytest.raises(UserError, match='holds a checkpoint at step 20, past the 10 steps'):
    loop.train_and_evaluate(c, tmp_path, devices=jax.devices()[:1])
  assert count_lost(before, snapshot(tmp_path)) == 0


def test_ctrl_c_saves_and_exits_in_one_line(tmp_path):
  process = main(tmp_path, '--config.num_steps=100000', '--config.checkpoint_every=100000',
                 '--config.log_every=100', '--config.progress_bar=False', wait=False)
  deadline = time.time() + 120
  while not (tmp_path / 'metrics.jsonl').exists() or not (
      tmp_path / 'metrics.jsonl').read_text():
    assert process.poll() is None and time.time() < deadline
    time.sleep(0.05)
  process.send_signal(signal.SIGINT)
  out, err = process.communicate(timeout=120)
  assert process.returncode == 130, err[-2000:]
  assert 'Traceback' not in err and 'KeyboardInterrupt' not in err
  (line,) = [l for l in out.splitlines() if 'SIGINT received' in l]
  saved = int(line.split('saved step ')[1].split()[0])
  steps = sorted(int(p.name) for p in (tmp_path / 'checkpoints').iterdir())
  assert steps == [saved] and saved >= 100


def test_a_workdir_that_is_a_file_is_named(tmp_path):
  target = tmp_path / 'a_file'
  target.write_text('keep me')
  result = main(target, '--config.num_steps=10')
  assert result.returncode == 1 and 'Traceback' not in result.stderr
  assert f'--workdir={target} is a file' in result.stderr
  assert target.read_text() == 'keep me'


def test_a_model_that_cannot_read_the_dataset_is_named(tmp_path):
  c = default.get_config()
  c.model = ConfigDict({'name': 'cnn'})  # a convolution over 2-D points
  with pytest.raises(UserError, match=r"config.model.name='cnn' cannot read the batches of "
                                      r"config.dataset='spirals' \(inputs float32\[1000, 2\]\)"):
    loop.build(c, jax.devices()[:1])


def test_flipped_bytes_in_an_array_file_are_caught_and_the_previous_step_used(finished_run):
  newest = finished_run / 'checkpoints' / '300'
  assert (newest / 'checksums.json').exists()
  data_files = [p for p in (newest / 'state').rglob('*') if p.is_file() and 'd' in p.parts
                and p.stat().st_size > 200]
  target = max(data_files, key=lambda p: p.stat().st_size)
  raw = bytearray(target.read_bytes())
  middle = len(raw) // 2
  raw[middle:middle + 64] = bytes(b ^ 0xFF for b in raw[middle:middle + 64])
  target.write_bytes(bytes(raw))
  result = main(finished_run, *SMALL)
  assert result.returncode == 0, result.stderr[-2000:]
  warnings = [l for l in result.stdout.splitlines() if 'WARNING' in l]
  assert len(warnings) == 1 and 'checkpoint step 300 is corrupt' in warnings[0]
  assert 'differ from their checksums' in warnings[0]
  assert 'Resumed from the checkpoint at step 200' in result.stdout
  assert len(result.stderr.splitlines()) < 20  # no pages of Orbax/TensorStore noise
  assert (finished_run / 'corrupt_checkpoints' / '300').is_dir()  # kept, not deleted


class NaNAtStep5(tasks.Classification):
  """Classification whose loss is NaN at step 5 only (an injected fault)."""

  def loss(self, state, params, batch, rng, train=True):
    loss_sum, aux = super().loss(state, params, batch, rng, train)
    poison = jnp.where(state.step == 5, jnp.nan, 1.0) if train else 1.0
    return loss_sum * poison, aux


tasks.register('test_nan_at_step_5')(NaNAtStep5)


def nan_config(mode):
  c = default.get_config()
  c.update(task='test_nan_at_step_5', num_steps=20, log_every=10, eval_every=100,
           checkpoint_every=3, progress_bar=False, on_nonfinite=mode)
  return c


def test_nonfinite_loss_stops_naming_the_step_and_the_last_checkpoint(tmp_path):
  with pytest.raises(loop.TrainingDiverged, match=r'NaN or infinite at 1 of the steps up to '
                                                  r'step 10 .* the last checkpoint is step 9'):
    loop.train_and_evaluate(nan_config('stop'), tmp_path, devices=jax.devices()[:1])
  # Nothing non-finite was saved.
  restored = loop.checkpoint.Checkpointer(tmp_path / 'checkpoints', 3).restore_latest(
      jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=x.sharding),
                   loop.build(nan_config('stop'), jax.devices()[:1]).state))
  assert all(np.isfinite(np.asarray(x)).all() for x in jax.tree.leaves(restored[0].params))


def test_nonfinite_update_is_skipped_and_counted(tmp_path):
  state, _ = loop.train_and_evaluate(nan_config('skip'), tmp_path, devices=jax.devices()[:1])
  assert all(np.isfinite(np.asarray(x)).all() for x in jax.tree.leaves(state.params))
  counts = [r['nonfinite_steps'] for r in reporting.read_metrics(tmp_path)
            if r['split'] == 'train']
  assert counts == [1, 0]


def test_summary_what_survives_what():
  """Prints the figures of the README's "what survives what" table."""
  try:
    import test_fuzz
    SUMMARY['bad inputs tried'] = len(getattr(test_fuzz, 'BAD_INPUTS_TRIED', []))
  except ImportError:
    pass
  print('\n' + ', '.join(f'{k}: {v}' for k, v in SUMMARY.items()))
  assert SUMMARY['data lost'] == 0
  assert SUMMARY['resumes exact'] >= SUMMARY['kills tried']

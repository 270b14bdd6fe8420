"""Resuming: SIGKILL and SIGTERM mid-run, then the same command, end where an uninterrupted
run ends (bit for bit); a corrupt newest checkpoint is reported and the previous one used."""

import json
import os
import pathlib
import signal
import subprocess
import sys
import time

import jax
import numpy as np
import orbax.checkpoint as ocp
import pytest

from experiments.configs import default
from train import loop, reporting

ROOT = pathlib.Path(__file__).resolve().parents[1]
# Enough steps that the run is still going when its first checkpoint lands.
FLAGS = ['--config=experiments/configs/default.py', '--config.num_steps=4000', '--config.checkpoint_every=400', '--config.log_every=200',
         '--config.eval_every=1000', '--config.progress_bar=False',
         '--config.model.dropout_rate=0.1']  # dropout: the RNG must be restored too


def command(workdir):
  return [sys.executable, '-m', 'experiments.main', f'--workdir={workdir}', *FLAGS]


def run_to_completion(workdir) -> str:
  return subprocess.run(command(workdir), cwd=ROOT, check=True, capture_output=True, env=ENV,
                        text=True).stdout


def resumed_at(output: str) -> int:
  """The step the run said it resumed from (the run ran num_steps minus that)."""
  return int(output.split('Resumed from the checkpoint at step ')[1].split()[0].rstrip('.'))


ENV = {**os.environ, 'JAX_PLATFORMS': 'cpu', 'XLA_FLAGS': ''}


def final_params(workdir):
  steps = sorted(int(p.name) for p in (workdir / 'checkpoints').iterdir() if p.name.isdigit())
  restored = ocp.StandardCheckpointer().restore(workdir / 'checkpoints' / str(steps[-1]) /
                                                'state')
  return steps[-1], restored['params']


def interrupt(workdir, sig):
  """Starts the run, sends `sig` once the first checkpoint exists; (exit code, stdout)."""
  process = subprocess.Popen(command(workdir), cwd=ROOT, env=ENV, text=True,
                             stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
  deadline = time.time() + 120
  while not (workdir / 'checkpoints' / '400').exists():
    assert process.poll() is None and time.time() < deadline, 'run ended before checkpoint'
    time.sleep(0.01)
  process.send_signal(sig)
  out, _ = process.communicate(timeout=60)
  return process.returncode, out


@pytest.fixture(scope='module')
def uninterrupted(tmp_path_factory):
  workdir = tmp_path_factory.mktemp('uninterrupted')
  run_to_completion(workdir)
  return final_params(workdir), reporting.read_metrics(workdir)


def assert_same_run(workdir, uninterrupted, splits=('train', 'eval', 'test')):
  (step, params), records = final_params(workdir), reporting.read_metrics(workdir)
  (ref_step, ref_params), ref_records = uninterrupted
  assert step == ref_step == 4000
  for a, b in zip(jax.tree.leaves(params), jax.tree.leaves(ref_params), strict=True):
    np.testing.assert_array_equal(a, b)
  # Logs of the resumed run: one record per (step, split), identical to the reference.
  strip = lambda rs: [{k: v for k, v in r.items() if k not in ('examples_per_sec',
                                                              'step_time_ms')}
                      for r in rs if r['split'] in splits]
  assert strip(records) == strip(ref_records)


def test_sigkill_then_same_command_matches_uninterrupted(tmp_path, uninterrupted):
  assert interrupt(tmp_path, signal.SIGKILL)[0] == -signal.SIGKILL
  newest = final_params(tmp_path)[0]
  assert 400 <= newest < 4000
  output = run_to_completion(tmp_path)
  assert resumed_at(output) == newest  # it resumed, so it ran 4000 - newest steps, not 4000
  assert_same_run(tmp_path, uninterrupted)


def test_sigterm_saves_then_resumes(tmp_path, uninterrupted):
  code, output = interrupt(tmp_path, signal.SIGTERM)
  assert code == 143
  said = int(output.split('SIGTERM received: saved step ')[1].split()[0])
  saved_step = final_params(tmp_path)[0]
  assert saved_step == said and saved_step % 400  # the step it was told to stop at, not
  assert 400 < saved_step < 4000                  # a regular checkpoint
  assert resumed_at(run_to_completion(tmp_path)) == saved_step
  # The train window that straddles the stop averages fewer steps; eval/test are exact.
  assert_same_run(tmp_path, uninterrupted, splits=('eval', 'test'))


def small_config():
  c = default.get_config()
  c.update(num_steps=300, checkpoint_every=100, log_every=100, eval_every=100,
           progress_bar=False)
  return c


def test_corrupt_newest_checkpoint_falls_back_to_previous(tmp_path, capsys):
  reference, _ = loop.train_and_evaluate(small_config(), tmp_path)
  newest = tmp_path / 'checkpoints' / '300'
  for f in (newest / 'state').rglob('*'):
    if f.is_file():
      f.write_bytes(b'not a checkpoint')
  (newest / 'checksums.json').unlink()  # so that Orbax's own reading must fail
  resumed, _ = loop.train_and_evaluate(small_config(), tmp_path)
  out = capsys.readouterr().out
  assert 'checkpoint step 300 is corrupt' in out
  assert 'Resumed from the checkpoint at step 200' in out  # the previous one, not step 0
  assert (tmp_path / 'corrupt_checkpoints' / '300').is_dir()  # kept, not deleted
  for a, b in zip(jax.tree.leaves(reference.params), jax.tree.leaves(resumed.params)):
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
  steps = [r['step'] for r in reporting.read_metrics(tmp_path) if r['split'] == 'test']
  assert steps == [300]

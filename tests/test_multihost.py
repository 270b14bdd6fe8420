"""Two processes on this machine (2 simulated devices each, coordinator on 127.0.0.1)
train together and end with the parameters of one process with 4 devices and the same
global batch: pmap mode, a data-parallel mesh, and a mesh whose model axis spans the
processes (so both processes must load the same rows)."""

import json
import os
import pathlib
import socket
import subprocess
import sys

import numpy as np
import pytest

WORKER = pathlib.Path(__file__).with_name('multihost_worker.py')


def free_port() -> int:
  with socket.socket() as s:
    s.bind(('127.0.0.1', 0))
    return s.getsockname()[1]


def start(mode, workdir, out, **flags):
  env = {k: v for k, v in os.environ.items() if k not in ('XLA_FLAGS', 'JAX_PLATFORMS')}
  command = [sys.executable, str(WORKER), f'--mode={mode}', f'--workdir={workdir}',
             f'--out={out}', *(f'--{k}={v}' for k, v in flags.items())]
  return subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          text=True)


def finish(process):
  output, _ = process.communicate(timeout=300)
  assert process.returncode == 0, output[-3000:]


def load(out):
  with np.load(out) as f:
    params = dict(f)
  return params, json.loads(pathlib.Path(str(out) + '.json').read_text())


@pytest.mark.parametrize('mode', ['pmap', 'data', 'model'])
def test_two_processes_match_one(mode, tmp_path):
  port = free_port()
  two = [start(mode, tmp_path / 'two', tmp_path / 'two.npz', process_id=i, num_processes=2,
               local_devices=2, port=port) for i in range(2)]
  one = start(mode, tmp_path / 'one', tmp_path / 'one.npz', local_devices=4)
  for process in (*two, one):
    finish(process)
  (two_params, two_test), (one_params, one_test) = load(tmp_path / 'two.npz'), load(
      tmp_path / 'one.npz')
  assert sorted(two_params) == sorted(one_params)
  for name in one_params:
    np.testing.assert_allclose(two_params[name], one_params[name], atol=2e-5, err_msg=name)
  assert two_test['accuracy'] == one_test['accuracy']
  assert two_test['loss'] == pytest.approx(one_test['loss'], rel=1e-5)
  # Both processes saved one checkpoint together at each interval.
  assert sorted(p.name for p in (tmp_path / 'two' / 'checkpoints').iterdir()) == ['12', '6']

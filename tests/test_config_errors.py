"""Each bad input gets one clear sentence naming the field or file, before anything
compiles, and leaves what the workdir already holds untouched."""

import gzip
import os
import pathlib
import subprocess
import sys

import pytest

from experiments.configs import default
from train import config_checks, loop

ROOT = pathlib.Path(__file__).resolve().parents[1]


def run_main(*flags):
  env = {**os.environ, 'JAX_PLATFORMS': 'cpu'}
  return subprocess.run([sys.executable, '-m', 'experiments.main', *flags], cwd=ROOT,
                        env=env, capture_output=True, text=True, timeout=120)


def test_unknown_field_is_one_line_naming_it(tmp_path):
  result = run_main(f'--workdir={tmp_path}/w', '--config.optimizer.learnin_rate=1')
  assert result.returncode != 0
  assert 'Traceback' not in result.stderr
  assert "'learnin_rate'" in result.stderr and 'learning_rate' in result.stderr
  assert not (tmp_path / 'w').exists()


def test_bad_value_from_the_command_line(tmp_path):
  result = run_main(f'--workdir={tmp_path}', '--config.optimizer.learning_rate=-0.1')
  assert result.returncode != 0 and 'Traceback' not in result.stderr
  assert 'config.optimizer.learning_rate=-0.1 must be positive' in result.stderr


def config_with(**fields):
  c = default.get_config()
  for path, value in fields.items():
    *parents, leaf = path.split('__')
    node = c
    for p in parents:
      node = node[p]
    node[leaf] = value
  return c


@pytest.mark.parametrize('fields, message', [
    ({'optimizer__learning_rate': -1e-3}, 'config.optimizer.learning_rate=-0.001 must be '
                                          'positive'),
    ({'batch_size': 12}, 'config.batch_size=12 must be a positive multiple of the 8 devices'),
    ({'eval_batch_size': 1001}, 'config.eval_batch_size=1001 must be a positive multiple'),
    ({'data_dir': '/no/such/dir'}, "config.data_dir='/no/such/dir' is not a directory"),
    ({'optimizer__name': 'adamm'}, "config.optimizer.name='adamm' is not one of"),
    ({'optimizer__schedule': 'cosin'}, "config.optimizer.schedule='cosin' is not one of"),
    ({'optimizer__momentum': 1.5}, 'config.optimizer.momentum=1.5 must be in [0, 1)'),
    ({'parallel_mode': 'tpu'}, "config.parallel_mode='tpu' must be 'mesh' or 'pmap'"),
    ({'mesh_shape': (3,)}, 'config.mesh_shape=(3,) does not multiply to the 8 devices'),
    ({'model__activation': 'swish'}, "activation='swish' is not one of"),
    ({'model__widths': (3,)}, "config.model has fields ['widths']"),
    ({'dataset': 'mnist', 'data_dir': '/tmp'}, "config.data_dir='/tmp' has no mnist_5k"),
])
def test_bad_value_is_named_and_nothing_is_written(tmp_path, fields, message):
  workdir = tmp_path / 'run'
  with pytest.raises(ValueError) as error:
    loop.train_and_evaluate(config_with(**fields), workdir)
  assert message in str(error.value)
  assert not (workdir / 'checkpoints').exists() and not (workdir / 'metrics.jsonl').exists()


def test_bad_config_leaves_an_existing_run_intact(tmp_path):
  c = config_with(num_steps=20, log_every=10, checkpoint_every=10, progress_bar=False)
  loop.train_and_evaluate(c, tmp_path)
  before = {p: p.read_bytes() for p in tmp_path.rglob('*') if p.is_file()}
  with pytest.raises(config_checks.ConfigError):
    loop.train_and_evaluate(config_with(optimizer__learning_rate=0.0), tmp_path)
  after = {p: p.read_bytes() for p in tmp_path.rglob('*') if p.is_file()}
  assert before == after


def test_malformed_csv_line_names_file_and_line(tmp_path):
  rows = ['0,' * 784 + '3', '0,' * 783 + '7', '0,' * 784 + '1']  # line 2 lacks a pixel
  with gzip.open(tmp_path / 'mnist_5k.csv.gz', 'wt') as f:
    f.write('\n'.join(rows) + '\n')
  with pytest.raises(ValueError, match=r'mnist_5k.csv.gz:2: expected 784 pixel columns'):
    loop.train_and_evaluate(config_with(dataset='mnist', data_dir=str(tmp_path)), tmp_path)

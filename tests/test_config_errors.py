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
BASE_CONFIG = '--config=experiments/configs/default.py'


def run_main(*flags):
  """experiments.main with `flags`; the base (spirals) config unless they name one."""
  env = {**os.environ, 'JAX_PLATFORMS': 'cpu'}
  if flags and not any(f.startswith('--config=') for f in flags):
    flags = (BASE_CONFIG, *flags)
  return subprocess.run([sys.executable, '-m', 'experiments.main', *flags], cwd=ROOT,
                        env=env, capture_output=True, text=True, timeout=120)


def error_line(result) -> str:
  """The one `error: ...` line of a run that failed without a traceback."""
  assert result.returncode != 0 and 'Traceback' not in result.stderr, result.stderr
  lines = [line for line in result.stderr.splitlines() if line.startswith('error: ')]
  assert len(lines) == 1, result.stderr
  return lines[0]


@pytest.mark.parametrize('config, message', [
    ('experiments/configs/no_such.py', '--config=experiments/configs/no_such.py: no such '
                                       'file'),
    ('experiments/configs', '--config=experiments/configs is a directory; pass one of its '
                            'config files, e.g. --config=experiments/configs/'),
    ('experiments/configs/mnist_mlp.py:extra', "mnist_mlp.py's get_config() takes 0 "
                                               'positional arguments but 1 was given'),
])
def test_unusable_config_file_is_one_line(tmp_path, config, message):
  line = error_line(run_main(f'--workdir={tmp_path}/w', f'--config={config}',
                             '--config.num_steps=5'))
  assert message in line
  assert not (tmp_path / 'w').exists()


@pytest.mark.parametrize('flag, message', [
    ('--config.model.hidden=abc', "--config.model.hidden gives ('abc',), but 'abc' is not an "
                                  'integer like the elements of its default (64, 64)'),
    ('--config.model.hidden=64 64', '--config.model.hidden=64 64 is not a tuple'),
    ('--config.num_steps=abc', '--config.num_steps=abc is not an integer; give num_steps an '
                               'integer like its default, e.g. --config.num_steps=3000.'),
    ('--config.optimizer.learning_rate=fast', '--config.optimizer.learning_rate=fast is not '
                                              'a number'),
])
def test_wrong_typed_override_is_one_line(tmp_path, flag, message):
  assert message in error_line(run_main(f'--workdir={tmp_path}/w', flag))
  assert not (tmp_path / 'w').exists()


def test_missing_workdir_and_stray_argument_are_one_line(tmp_path):
  assert '--workdir is required' in error_line(run_main())
  line = error_line(run_main(f'--workdir={tmp_path}/w', '--config.model.hidden=64', '64'))
  assert "Unexpected argument '64'" in line


def _mnist_gz(folder: pathlib.Path, damage: str) -> pathlib.Path:
  rows = ''.join('0,' * 784 + f'{k % 10}\n' for k in range(50)).encode()
  data = gzip.compress(rows)
  folder.mkdir()
  (folder / 'mnist_5k.csv.gz').write_bytes(data[:len(data) // 2] if damage == 'truncated'
                                           else rows)
  return folder


@pytest.mark.parametrize('damage, message', [
    ('truncated', 'mnist_5k.csv.gz is cut short: its gzip data ends'),
    ('not gzip', 'mnist_5k.csv.gz is not a gzip file'),
])
def test_damaged_mnist_file_is_one_line_naming_it(tmp_path, damage, message):
  folder = _mnist_gz(tmp_path / 'data', damage)
  line = error_line(run_main(f'--workdir={tmp_path}/w',
                             '--config=experiments/configs/mnist_mlp.py',
                             f'--config.data_dir={folder}'))
  assert f'{folder}/mnist_5k.csv.gz' in line and message in line
  assert not (tmp_path / 'w' / 'checkpoints').exists()


def test_unknown_field_is_one_line_naming_it(tmp_path):
  result = run_main(f'--workdir={tmp_path}/w', '--config.optimizer.learnin_rate=1')
  assert result.returncode != 0
  assert 'Traceback' not in result.stderr
  assert "'learnin_rate'" in result.stderr and 'learning_rate' in result.stderr
  assert not (tmp_path / 'w').exists()


def test_unknown_field_of_a_named_config_file_is_one_line(tmp_path):
  line = error_line(run_main(f'--workdir={tmp_path}/w', '--config=experiments/configs/'
                             'mnist_mlp.py', '--config.optimizer.learnin_rate=1'))
  assert line.startswith('error: --config.optimizer.learnin_rate names a field the config '
                         "does not have (config.optimizer has no field 'learnin_rate'; did "
                         "you mean 'learning_rate'?)")
  assert 'experiments/configs/mnist_mlp.py' in line


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

"""launch_tpu.sh against a fake gcloud that records its arguments.

The remote scripts the launcher hands to `gcloud ... ssh --command=...` are executed here
with bash, in a sandbox home directory with a fake venv, python, uv and curl, so the
quoting, the setup steps, log streaming, exit statuses and stop are checked for real.
"""

import json
import os
import pathlib
import shlex
import shutil
import stat
import subprocess
import sys
import tarfile
import threading
import time

import pytest

SCRIPT = pathlib.Path(__file__).resolve().parents[1] / 'launch_tpu.sh'
ZONE, PROJECT, TYPE = 'us-central2-b', 'proj-1', 'v4-32'
# The remote scripts use GNU tail --pid, sed -u and setsid, as the TPU VMs' Ubuntu has.
runs_remote_scripts = pytest.mark.skipif(
    sys.platform != 'linux', reason='the remote scripts need GNU coreutils and util-linux')

FAKE_GCLOUD = f"""#!{sys.executable} -S
import json, os, shutil, sys
args = sys.argv[1:]
with open(os.environ['GCLOUD_LOG'], 'a') as log:
  log.write(json.dumps(args) + '\\n')
if args[3:4] == ['scp']:  # deliver the file, as scp to every worker would
  source, destination = args[4], args[5].split(':', 1)[1]
  shutil.copy(source, os.path.join(os.environ['FAKE_REMOTE_HOME'], destination))
sys.exit(int(os.environ.get('FAKE_GCLOUD_RC', '0')))
"""

# The remote side: python (the venv's) records argv, cwd and environment, then exits 3.
FAKE_PYTHON = """#!/bin/bash
printf '%s\\0' "$@" $'\\036' >> "$FAKE_RECORD/python.argv"  # one record per call
pwd > "$FAKE_RECORD/python.cwd"
env > "$FAKE_RECORD/python.env"
echo "hello from fake python"
[ "${1:-}" = -m ] && [ "${2:-}" = experiments.main ] && exit 3
exit 0
"""
FAKE_ACTIVATE = 'export VIRTUAL_ENV="$HOME/project/venv"; export PATH="$VIRTUAL_ENV/bin:$PATH"\n'
FAKE_UV = f"""#!/bin/bash
printf '%s\\n' "$*" >> "$FAKE_RECORD/uv.calls"
if [ "$1" = venv ]; then
  mkdir -p "${{@: -1}}/bin"
  cp "$FAKE_RECORD/python" "${{@: -1}}/bin/python"
  printf '%s' {shlex.quote(FAKE_ACTIVATE)} > "${{@: -1}}/bin/activate"
fi
"""
FAKE_CURL = """#!/bin/bash
printf '%s\\n' "$*" >> "$FAKE_RECORD/curl.calls"
echo 'mkdir -p "$UV_UNMANAGED_INSTALL" && cp "$FAKE_RECORD/uv" "$UV_UNMANAGED_INSTALL/uv"'
"""


def _write_exe(path, text):
  path.write_text(text)
  path.chmod(path.stat().st_mode | stat.S_IXUSR)


class Launcher:
  """Runs launch_tpu.sh for real, with the fake gcloud first on PATH."""

  def __init__(self, tmp_path):
    self.tmp = tmp_path
    bin_dir = tmp_path / 'bin'
    bin_dir.mkdir()
    _write_exe(bin_dir / 'gcloud', FAKE_GCLOUD)
    _write_exe(bin_dir / 'curl', FAKE_CURL)
    self.record = tmp_path / 'record'  # what the fake remote tools write
    self.record.mkdir()
    _write_exe(self.record / 'python', FAKE_PYTHON)
    _write_exe(self.record / 'uv', FAKE_UV)
    self.home = tmp_path / 'home'  # one worker's home directory
    self.home.mkdir()
    self.log = tmp_path / 'gcloud.jsonl'
    (tmp_path / 'tmp').mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith('TPU_')}
    env.update(PATH=f"{bin_dir}:{env['PATH']}", GCLOUD_LOG=str(self.log),
               FAKE_REMOTE_HOME=str(self.home), FAKE_RECORD=str(self.record),
               TMPDIR=str(tmp_path / 'tmp'), TPU_PROJECT=PROJECT, TPU_ZONE=ZONE, TPU_TYPE=TYPE)
    self.env = env

  def __call__(self, *args, drop=(), **env_update):
    """Returns (completed process, the gcloud argv lists recorded during this call)."""
    env = {k: v for k, v in self.env.items() if k not in drop}
    env.update(env_update)
    self.log.unlink(missing_ok=True)
    proc = subprocess.run([str(SCRIPT), *args], env=env, capture_output=True, text=True,
                          timeout=30)
    calls = ([json.loads(line) for line in self.log.read_text().splitlines()]
             if self.log.exists() else [])
    return proc, calls

  def remote(self, script, timeout=20):
    """Executes a --command script as the worker's login shell would."""
    env = dict(self.env, HOME=str(self.home))
    return subprocess.run(['bash', '-c', script], env=env, capture_output=True, text=True,
                          timeout=timeout, cwd=self.home)


@pytest.fixture
def launch(tmp_path):
  return Launcher(tmp_path)


def flag(call, name):
  """The value of --name=VALUE in a recorded argv (None when absent)."""
  values = [a.split('=', 1)[1] for a in call if a.startswith(f'--{name}=')]
  assert len(values) <= 1, (name, call)
  return values[0] if values else None


def remote_command(call):
  assert call[:4] == ['compute', 'tpus', 'tpu-vm', 'ssh'], call
  return flag(call, 'command')


def test_create_on_demand_spot_and_flags_over_environment(launch):
  proc, calls = launch('create', 'my-pod')
  assert proc.returncode == 0, proc.stderr
  [call] = calls
  assert call[:5] == ['compute', 'tpus', 'tpu-vm', 'create', 'my-pod']
  assert (flag(call, 'zone'), flag(call, 'project')) == (ZONE, PROJECT)
  assert flag(call, 'accelerator-type') == TYPE
  assert flag(call, 'version') == 'tpu-ubuntu2204-base'
  assert '--spot' not in call and '--reserved' not in call

  proc, calls = launch('--spot', 'create', '--zone', 'europe-west4-a', 'my-pod',
                       '--accelerator-type=v5litepod-16', '--version=v2-alpha-tpuv5-lite',
                       '--project=other', TPU_RUNTIME_VERSION='ignored-by-the-flag')
  assert proc.returncode == 0, proc.stderr
  [call] = calls
  assert call[:5] == ['compute', 'tpus', 'tpu-vm', 'create', 'my-pod']
  assert flag(call, 'zone') == 'europe-west4-a' and flag(call, 'project') == 'other'
  assert flag(call, 'accelerator-type') == 'v5litepod-16'
  assert flag(call, 'version') == 'v2-alpha-tpuv5-lite'
  assert '--spot' in call

  proc, calls = launch('create', 'my-pod', TPU_RUNTIME_VERSION='tpu-vm-base-from-env')
  assert flag(calls[0], 'version') == 'tpu-vm-base-from-env'


@pytest.mark.parametrize('capacity', ['--spot', '--reserved'])
def test_create_queued_resource(launch, capacity):
  proc, calls = launch('create', '--queued', capacity, 'my-pod')
  assert proc.returncode == 0, proc.stderr
  [call] = calls
  assert call[:5] == ['compute', 'tpus', 'queued-resources', 'create', 'my-pod']
  assert flag(call, 'node-id') == 'my-pod'
  assert (flag(call, 'zone'), flag(call, 'project')) == (ZONE, PROJECT)
  assert flag(call, 'accelerator-type') == TYPE
  assert flag(call, 'runtime-version') == 'tpu-ubuntu2204-base'
  assert flag(call, 'version') is None
  assert capacity in call and ({'--spot', '--reserved'} - {capacity}).isdisjoint(call)
  assert 'status --queued my-pod' in proc.stderr


def python_calls(launch):
  """The argv lists the fake python was called with, in order."""
  path = launch.record / 'python.argv'
  if not path.exists():
    return []
  calls, call = [], []
  for arg in path.read_text().split('\0')[:-1]:
    if arg == '\036':
      calls.append(call)
      call = []
    else:
      call.append(arg)
  return calls


def make_checkout(root):
  """A small checkout to copy, with everything setup must leave behind."""
  (root / 'experiments').mkdir(parents=True)
  (root / 'experiments' / 'main.py').write_text('print("main")\n')
  (root / 'requirements.txt').write_text('# pins\njax==9.8.7  # a comment\nflax==1.2.3\n')
  for junk in ['.venv/bin/python', '.git/HEAD', 'workdirs/run/checkpoint',
               'experiments/__pycache__/main.cpython-311.pyc', '.pytest_cache/x']:
    (root / junk).parent.mkdir(parents=True, exist_ok=True)
    (root / junk).write_text('junk')


@runs_remote_scripts
def test_setup_copies_the_code_and_installs_python_311_and_jax_tpu(launch):
  make_checkout(launch.tmp / 'code')
  # What the worker already has: a run's workdir (kept) and a stale file (replaced).
  (launch.home / 'project' / 'src' / 'workdirs' / 'old').mkdir(parents=True)
  (launch.home / 'project' / 'src' / 'workdirs' / 'old' / 'ckpt').write_text('saved')
  (launch.home / 'project' / 'src' / 'stale.py').write_text('')

  proc, calls = launch('setup', 'my-pod', TPU_CODE_DIR=str(launch.tmp / 'code'))
  assert proc.returncode == 0, proc.stderr
  scp, ssh = calls
  assert scp[:4] == ['compute', 'tpus', 'tpu-vm', 'scp']
  assert scp[5] == 'my-pod:launch_tpu_code.tgz' and scp[4].endswith('.tgz')
  assert '--worker=all' in scp and (flag(scp, 'zone'), flag(scp, 'project')) == (ZONE, PROJECT)
  assert not pathlib.Path(scp[4]).exists()  # the local tarball is cleaned up
  assert list((launch.tmp / 'tmp').iterdir()) == []
  with tarfile.open(launch.home / 'launch_tpu_code.tgz') as tar:
    names = {n.removeprefix('./') for n in tar.getnames()} - {'.', ''}
  assert {'requirements.txt', 'experiments/main.py'} <= names
  assert not [n for n in names if n.split('/')[0] in ('.venv', '.git', 'workdirs', '.pytest_cache')
              or '__pycache__' in n], names

  assert ssh[:5] == ['compute', 'tpus', 'tpu-vm', 'ssh', 'my-pod'] and '--worker=all' in ssh
  assert (flag(ssh, 'zone'), flag(ssh, 'project')) == (ZONE, PROJECT)
  result = launch.remote(remote_command(ssh))
  assert result.returncode == 0, result.stderr
  assert 'setup done' in result.stdout

  src = launch.home / 'project' / 'src'
  assert (src / 'experiments' / 'main.py').read_text() == 'print("main")\n'
  assert not (src / 'stale.py').exists() and not (src / '.venv').exists()
  assert (src / 'workdirs' / 'old' / 'ckpt').read_text() == 'saved'
  assert not (launch.home / 'launch_tpu_code.tgz').exists()
  assert (launch.record / 'curl.calls').read_text().split() == ['-LsSf',
                                                               'https://astral.sh/uv/install.sh']
  uv_calls = (launch.record / 'uv.calls').read_text().splitlines()
  assert uv_calls == ['python install 3.11',
                      f'venv --seed --python 3.11 {launch.home}/project/venv']
  assert python_calls(launch) == [
      ['-m', 'pip', 'install', '-q', '--upgrade', 'pip'],
      ['-m', 'pip', 'install', '-r', f'{src}/requirements.txt', 'jax[tpu]==9.8.7',
       '-f', 'https://storage.googleapis.com/jax-releases/libtpu_releases.html'],
      ['-c', 'import jax; print("jax", jax.__version__)']]

  # A second setup reuses uv and the venv (the fake python passes the 3.11 check).
  launch('setup', 'my-pod', TPU_CODE_DIR=str(launch.tmp / 'code'))
  assert launch.remote(remote_command(ssh)).returncode == 0
  assert len((launch.record / 'curl.calls').read_text().splitlines()) == 1
  assert (launch.record / 'uv.calls').read_text().splitlines()[2:] == ['python install 3.11']


JOB = ['python', '-m', 'experiments.main', '--distributed',
       '--config=experiments/configs/mnist_cnn.py', '--workdir=gs://BUCKET/runs/mnist_cnn',
       "--config.name='a b'", '--config.note=say "hi" $HOME `id`; *', '', 'two\nlines',
       '--dry-run']


def make_worker(launch):
  """A worker after setup: the code directory and a venv whose python is the fake."""
  (launch.home / 'project' / 'src').mkdir(parents=True)
  venv_bin = launch.home / 'project' / 'venv' / 'bin'
  venv_bin.mkdir(parents=True)
  shutil.copy(launch.record / 'python', venv_bin / 'python')
  (venv_bin / 'activate').write_text(FAKE_ACTIVATE)


@runs_remote_scripts
def test_run_starts_the_command_on_every_worker_with_its_arguments_intact(launch):
  make_worker(launch)
  proc, calls = launch('run', 'my-pod', '--env', 'WANDB_TAGS=x y', '--', *JOB)
  assert proc.returncode == 0, proc.stderr
  [call] = calls
  assert call[:5] == ['compute', 'tpus', 'tpu-vm', 'ssh', 'my-pod'] and '--worker=all' in call
  assert (flag(call, 'zone'), flag(call, 'project')) == (ZONE, PROJECT)

  result = launch.remote(remote_command(call))
  assert result.returncode == 3, result.stderr  # the job's exit status comes back
  host = subprocess.run(['hostname'], capture_output=True, text=True).stdout.strip()
  assert f'[{host}] hello from fake python' in result.stdout  # the log is streamed
  assert 'exited with status 3' in result.stdout
  assert python_calls(launch) == [JOB[1:]]
  project = launch.home / 'project'
  assert (launch.record / 'python.cwd').read_text().strip() == str(project / 'src')
  env = dict(line.split('=', 1) for line in
             (launch.record / 'python.env').read_text().splitlines() if '=' in line)
  assert env['PYTHONUNBUFFERED'] == '1' and env['JAX_PLATFORMS'] == 'tpu'
  assert env['TPU_NAME'] == 'my-pod' and env['WANDB_TAGS'] == 'x y'
  assert env['VIRTUAL_ENV'] == str(project / 'venv')
  assert 'hello from fake python' in (project / 'run.log').read_text()
  assert (project / 'run.pid').read_text().strip().isdigit()

  # --detach returns at once; the job still runs; the previous log is kept.
  proc, [call] = launch('run', 'my-pod', '--detach', '--', 'python', '-c', 'x = 1')
  result = launch.remote(remote_command(call))
  assert result.returncode == 0 and 'hello' not in result.stdout
  for _ in range(100):  # the detached job runs on; let it finish
    if len(python_calls(launch)) == 2:
      break
    time.sleep(0.05)
  assert python_calls(launch)[1] == ['-c', 'x = 1']
  assert 'hello from fake python' in (project / 'run.log.prev').read_text()


@runs_remote_scripts
def test_run_refuses_without_setup_or_while_a_job_runs(launch):
  _, [call] = launch('run', 'my-pod', '--', 'python', '-V')
  result = launch.remote(remote_command(call))
  assert result.returncode == 1 and 'setup my-pod' in result.stderr

  make_worker(launch)
  (launch.home / 'project' / 'run.pid').write_text(f'{os.getpid()}\n')  # a live process
  result = launch.remote(remote_command(call))
  assert result.returncode == 1 and 'already running' in result.stderr
  assert python_calls(launch) == []


@runs_remote_scripts
def test_stop_sends_sigterm_to_the_job_on_every_worker(launch):
  proc, [call] = launch('stop', 'my-pod')
  assert proc.returncode == 0, proc.stderr
  assert '--worker=all' in call and (flag(call, 'zone'), flag(call, 'project')) == (ZONE, PROJECT)
  (launch.home / 'project').mkdir()
  result = launch.remote(remote_command(call))
  assert result.returncode == 0 and 'no job running' in result.stdout

  # A job in its own session that saves on SIGTERM, like the trainer.
  marker = launch.tmp / 'saved'
  job = subprocess.Popen(['bash', '-c', f'trap "echo saved > {marker}; exit 0" TERM; '
                          'while :; do sleep 0.1; done'], start_new_session=True)
  reaper = threading.Thread(target=job.wait)  # the remote job is reaped by init
  reaper.start()
  try:
    (launch.home / 'project' / 'run.pid').write_text(f'{job.pid}\n')
    result = launch.remote(remote_command(call))
    assert result.returncode == 0, result.stderr
    assert 'stopped' in result.stdout
    reaper.join(5)
    assert job.returncode == 0 and marker.read_text() == 'saved\n'
  finally:
    if job.poll() is None:
      job.kill()
    reaper.join()


@runs_remote_scripts
def test_tail_delete_status_list(launch):
  _, [call] = launch('tail', 'my-pod')
  assert call[:5] == ['compute', 'tpus', 'tpu-vm', 'ssh', 'my-pod'] and '--worker=0' in call
  assert 'run.log' in remote_command(call)
  _, [call] = launch('tail', 'my-pod', '--worker=all')
  assert '--worker=all' in call
  make_worker(launch)
  (launch.home / 'project' / 'run.log').write_text('step 1\nstep 2\n')
  result = launch.remote(remote_command(call))
  assert result.returncode == 0 and result.stdout.endswith('] step 2\n')

  _, [call] = launch('delete', 'my-pod')
  assert call[:5] == ['compute', 'tpus', 'tpu-vm', 'delete', 'my-pod'] and '--quiet' in call
  assert (flag(call, 'zone'), flag(call, 'project')) == (ZONE, PROJECT)
  _, [call] = launch('delete', '--queued', 'my-pod')
  assert call[:5] == ['compute', 'tpus', 'queued-resources', 'delete', 'my-pod']
  assert '--force' in call and '--quiet' in call  # --force deletes its TPU node too

  _, [call] = launch('status', 'my-pod')
  assert call[:5] == ['compute', 'tpus', 'tpu-vm', 'describe', 'my-pod']
  _, [call] = launch('status', 'my-pod', '--queued')
  assert call[:5] == ['compute', 'tpus', 'queued-resources', 'describe', 'my-pod']
  for command in ('list', 'status'):
    _, calls = launch(command)
    assert [c[:4] for c in calls] == [['compute', 'tpus', 'tpu-vm', 'list'],
                                      ['compute', 'tpus', 'queued-resources', 'list']]
    assert all(flag(c, 'zone') == ZONE for c in calls)


def test_dry_run_prints_a_full_pod_run_and_runs_nothing(launch):
  make_checkout(launch.tmp / 'code')
  lines = []
  for args in (['--dry-run', 'create', 'my-pod'], ['setup', '--dry-run', 'my-pod'],
               ['run', 'my-pod', '--dry-run', '--', *JOB]):
    proc, calls = launch(*args, TPU_CODE_DIR=str(launch.tmp / 'code'))
    assert proc.returncode == 0, proc.stderr
    assert calls == [] and not launch.log.exists()
    lines += proc.stdout.splitlines()
  assert list((launch.tmp / 'tmp').iterdir()) == []  # no tarball made either
  assert not list(launch.home.iterdir())

  commands = [shlex.split(line) for line in lines]
  assert [c[0] for c in commands] == ['gcloud', 'env', 'gcloud', 'gcloud', 'gcloud']
  assert commands[0][1:6] == ['compute', 'tpus', 'tpu-vm', 'create', 'my-pod']
  assert flag(commands[0], 'accelerator-type') == TYPE
  assert 'tar' in commands[1] and '--exclude=.venv' in commands[1]
  assert [c[4] for c in commands[2:]] == ['scp', 'ssh', 'ssh']
  assert all('--worker=all' in c for c in commands[2:])

  # The printed run command is exactly what a real run passes to gcloud.
  _, [real] = launch('run', 'my-pod', '--', *JOB)
  assert commands[-1][1:] == real
  assert subprocess.run(['bash', '-n', '-c', remote_command(real)]).returncode == 0


@pytest.mark.parametrize('drop, command, flag_name, variable', [
    ('TPU_ZONE', 'create', '--zone', 'TPU_ZONE'),
    ('TPU_PROJECT', 'create', '--project', 'TPU_PROJECT'),
    ('TPU_TYPE', 'create', '--accelerator-type', 'TPU_TYPE'),
    ('TPU_ZONE', 'run', '--zone', 'TPU_ZONE'),
    ('TPU_PROJECT', 'delete', '--project', 'TPU_PROJECT'),
])
def test_missing_setting_is_one_line_and_exit_2(launch, drop, command, flag_name, variable):
  extra = ['--', 'python', '-V'] if command == 'run' else []
  proc, calls = launch(command, 'my-pod', *extra, drop=(drop,))
  assert proc.returncode == 2 and calls == []
  assert proc.stderr.count('\n') == 1 and proc.stderr.startswith('error: no ')
  assert flag_name in proc.stderr and variable in proc.stderr
  # The flag alone is enough.
  proc, calls = launch(command, 'my-pod', f'{flag_name}=given', *extra, drop=(drop,))
  assert proc.returncode == 0 and len(calls) == 1, proc.stderr


@pytest.mark.parametrize('args, words', [
    ([], 'no command'),
    (['launch', 'my-pod'], "unknown command 'launch'"),
    (['create', 'my-pod', '--preemptible'], "unknown flag '--preemptible'"),
    (['create'], 'needs a TPU name'),
    (['create', 'My_Pod'], 'bad TPU name'),
    (['create', 'my-pod', '--spot', '--reserved'], 'exclude each other'),
    (['create', 'my-pod', '--zone'], '--zone needs a value'),
    (['run', 'my-pod'], 'after --'),
    (['run', 'my-pod', 'python', 'x.py'], 'after --'),
    (['tail', 'my-pod', '--worker=first'], '--worker'),
    (['run', 'my-pod', '--env=1X=y', '--', 'python'], 'KEY=VALUE'),
])
def test_usage_errors_exit_2(launch, args, words):
  proc, calls = launch(*args)
  assert proc.returncode == 2 and calls == []
  assert proc.stderr.startswith('error: ') and proc.stderr.count('\n') == 1
  assert words in proc.stderr


def test_help_and_gcloud_failure(launch):
  proc, calls = launch('--help')
  assert proc.returncode == 0 and proc.stdout.startswith('usage:') and calls == []
  assert all(word in proc.stdout for word in ['create', 'setup', 'run', 'tail', 'stop',
                                              'delete', 'TPU_ZONE', '--dry-run'])
  proc, calls = launch('create', 'my-pod', FAKE_GCLOUD_RC='7')
  assert proc.returncode == 7 and len(calls) == 1


@pytest.mark.skipif(shutil.which('shellcheck') is None, reason='shellcheck is not installed')
def test_shellcheck_clean():
  result = subprocess.run(['shellcheck', str(SCRIPT)], capture_output=True, text=True)
  assert result.returncode == 0, result.stdout

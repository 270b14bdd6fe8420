"""Fault injection: SIGKILL a real training run at random moments, restart it with the same
command each time, and check that it ends exactly where an uninterrupted run ends.

  python -m experiments.fault_injection --kills=5 -- --config=experiments/configs/mnist_cnn.py \
      --config.data_dir=../shared/data/mnist5k --config.num_steps=200 ...

Everything after `--` is passed to `python -m experiments.main`. Half the kills (drawn
at random) wait for the next asynchronous save to be in flight (Orbax's
`<step>.orbax-checkpoint-tmp` folder) and land during it; the others land at a random
moment after a new checkpoint. The final parameters
(bit for bit) and metrics.jsonl (timings aside) are compared with an uninterrupted run in
a second workdir. Prints a table and a final JSON line.
"""

import dataclasses
import json
import os
import pathlib
import signal
import subprocess
import sys
import tempfile
import time

import numpy as np
from absl import app, flags

ROOT = pathlib.Path(__file__).resolve().parents[1]
TIMINGS = ('examples_per_sec', 'step_time_ms')


@dataclasses.dataclass
class Report:
  kills: int = 0
  kills_during_save: int = 0
  resumes: int = 0
  resumed_from: list = dataclasses.field(default_factory=list)
  params_equal: bool = False
  metrics_equal: bool = False

  @property
  def exact(self) -> bool:
    return self.params_equal and self.metrics_equal


def command(flags_: list[str], workdir: pathlib.Path) -> list[str]:
  return [sys.executable, '-m', 'experiments.main', f'--workdir={workdir}', *flags_]


def environment() -> dict:
  return {**os.environ, 'JAX_PLATFORMS': 'cpu', 'XLA_FLAGS': '', 'PYTHONUNBUFFERED': '1'}


def checkpoint_steps(workdir: pathlib.Path) -> list[int]:
  folder = workdir / 'checkpoints'
  return sorted(int(p.name) for p in folder.iterdir() if p.name.isdigit()) if \
      folder.is_dir() else []


def saving(workdir: pathlib.Path) -> bool:
  folder = workdir / 'checkpoints'
  return folder.is_dir() and any('tmp' in p.name for p in folder.iterdir())


def run(flags_, workdir) -> str:
  result = subprocess.run(command(flags_, workdir), cwd=ROOT, env=environment(),
                          capture_output=True, text=True, timeout=900)
  if result.returncode:
    raise RuntimeError(f'run failed ({result.returncode}): {result.stderr[-2000:]}')
  return result.stdout


def kill_once(flags_, workdir, rng: np.random.Generator, report: Report) -> bool:
  """Starts the run; SIGKILLs it after its next checkpoint. False if it finished first."""
  before = checkpoint_steps(workdir)
  with tempfile.TemporaryFile('w+') as log:
    process = subprocess.Popen(command(flags_, workdir), cwd=ROOT, env=environment(),
                               stdout=log, stderr=subprocess.STDOUT, text=True)
    # Every other kill waits for the next save to be in flight; the rest land at a
    # random moment up to 1.5 s after a new checkpoint.
    during_save = rng.random() < 0.5
    delay, armed_at = (60.0 if during_save else rng.uniform(0.0, 1.5)), None
    while process.poll() is None:
      now = time.time()
      if armed_at is None and checkpoint_steps(workdir) != before:
        armed_at = now  # a new checkpoint exists: progress is guaranteed from here
      if armed_at is not None and ((during_save and saving(workdir)) or now - armed_at > delay):
        report.kills_during_save += saving(workdir)
        process.send_signal(signal.SIGKILL)
        process.wait()
        report.kills += 1
        break
      if armed_at is None:
        time.sleep(0.002)  # once armed, poll without pausing: a save lasts milliseconds
    log.seek(0)
    output = log.read()
  if 'Resumed from the checkpoint at step' in output:
    report.resumes += 1
    report.resumed_from.append(int(output.split('Resumed from the checkpoint at step ')[1]
                                   .split()[0].rstrip('.')))
  return process.returncode == -signal.SIGKILL


def final_params(workdir: pathlib.Path) -> list[np.ndarray]:
  import jax
  import orbax.checkpoint as ocp
  step = checkpoint_steps(workdir)[-1]
  restored = ocp.StandardCheckpointer().restore(workdir / 'checkpoints' / str(step) / 'state')
  return [np.asarray(x) for x in jax.tree.leaves(restored['params'])]


def records(workdir: pathlib.Path) -> list[dict]:
  lines = (workdir / 'metrics.jsonl').read_text().splitlines()
  return [{k: v for k, v in json.loads(line).items() if k not in TIMINGS} for line in lines]


def inject(flags_: list[str], root: pathlib.Path, kills: int, seed: int) -> Report:
  """Kills a run in root/killed `kills` times, finishes it, compares with root/reference."""
  rng, report = np.random.default_rng(seed), Report()
  reference, killed = root / 'reference', root / 'killed'
  run(flags_, reference)
  for _ in range(kills):
    if not kill_once(flags_, killed, rng, report):
      break
  output = run(flags_, killed)
  if 'Resumed from the checkpoint at step' in output:
    report.resumes += 1
  a, b = final_params(reference), final_params(killed)
  report.params_equal = len(a) == len(b) and all(np.array_equal(x, y) for x, y in zip(a, b))
  report.metrics_equal = records(reference) == records(killed)
  return report


FLAGS = flags.FLAGS
flags.DEFINE_integer('kills', 5, 'How many times to SIGKILL the run before letting it end.')
flags.DEFINE_integer('seed', 0, 'Seed of the kill times.')
flags.DEFINE_string('root', None, 'Folder for the two workdirs (default: a temporary one).')


def main(argv):
  root = pathlib.Path(FLAGS.root or tempfile.mkdtemp(prefix='fault_injection_'))
  report = inject(argv[1:], root, FLAGS.kills, FLAGS.seed)
  print(f'kills tried {report.kills} ({report.kills_during_save} during an asynchronous '
        f'save), resumes {report.resumes} (from steps {report.resumed_from}), final '
        f'parameters equal: {report.params_equal}, metrics equal: {report.metrics_equal}')
  print(json.dumps({'benchmark': 'fault_injection', **dataclasses.asdict(report),
                    'exact': report.exact}))
  if not report.exact:
    raise SystemExit(1)


if __name__ == '__main__':
  app.run(main)

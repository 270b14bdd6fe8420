"""A gs:// workdir: a run against a local GCS emulator writes, resumes, quarantines and
archives as a local run does, and ends with the same parameters and metrics.

The emulator (gcp-storage-emulator, in the test extra) speaks the GCS JSON API on
127.0.0.1; gcsfs (metrics, records, checksums), TensorStore (Orbax's arrays) and
google-cloud-storage (tensorboardX) are all pointed at it, so every byte goes through the
same clients a TPU VM uses against a real bucket.
"""

import json
import os
import socket

import jax
import numpy as np
import pytest

from experiments import evaluate as evaluate_lib
from experiments.configs import default
from train import loop, reporting, storage

emulator = pytest.importorskip('gcp_storage_emulator.server',
                               reason='gcp-storage-emulator is in requirements-test.txt')
pytest.importorskip('gcsfs', reason='gcsfs (requirements.txt) reads and writes gs://')

BUCKET = 'runs'


def serve_with_generation(download):
  """The emulator's object download, plus the x-goog-generation header that real GCS
  sends and TensorStore reads (without it, reading an existing object fails)."""

  def serve(request, response, storage, *args, **kwargs):
    download(request, response, storage, *args, **kwargs)
    if response.status < 300:  # 200, or 206 for a range
      obj = storage.get_file_obj(request.params['bucket_name'], request.params['object_id'])
      response['x-goog-generation'] = obj['generation']
      response['x-goog-metageneration'] = obj['metageneration']
  return serve


@pytest.fixture(scope='module')
def bucket():
  objects = pytest.importorskip('gcp_storage_emulator.handlers.objects')
  original = objects.download
  objects.download = serve_with_generation(original)  # what a JSON-API media GET calls
  with socket.socket() as s:
    s.bind(('127.0.0.1', 0))
    port = s.getsockname()[1]
  server = emulator.create_server('127.0.0.1', port, in_memory=True, default_bucket=BUCKET)
  server.start()
  url = f'http://127.0.0.1:{port}'
  settings = {'STORAGE_EMULATOR_HOST': url, 'TENSORSTORE_GCS_HTTP_URL': url,
              'GOOGLE_AUTH_TOKEN_FOR_TESTING': 'emulator', 'GOOGLE_CLOUD_PROJECT': 'test'}
  saved = {k: os.environ.get(k) for k in settings}
  os.environ.update(settings)
  yield f'gs://{BUCKET}'
  for key, value in saved.items():
    if value is None:
      os.environ.pop(key)
    else:
      os.environ[key] = value
  server.stop()
  objects.download = original


def config(num_steps=30):
  c = default.get_config()
  c.update(num_steps=num_steps, log_every=10, eval_every=10, checkpoint_every=10,
           progress_bar=False)
  return c


def without_timing(records):
  return [{k: v for k, v in r.items() if k not in ('examples_per_sec', 'step_time_ms')}
          for r in records]


def test_a_bucket_run_equals_a_local_run_and_resumes(bucket, tmp_path, capsys):
  remote = f'{bucket}/spirals'
  state, test = loop.train_and_evaluate(config(), remote)
  local_state, local_test = loop.train_and_evaluate(config(), str(tmp_path))
  assert test == local_test
  jax.tree.map(np.testing.assert_array_equal, state.params, local_state.params)
  assert without_timing(reporting.read_metrics(remote)) == \
      without_timing(reporting.read_metrics(tmp_path))
  root = storage.path(remote)
  for name in ('config.json', 'run_history.jsonl', 'curves.png'):
    assert (root / name).exists(), name
  assert sorted(p.name for p in (root / 'checkpoints').iterdir()) == ['10', '20', '30']
  assert (root / 'checkpoints' / '30' / 'checksums.json').exists()
  assert any('tfevents' in p.name for p in (root / 'tensorboard').iterdir())

  capsys.readouterr()
  state, test = loop.train_and_evaluate(config(40), remote)
  assert 'Resumed from the checkpoint at step 30' in capsys.readouterr().out
  local_state, local_test = loop.train_and_evaluate(config(40), str(tmp_path))
  assert test == local_test
  jax.tree.map(np.testing.assert_array_equal, state.params, local_state.params)
  records = reporting.read_metrics(remote)
  assert [r['step'] for r in records if r['split'] == 'test'] == [40]
  starts = [json.loads(line) for line in (root / 'run_history.jsonl').read_text().splitlines()]
  assert [s['start_step'] for s in starts] == [0, 30]


def test_a_corrupt_bucket_checkpoint_is_moved_aside_then_evaluate_and_fresh(bucket, capsys):
  remote = f'{bucket}/corrupt'
  loop.train_and_evaluate(config(), remote)
  newest = storage.path(remote) / 'checkpoints' / '30'
  target = max((p for p in storage.files_under(newest / 'state') if 'd' in p.parts),
               key=lambda p: len(p.read_bytes()))
  raw = bytearray(target.read_bytes())
  raw[len(raw) // 2] ^= 0xFF
  target.write_bytes(bytes(raw))
  capsys.readouterr()
  loop.train_and_evaluate(config(), remote)
  out = capsys.readouterr().out
  assert 'checkpoint step 30 is corrupt' in out and 'differ from their checksums' in out
  assert 'Resumed from the checkpoint at step 20' in out
  kept = storage.path(remote) / 'corrupt_checkpoints' / '30'
  assert (kept / 'checksums.json').exists()  # kept, not deleted
  assert [r['step'] for r in reporting.read_metrics(remote) if r['split'] == 'test'] == [30]

  before = reporting.read_metrics(remote)
  record = evaluate_lib.evaluate(remote, split='eval')
  assert reporting.read_metrics(remote) == before + [record]
  loop.train_and_evaluate(config(10), remote, fresh=True)
  [stamp] = list((storage.path(remote) / 'archive').iterdir())
  assert reporting.read_metrics(stamp) == before + [record]
  assert (stamp / 'corrupt_checkpoints' / '30' / 'checksums.json').exists()
  assert [r['step'] for r in reporting.read_metrics(remote)] == [10, 10, 10]

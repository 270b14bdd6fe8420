"""The researcher's tools on a real run: evaluate, predict, export and the catalog."""

import json
import os
import pathlib
import subprocess
import sys

import jax
import nets
import numpy as np
import pytest

from experiments import catalog, evaluate, export, predict
from experiments.configs import default, sst2_bow
from train import export as export_lib
from train import loop, reporting, tasks
from train.data import registry, synthetic
from train.errors import UserError

ONE_DEVICE = jax.devices()[:1]
ROOT = pathlib.Path(__file__).resolve().parents[1]


@pytest.fixture(scope='module')
def spirals(tmp_path_factory):
  """A short default run: checkpoints at steps 100 and 200, then its test line."""
  workdir = tmp_path_factory.mktemp('spirals')
  c = default.get_config()
  c.update(num_steps=200, log_every=100, eval_every=100, checkpoint_every=100,
           progress_bar=False)
  state, test = loop.train_and_evaluate(c, workdir, devices=ONE_DEVICE)
  return workdir, state, test


def test_evaluate_reproduces_the_test_line_and_appends_a_record(spirals):
  workdir, _, test = spirals
  before = (workdir / 'metrics.jsonl').read_text()
  record = evaluate.evaluate(workdir, devices=ONE_DEVICE)
  assert (record['step'], record['split'], record['source']) == (200, 'test', 'evaluate')
  assert record['accuracy'] == test['accuracy'] and record['loss'] == test['loss']
  after = (workdir / 'metrics.jsonl').read_text()
  assert after.startswith(before)  # the lines already there are untouched
  assert reporting.read_metrics(workdir)[-1] == record


def test_evaluate_a_given_step_on_the_eval_split(spirals):
  workdir, _, _ = spirals
  (logged,) = [r for r in reporting.read_metrics(workdir)
               if r['step'] == 100 and r['split'] == 'eval' and 'source' not in r]
  record = evaluate.evaluate(workdir, step=100, split='eval', devices=ONE_DEVICE)
  assert (record['accuracy'], record['loss']) == (logged['accuracy'], logged['loss'])


def test_export_holds_the_checkpoint_parameters(spirals, tmp_path):
  workdir, state, _ = spirals
  done = export.export(workdir, tmp_path / 'spirals.npz', devices=ONE_DEVICE)
  assert (done['step'], done['parameters']) == (200, 4547)
  loaded = export_lib.load_npz(tmp_path / 'spirals.npz')
  assert list(loaded) == ['params']  # an MLP has no batch-norm statistics
  restored = evaluate.load_run(workdir, devices=ONE_DEVICE).state.params
  for params in (restored, state.params):
    assert jax.tree.structure(loaded['params']) == jax.tree.structure(params)
    for a, b in zip(jax.tree.leaves(loaded['params']), jax.tree.leaves(params)):
      np.testing.assert_array_equal(a, np.asarray(b))
  meta = json.loads((tmp_path / 'spirals.config.json').read_text())
  assert meta['model']['name'] == 'mlp' and meta['export']['step'] == 200
  model, variables = export_lib.load_model(tmp_path / 'spirals.npz')
  assert model.hidden == (64, 64) and model.num_outputs == 3


def test_predict_matches_the_exported_model(spirals, tmp_path):
  workdir, _, _ = spirals
  examples = synthetic.spirals(3000, 3, 0.2, seed=0)['inputs'][:5]  # training points
  np.save(tmp_path / 'points.npy', examples)
  results = predict.predict(workdir, [tmp_path / 'points.npy'], devices=ONE_DEVICE)
  export.export(workdir, tmp_path / 'm.npz', devices=ONE_DEVICE)
  variables = export_lib.load_variables(tmp_path / 'm.npz')
  model = nets.MLP(hidden=(64, 64), num_outputs=3, activation='tanh')
  expected = jax.nn.softmax(model.apply(variables, examples))
  assert [r['input'] for r in results] == [f'{tmp_path / "points.npy"}[{i}]' for i in range(5)]
  assert [r['prediction'] for r in results] == np.argmax(expected, -1).tolist()
  probabilities = np.array([r['probabilities'] for r in results])
  np.testing.assert_allclose(probabilities, expected, rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(probabilities.sum(-1), 1.0, rtol=1e-5)


def test_predict_refuses_what_it_cannot_serve(spirals, tmp_path, monkeypatch):
  workdir, _, _ = spirals
  with pytest.raises(UserError, match='--text is text'):
    predict.predict(workdir, texts=['hello'], devices=ONE_DEVICE)
  np.save(tmp_path / 'wrong.npy', np.zeros((4, 3), np.float32))
  with pytest.raises(UserError, match=r'shape \[4, 3\], not examples of shape \[2\]'):
    predict.predict(workdir, [tmp_path / 'wrong.npy'], devices=ONE_DEVICE)
  monkeypatch.setattr(tasks.Classification, 'predict', tasks.Task.predict)
  np.save(tmp_path / 'ok.npy', np.zeros((1, 2), np.float32))
  with pytest.raises(UserError, match="config.task='classification' .* cannot predict"):
    predict.predict(workdir, [tmp_path / 'ok.npy'], devices=ONE_DEVICE)


def test_errors_are_one_line(spirals, tmp_path):
  workdir, _, _ = spirals
  for call, words in [
      (lambda: evaluate.evaluate(tmp_path / 'absent'), '--workdir='),
      (lambda: evaluate.evaluate(workdir, step=150, devices=ONE_DEVICE),
       'choose one of [100, 200]'),
      (lambda: evaluate.evaluate(tmp_path), 'config.json does not exist'),
      (lambda: predict.predict(workdir, [tmp_path / 'absent.npy']), 'does not exist'),
      (lambda: export.export(workdir, tmp_path / 'm.txt'), 'must name a .npz')]:
    with pytest.raises(UserError) as error:
      call()
    assert words in str(error.value) and '\n' not in str(error.value)
  # The command line prints the sentence alone and exits with 1.
  env = {**os.environ, 'JAX_PLATFORMS': 'cpu', 'XLA_FLAGS': ''}
  done = subprocess.run([sys.executable, '-m', 'experiments.evaluate',
                         f'--workdir={workdir}', '--step=7'],
                        cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
  assert done.returncode == 1 and done.stdout == ''
  assert done.stderr.strip().splitlines() == [
      f'error: --step=7 has no checkpoint in {workdir}/checkpoints; choose one of '
      '[100, 200], or leave --step out for the newest.']


def test_catalog_lists_everything():
  entries = catalog.catalog()
  configs = sorted(p.stem for p in (ROOT / 'experiments' / 'configs').glob('[!_]*.py'))
  assert [e['name'] for e in entries['experiments']] == configs
  assert all(e['summary'] and e['expected'] for e in entries['experiments'])
  assert list(entries['models']) == sorted(nets.MODELS)
  assert entries['datasets'] == registry.names()
  assert entries['tasks'] == tasks.names()
  text = catalog.render(entries)
  for name in [*configs, *nets.MODELS, *registry.names(), *tasks.names(), 'adamw', 'cosine']:
    assert name in text, name
  expected = next(e['expected'] for e in entries['experiments'] if e['name'] == 'default')
  assert expected.startswith('test accuracy >= 0.99 on 3,000 fresh points')


def test_text_run_predicts_class_names(shared_data, tmp_path):
  workdir = tmp_path / 'sst2'
  c = sst2_bow.get_config()
  c.update(data_dir=str(shared_data / 'sst2'), num_epochs=1, progress_bar=False)
  c.data.bucketing = False  # one batch shape: one compilation
  _, test = loop.train_and_evaluate(c, workdir, devices=ONE_DEVICE)
  # Every test sentence as a line of text: the predictions score the run's test accuracy.
  lines = (shared_data / 'sst2' / 'stsa.binary.test').read_text().splitlines()
  (tmp_path / 'test.txt').write_text(''.join(line.partition(' ')[2] + '\n' for line in lines))
  texts = ['a fascinating and fun film .', "do n't waste your money ."]
  results = predict.predict(workdir, [tmp_path / 'test.txt'], texts, devices=ONE_DEVICE)
  labels = [int(line.partition(' ')[0]) for line in lines]
  accuracy = np.mean([r['prediction'] == y for r, y in zip(results, labels)])
  assert len(results) == len(lines) + 2 and accuracy == pytest.approx(test['accuracy'])
  assert [r['input'] for r in results[-2:]] == texts
  assert [r['class_name'] for r in results[-2:]] == ['positive', 'negative']



def test_image_inputs_are_read_like_the_training_data(tmp_path):
  from types import SimpleNamespace
  from PIL import Image
  from train.data.pipeline import ArraySource
  images = ArraySource({'inputs': np.zeros((4, 28, 28, 1), np.float32),
                        'label': np.zeros(4, np.int32)})
  run = SimpleNamespace(workdir=tmp_path, exp=SimpleNamespace(
      config=default.get_config(), splits=SimpleNamespace(eval=images, info={})))
  pixels = np.random.default_rng(0).integers(0, 256, (2, 28, 28), dtype=np.uint8)
  expected = (pixels / 255.0).astype(np.float32)[..., None]
  np.save(tmp_path / 'float.npy', expected[..., 0])
  np.save(tmp_path / 'flat.npy', pixels.reshape(2, 784))  # integer pixels: scaled by 1/255
  Image.fromarray(pixels[0]).save(tmp_path / 'digit.png')
  smooth = np.add.outer(np.arange(28), np.arange(28)).astype(np.uint8) * 4
  Image.fromarray(np.kron(smooth, np.ones((2, 2), np.uint8))).convert('RGB').save(
      tmp_path / 'big.jpg', quality=100)  # 56 x 56 colour: made gray, resized to 28 x 28
  files = [tmp_path / name for name in ('float.npy', 'flat.npy', 'digit.png', 'big.jpg')]
  names, examples = predict.read_inputs(files, [], run)
  assert names == [f'{files[0]}[0]', f'{files[0]}[1]', f'{files[1]}[0]', f'{files[1]}[1]',
                   str(files[2]), str(files[3])]
  assert all(x.shape == (28, 28, 1) and x.dtype == np.float32 for x in examples)
  np.testing.assert_allclose(np.stack(examples[:5]), expected[[0, 1, 0, 1, 0]], atol=1e-6)
  np.testing.assert_allclose(examples[5][..., 0], smooth / 255.0, atol=0.03)  # JPEG, resizing

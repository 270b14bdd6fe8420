"""digits_ctc: MNIST digit strings, the CRNN's frames, the CTC task's metrics, a short run."""

import gzip
import math
import types

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from experiments.configs import digits_ctc
from nets.crnn import CRNN
from nets.mlp import ModelConfigError
from train import ctc_tasks, data, loop, reporting
from train.data import images
from train.errors import UserError


def sequence_config(data_dir, **data_fields):
  c = digits_ctc.get_config()
  c.data_dir = str(data_dir)
  c.data.update({'num_train': 64, 'num_eval': 20, 'num_test': 30, **data_fields})
  return c


def draw_by_hand(pool_images, digits, offsets, shifts, length, canvas_width):
  """One sequence's image, pasted digit by digit with plain slicing (independent of compose)."""
  canvas = np.zeros((28, canvas_width), np.float32)
  for s in range(length):
    moved = np.zeros((28, 28), np.float32)
    dy = shifts[s]
    if dy >= 0:
      moved[dy:] = pool_images[digits[s]][:28 - dy]
    else:
      moved[:28 + dy] = pool_images[digits[s]][-dy:]
    x = offsets[s]
    canvas[:, x:x + 28] = np.maximum(canvas[:, x:x + 28], moved)
  return canvas


def test_images_and_labels_are_the_digits_they_were_composed_from(shared_data):
  c = sequence_config(shared_data / 'mnist5k')
  splits = data.build(c)
  assert splits.info == {'num_classes': 11, 'max_length': 8, 'input_shape': (28, 256, 1)}
  for source in (splits.train, splits.test):
    batch = next(source.eval_batches(64))  # the whole split: 64 train, 30 test + padding
    r = source.recipes.arrays
    n = len(r['length'])
    assert batch['inputs'].shape == (64, 28, 256, 1) and batch['labels'].shape == (64, 8)
    for i in range(n):
      length = r['length'][i]
      assert 1 <= length <= 8
      gaps = np.diff(r['offsets'][i]) - 28
      assert 0 <= r['offsets'][i][0] <= c.data.max_gap
      assert c.data.min_gap <= gaps.min() and gaps.max() <= c.data.max_gap
      assert np.abs(r['shifts'][i]).max() <= c.data.max_shift
      expected = draw_by_hand(source.pool_images, r['digits'][i], r['offsets'][i],
                              r['shifts'][i], length, 256)
      np.testing.assert_array_equal(batch['inputs'][i, :, :, 0], expected)
      digits = source.pool_labels[r['digits'][i][:length]]
      assert batch['labels'][i].tolist() == (digits + 1).tolist() + [0] * (8 - length)
      assert batch['label_mask'][i].tolist() == [1.0] * length + [0.0] * (8 - length)
      assert batch['width'][i] == r['offsets'][i][length - 1] + 28
      assert not batch['inputs'][i, :, batch['width'][i]:].any()  # blank past the width
    # The eval padding rows carry nothing.
    assert batch['mask'].tolist() == [1.0] * n + [0.0] * (64 - n)
    assert not batch['label_mask'][n:].any() and not batch['width'][n:].any()


def test_train_and_test_strings_use_disjoint_digit_pools(shared_data):
  c = sequence_config(shared_data / 'mnist5k', num_train=2000, num_test=500)
  splits = data.build(c)
  digits = images.build_mnist(c)
  for source, pool in ((splits.train, digits.train), (splits.eval, digits.test),
                       (splits.test, digits.test)):
    np.testing.assert_array_equal(source.pool_images, pool.arrays['inputs'][..., 0])
  used = lambda source: {source.pool_images[d].tobytes()
                         for d in source.recipes.arrays['digits'].ravel()}
  train_digits = used(splits.train)
  assert len(train_digits) > 3000  # most of the 4,000 training digits appear
  assert not train_digits & (used(splits.eval) | used(splits.test))


def test_generation_is_seeded_and_resumable(shared_data):
  c = sequence_config(shared_data / 'mnist5k')
  a, b = data.build(c), data.build(c)
  for split in ('train', 'eval', 'test'):
    for key, value in getattr(a, split).recipes.arrays.items():
      np.testing.assert_array_equal(value, getattr(b, split).recipes.arrays[key])
  first = a.train.train_iterator(16, seed=1)
  straight = [next(first) for _ in range(6)]  # crosses an epoch of 4 batches
  resumed = b.train.train_iterator(16, seed=1)
  probe = a.train.train_iterator(16, seed=1)
  next(probe), next(probe), next(probe)
  resumed.set_state(probe.get_state())
  for expected in straight[3:]:
    got = next(resumed)
    for key in ('inputs', 'labels', 'width'):
      np.testing.assert_array_equal(got[key], expected[key])
  other = data.build(sequence_config(shared_data / 'mnist5k', seed=1))
  assert not np.array_equal(other.test.recipes.arrays['digits'], a.test.recipes.arrays['digits'])
  with pytest.raises(UserError, match='config.data.min_length'):
    data.build(sequence_config(shared_data / 'mnist5k', min_length=0))


def test_crnn_refuses_images_narrower_than_its_pooling():
  with pytest.raises(ModelConfigError, match='config.model.features'):
    CRNN(features=(8, 8, 8)).init(jax.random.key(0), jnp.zeros((1, 28, 4, 1)), jnp.ones(1))


def fixed_output_state(logits_BxTxK, frame_mask_BxT):
  """A stand-in TrainState whose model returns the given logits and frame mask."""
  return types.SimpleNamespace(
      params={}, model_state={}, variables=lambda params: {},
      apply_fn=lambda *args, **kwargs: (jnp.asarray(logits_BxTxK), jnp.asarray(frame_mask_BxT)))


def test_task_metrics_match_a_hand_computation():
  # Two frames, classes (blank, 1, 2, 3). Example 0: p(blank) = 0.6, p(1) = 0.4 on both
  # frames: best path '--' decodes '', but p('1') = 0.4*0.4 + 0.4*0.6 + 0.6*0.4 = 0.64 >
  # p('') = 0.36, so beam search finds '1'. Example 1 is certain of '2 3'; example 2 of
  # '3' on its one real frame; example 3 is eval padding.
  eps = 1e-9
  probs = np.full((4, 2, 4), eps)
  probs[0, :, 0], probs[0, :, 1] = 0.6, 0.4
  probs[1, 0, 2] = probs[1, 1, 3] = 1.0
  probs[2, 0, 3] = probs[2, 1, 0] = 1.0
  probs[3, :, 0] = 1.0
  frame_mask = np.array([[1, 1], [1, 1], [1, 0], [0, 0]], bool)
  batch = {'inputs': np.zeros((4, 28, 8, 1), np.float32), 'width': np.zeros(4, np.int32),
           'labels': np.array([[1, 0], [2, 3], [2, 0], [0, 0]], np.int32),
           'label_mask': np.array([[1, 0], [1, 1], [1, 0], [0, 0]], np.float32),
           'mask': np.array([1, 1, 1, 0], np.float32)}
  config = digits_ctc.get_config()
  config.decoding.beam_size = 4
  task = ctc_tasks.CTC(config, {'num_classes': 4})
  state = fixed_output_state(np.log(probs), frame_mask)
  out = jax.jit(lambda batch: task.eval_batch(state, batch))(batch)
  # -log p(y | x): 0.64 for '1'; 1 for '2 3'; example 2 reads '3' where '2' is written.
  np.testing.assert_allclose(out.sums['loss'], -math.log(0.64) - math.log(eps), rtol=1e-3)
  assert out.sums['count'] == 3
  metrics = task.finalize(jax.device_get(out.sums), jax.device_get(out.examples))
  # greedy: '' vs '1' (1 deletion), '2 3' exact, '3' vs '2' (1 substitution)
  assert metrics['sequence_accuracy'] == pytest.approx(1 / 3)
  assert metrics['cer'] == pytest.approx(2 / 4)
  # beam: '1' exact, '2 3' exact, '3' vs '2'
  assert metrics['beam_sequence_accuracy'] == pytest.approx(2 / 3)
  assert metrics['beam_cer'] == pytest.approx(1 / 4)
  assert metrics['loss'] == pytest.approx(float(out.sums['loss']) / 3)
  predicted = jax.jit(lambda batch: task.predict(state, batch))(batch)
  assert predicted['labels'][1, :2].tolist() == [2, 3]
  assert predicted['label_paddings'][1].tolist() == [0.0, 0.0]


def write_tiny_mnist(folder, per_class=10):
  """A mnist_5k.csv.gz of made-up digits: class d is a bright bar at rows 2d..2d+5."""
  rng = np.random.default_rng(0)
  lines = []
  for label in range(10):
    for _ in range(per_class):
      image = rng.integers(0, 40, (28, 28))
      image[2 * label + 2:2 * label + 8, 8:20] = 255
      lines.append(','.join(map(str, image.ravel().tolist() + [label])))
  with gzip.open(folder / images.CSV_NAME, 'wt') as f:
    f.write('\n'.join(lines) + '\n')


TINY_MODEL = {'features': (4, 8), 'hidden_size': 8, 'dropout_rate': 0.0}  # 4 columns a frame


@pytest.fixture(scope='module')
def tiny_run(tmp_path_factory):
  """A 20-step run of the real engine on made-up digits: (workdir, final state, test)."""
  folder = tmp_path_factory.mktemp('digits_ctc')
  write_tiny_mnist(folder)
  c = digits_ctc.get_config()
  c.data_dir = str(folder)
  c.data.update(num_train=256, num_eval=16, num_test=16, max_length=3)  # canvas 28 x 96
  c.model.update(TINY_MODEL)
  c.decoding.beam_size = 2
  c.optimizer.update(learning_rate=1e-2, warmup_steps=0)
  c.update(batch_size=16, eval_batch_size=16, num_steps=20, log_every=5, eval_every=20,
           checkpoint_every=20, progress_bar=False)
  state, test = loop.train_and_evaluate(c, folder / 'workdir', devices=jax.devices()[:1])
  return folder / 'workdir', state, test


def test_short_run_learns_and_logs_the_test_metrics(tiny_run):
  workdir, _, test = tiny_run
  records = reporting.read_metrics(workdir)
  losses = [r['loss'] for r in records if r['split'] == 'train']
  assert len(losses) == 4 and losses[-1] < 0.5 * losses[0]
  (logged,) = [r for r in records if r['split'] == 'test']
  for name in ('loss', 'sequence_accuracy', 'cer', 'beam_sequence_accuracy', 'beam_cer'):
    assert logged[name] == pytest.approx(test[name]), name
  assert 0.0 <= test['sequence_accuracy'] <= 1.0


def test_crnn_gives_one_frame_per_pooled_column(tiny_run):
  _, state, _ = tiny_run  # its weights: initialising a CRNN anew costs seconds of compiling
  apply = jax.jit(CRNN(num_classes=11, **TINY_MODEL).apply)
  variables = {'params': state.params, **state.model_state}
  for image_width, frames in ((96, 24), (30, 7)):  # 30 columns: the pools drop the last 2
    width = jnp.array([image_width, 13, 0])
    logits, mask = apply(variables, jnp.zeros((3, 28, image_width, 1)), width)
    assert logits.shape == (3, frames, 11)
    np.testing.assert_array_equal(mask[1:], [[1] * 4 + [0] * (frames - 4), [0] * frames])
    assert mask[0].all()  # frame t is real iff 4 t < width: ceil(13 / 4) = 4 frames

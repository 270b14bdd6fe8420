"""MNIST loaders and the array pipeline: split counts, determinism, resume, sharding."""

import numpy as np
import pytest
import tensorflow_datasets as tfds

from experiments.configs import mnist_cnn
from train import data
from train.data import images, pipeline


def mnist_config(data_dir=None):
  c = mnist_cnn.get_config()
  c.data_dir = None if data_dir is None else str(data_dir)
  return c


def test_local_csv_split_is_stratified_and_deterministic(shared_data):
  splits = data.build(mnist_config(shared_data / 'mnist5k'))
  train, test = splits.train.arrays, splits.test.arrays
  assert (len(train['label']), len(test['label'])) == (4000, 1000)
  assert np.bincount(train['label']).tolist() == [400] * 10
  assert np.bincount(test['label']).tolist() == [100] * 10
  assert train['inputs'].shape == (4000, 28, 28, 1) and train['inputs'].max() <= 1.0
  again = data.build(mnist_config(shared_data / 'mnist5k'))
  np.testing.assert_array_equal(again.test.arrays['inputs'], test['inputs'])
  # No digit is in both splits.
  train_rows = {row.tobytes() for row in train['inputs']}
  assert not any(row.tobytes() in train_rows for row in test['inputs'])


def test_catalog_path_reads_tfds_without_tensorflow():
  with tfds.testing.mock_data(num_examples=24):
    splits = data.build(mnist_config())
  assert len(splits.train) == 24 and splits.train.arrays['inputs'].shape[1:] == (28, 28, 1)
  assert splits.info['num_classes'] == 10


def arrays(n=50):
  return {'inputs': np.arange(n, dtype=np.float32)[:, None], 'label': np.arange(n) % 3}


def take(iterator, k):
  return [next(iterator) for _ in range(k)]


def test_resumed_iterator_yields_the_same_batches():
  source = pipeline.ArraySource(arrays())
  straight = take(source.train_iterator(8, seed=3), 20)  # crosses 3 epochs of 6 batches
  first = source.train_iterator(8, seed=3)
  take(first, 7)
  resumed = source.train_iterator(8, seed=3)
  resumed.set_state(first.get_state())
  for a, b in zip(straight[7:], take(resumed, 13)):
    np.testing.assert_array_equal(a['inputs'], b['inputs'])


def test_epochs_visit_every_example_once_and_reshuffle():
  it = pipeline.ArraySource(arrays(48)).train_iterator(8, seed=0)
  epoch1 = np.concatenate([b['inputs'][:, 0] for b in take(it, 6)])
  epoch2 = np.concatenate([b['inputs'][:, 0] for b in take(it, 6)])
  assert sorted(epoch1) == sorted(epoch2) == list(range(48))
  assert not np.array_equal(epoch1, epoch2)


def test_process_shards_partition_the_global_batch():
  source = pipeline.ArraySource(arrays())
  whole = take(source.train_iterator(8, seed=1), 5)
  parts = [take(source.train_iterator(8, seed=1, shard=pipeline.Shard(i, 4)), 5)
           for i in range(4)]
  for step, batch in enumerate(whole):
    union = np.concatenate([p[step]['inputs'] for p in parts])
    assert sorted(union[:, 0]) == sorted(batch['inputs'][:, 0])


def test_eval_batches_pad_to_fixed_shape_and_mask_the_padding():
  batches = list(pipeline.ArraySource(arrays(50)).eval_batches(16))
  assert [b['inputs'].shape for b in batches] == [(16, 1)] * 4
  assert sum(b['mask'].sum() for b in batches) == 50
  real = np.concatenate([b['inputs'][b['mask'] > 0, 0] for b in batches])
  np.testing.assert_array_equal(real, np.arange(50))


def test_augmentation_is_deterministic_per_position():
  source = pipeline.ArraySource({'inputs': np.random.default_rng(0).random((16, 28, 28, 1)),
                                 'label': np.zeros(16, np.int32)}, images.random_shift)
  a, b = (take(source.train_iterator(8, seed=5), 3) for _ in range(2))
  for x, y in zip(a, b):
    np.testing.assert_array_equal(x['inputs'], y['inputs'])
  # Shifting moves pixels but never invents them: each image keeps at most its own mass.
  assert all(x['inputs'].sum() <= source.arrays['inputs'].sum() for x in a)


def test_empty_split_and_oversized_batch_are_named():
  with pytest.raises(ValueError, match='The split is empty'):
    pipeline.ArraySource({'inputs': np.zeros((0, 2))})
  with pytest.raises(ValueError, match='batch_size=64 is larger than the 50 training'):
    pipeline.ArraySource(arrays()).train_iterator(64, seed=0)

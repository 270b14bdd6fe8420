"""Residual CNN (nets/resnet.py) against NumPy; crop and flip augmentation; CIFAR-10 config."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import tensorflow_datasets as tfds
from ml_collections import ConfigDict
from numpy.lib.stride_tricks import sliding_window_view

from experiments.configs import cifar10_resnet
from nets import resnet
from train import loop
from train.data import images
from train.errors import UserError

KEY = jax.random.key(0)


def randomized(variables, seed=1):
  """`variables` with every leaf redrawn: weights N(0, 1/2), positive variances and scales."""
  leaves, tree = jax.tree.flatten_with_path(variables)
  rng = np.random.default_rng(seed)
  new = []
  for path, leaf in leaves:
    name = jax.tree_util.keystr(path)
    value = rng.normal(0.0, 0.7, leaf.shape)
    new.append(np.abs(value) + 0.5 if ("'var'" in name or "'scale'" in name) else value)
  return jax.tree.unflatten(tree, [jnp.asarray(v, jnp.float32) for v in new])


def conv_reference(x, kernel, stride):
  """Cross-correlation with k // 2 zeros on each side, output rows/columns 0, s, 2s, ..."""
  k = kernel.shape[0]
  padded = np.pad(x, ((0, 0), (k // 2, k // 2), (k // 2, k // 2), (0, 0)))
  windows = sliding_window_view(padded, (k, k), axis=(1, 2))  # B x H x W x C x k x k
  return np.einsum('bhwcuv,uvcf->bhwf', windows, kernel)[:, ::stride, ::stride]


def conv_bn_reference(x, params, stats, stride):
  """Eval-mode batch norm of the convolution: gamma (z - mean) / sqrt(var + eps) + beta."""
  z = conv_reference(x, np.asarray(params['Conv_0']['kernel'], np.float64), stride)
  bn, mov = params['BatchNorm_0'], stats['BatchNorm_0']
  return (np.asarray(bn['scale']) * (z - np.asarray(mov['mean']))
          / np.sqrt(np.asarray(mov['var']) + 1e-5) + np.asarray(bn['bias']))


def block_reference(x, variables, stride, residual):
  p, s = variables['params'], variables['batch_stats']
  relu = lambda v: np.maximum(v, 0.0)
  h = relu(conv_bn_reference(x, p['conv1'], s['conv1'], stride))
  y = conv_bn_reference(h, p['conv2'], s['conv2'], 1)
  if residual:
    y = y + (conv_bn_reference(x, p['projection'], s['projection'], stride)
             if 'projection' in p else x)
  return relu(y)


@pytest.mark.parametrize('channels,features,stride', [(6, 6, 1), (4, 6, 2), (4, 6, 1)])
@pytest.mark.parametrize('residual', [True, False])
def test_basic_block_matches_numpy_in_eval_mode(channels, features, stride, residual):
  block = resnet.BasicBlock(features, stride, residual)
  x = np.random.default_rng(2).normal(size=(3, 8, 8, channels)).astype(np.float32)
  variables = randomized(block.init(KEY, x, train=False))
  # A projection exactly when the shortcut must change the shape.
  assert ('projection' in variables['params']) == (residual and (stride, channels) != (1, 6))
  got = block.apply(variables, x, train=False)
  want = block_reference(x.astype(np.float64), variables, stride, residual)
  assert got.shape == (3, 8 // stride, 8 // stride, features)
  np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)


def test_plain_net_is_the_residual_net_without_shortcuts():
  kwargs = dict(stage_blocks=(2, 1), features=(4, 8), stem_features=4, num_outputs=3)
  x = jnp.asarray(np.random.default_rng(3).normal(size=(2, 12, 12, 1)), jnp.float32)
  res = randomized(resnet.ResNet(**kwargs).init(KEY, x))
  plain_model = resnet.ResNet(residual=False, **kwargs)
  plain = plain_model.init(KEY, x)
  # The plain net's variables are the residual net's minus the one projection (into stage 1).
  without = {c: {**v, 'stage1_block0': {k: b for k, b in v['stage1_block0'].items()
                                        if k != 'projection'}} for c, v in res.items()}
  assert jax.tree.structure(without) == jax.tree.structure(plain)
  assert 'projection' in res['params']['stage1_block0']
  # 2 * sum(stage_blocks) + 2 weighted layers: stem, 6 block convolutions, head.
  kernels = [p for p, _ in jax.tree.flatten_with_path(plain['params'])[0]
             if 'kernel' in jax.tree_util.keystr(p)]
  assert len(kernels) == 2 * 3 + 2
  # Same weights, different functions: the shortcuts change the logits.
  logits_plain = plain_model.apply(without, x)
  logits_res = resnet.ResNet(**kwargs).apply(res, x)
  assert np.abs(np.asarray(logits_plain) - np.asarray(logits_res)).max() > 1e-2


def test_stage_lengths_must_agree():
  with pytest.raises(ValueError, match=r'config.model.stage_blocks=\(1, 1\).*equal lengths'):
    resnet.ResNet(stage_blocks=(1, 1), features=(4, 8, 16)).init(KEY, jnp.zeros((1, 8, 8, 1)))


def test_pmap_batch_statistics_equal_one_device():
  """Under pmap each device sees 2 of 16 images; the synced statistics are the global ones."""
  kwargs = dict(stage_blocks=(1, 1), features=(4, 8), stem_features=4, num_outputs=3)
  x = jnp.asarray(np.random.default_rng(4).normal(size=(16, 8, 8, 1)), jnp.float32)
  variables = randomized(resnet.ResNet(**kwargs).init(KEY, x))
  one, one_state = resnet.ResNet(**kwargs).apply(variables, x, train=True,
                                                 mutable=['batch_stats'])
  synced = resnet.ResNet(batch_axis_name='batch', **kwargs)
  devices = jax.local_devices()[:8]
  assert len(devices) == 8
  run = jax.pmap(lambda v, xs: synced.apply(v, xs, train=True, mutable=['batch_stats']),
                 axis_name='batch', in_axes=(None, 0), devices=devices)
  many, many_state = run(variables, x.reshape(8, 2, 8, 8, 1))
  np.testing.assert_allclose(many.reshape(16, 3), one, rtol=1e-4, atol=1e-4)
  for replica in range(8):
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a[replica], b, rtol=1e-4, atol=1e-5),
                 many_state, one_state)


# --------------------------------------------------------------------------------------
# Augmentation (train/data/images.py) and the CIFAR-10 config.

def augment_config(**fields):
  return ConfigDict({'augment': True, 'crop_padding': 2, 'flip': False, **fields})


def crop_flip_reference(images_BxHxWxC, seed, padding):
  """Draw order of the pipeline: all crop offsets, then all flip coins."""
  rng = np.random.default_rng(seed)
  offsets = rng.integers(0, 2 * padding + 1, size=(len(images_BxHxWxC), 2))
  flips = rng.random(len(images_BxHxWxC)) < 0.5
  h, w = images_BxHxWxC.shape[1:3]
  out = []
  for image, (dy, dx), flip in zip(images_BxHxWxC, offsets, flips):
    canvas = np.zeros((h + 2 * padding, w + 2 * padding, image.shape[2]), image.dtype)
    canvas[padding:padding + h, padding:padding + w] = image
    crop = canvas[dy:dy + h, dx:dx + w]
    out.append(crop[:, ::-1] if flip else crop)
  return np.stack(out), flips


def test_crop_and_flip_match_numpy_and_keep_shapes_and_labels():
  rng = np.random.default_rng(0)
  batch = {'inputs': rng.random((32, 10, 12, 3)).astype(np.float32),
           'label': rng.integers(0, 10, 32), 'mask': np.ones(32, np.float32)}
  augment = images.augmentation(augment_config(crop_padding=3, flip=True), flips_allowed=True)
  got = augment(dict(batch), np.random.default_rng(7))
  want, flips = crop_flip_reference(batch['inputs'], 7, 3)
  np.testing.assert_array_equal(got['inputs'], want)
  assert got['inputs'].shape == batch['inputs'].shape and got['inputs'].dtype == np.float32
  np.testing.assert_array_equal(got['label'], batch['label'])
  np.testing.assert_array_equal(got['mask'], batch['mask'])
  assert 0 < flips.sum() < 32  # both branches were exercised
  # Off: no augmentation at all; padding 0 and no flip: nothing to do either.
  assert images.augmentation(augment_config(augment=False, flip=True), True) is None
  same = images.augmentation(augment_config(crop_padding=0), True)(dict(batch), rng)
  np.testing.assert_array_equal(same['inputs'], batch['inputs'])


def test_digits_refuse_flips_and_bad_paddings_are_named():
  with pytest.raises(UserError, match='config.data.flip=True'):
    images.augmentation(augment_config(flip=True), flips_allowed=False)
  with pytest.raises(UserError, match='config.data.crop_padding=-1'):
    images.augmentation(augment_config(crop_padding=-1), flips_allowed=True)


def test_cifar10_config_builds_resnet20_on_mock_catalog_data(tmp_path):
  c = cifar10_resnet.get_config()
  c.update(tfds_data_dir=str(tmp_path), eval_batch_size=100)
  with tfds.testing.mock_data(num_examples=200):
    exp = loop.build(c, jax.devices()[:1])
  batch = next(exp.train_iter)
  assert batch['inputs'].shape == (128, 32, 32, 3) and exp.splits.info['num_classes'] == 10
  # ResNet-20 of the paper (with 1x1 projections, which the paper's option A lacks).
  assert sum(p.size for p in jax.tree.leaves(exp.state.params)) == 272_474
  assert exp.num_steps == 64_000

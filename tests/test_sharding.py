"""Logical-axis sharding of the Transformer family on 8 simulated devices; bfloat16, remat
and scanned layer stacks (nets/scale.py, train/parallel.py)."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import PartitionSpec as P

from conftest import SHARED_DATA
from experiments.configs import shakespeare_gpt
from nets.bert import BERT
from nets import scale
from nets.gpt import GPT
from train import loop, reporting
from train import state as state_lib
from train.errors import UserError


@pytest.fixture(scope='module')
def tfds_dir(tmp_path_factory):
  """One prepared copy of the corpus for every run of this module."""
  return tmp_path_factory.mktemp('tfds')


def gpt_config(shared_data, tfds_dir, **overrides):
  """A 2-layer GPT (D = 32, 4 heads, MLP 128) on Tiny Shakespeare's 65 characters."""
  c = shakespeare_gpt.get_config()
  c.update(data_dir=str(shared_data / 'tinyshakespeare'), tfds_data_dir=str(tfds_dir),
           batch_size=8, eval_batch_size=64, num_steps=4, log_every=1, eval_every=1000,
           checkpoint_every=2, progress_bar=False, mesh_shape=(4, 2),
           mesh_axes=('data', 'model'))
  c.data.seq_len = 16
  c.model.update(num_layers=2, model_dim=32, max_len=16)
  c.optimizer.update(warmup_steps=0, schedule='constant')  # a run to step 2 is a prefix
  c.update(overrides)
  return c


def train_losses(workdir):
  return [r['loss'] for r in reporting.read_metrics(workdir) if r['split'] == 'train']


# The specs the rules of train/parallel.py give four GPT parameters on a (data 4, model 2)
# mesh (the vocabulary: 65 characters and the pad).
EXPECTED = {
    'data': {'query': P(None, None, None), 'wi': P(None, None), 'wo': P(None, None),
             'embed': P(None, None)},
    'fsdp': {'query': P('data', None, None), 'wi': P('data', None), 'wo': P(None, 'data'),
             'embed': P(None, 'data')},
    'tensor': {'query': P(None, 'model', None), 'wi': P(None, 'model'),
               'wo': P('model', None), 'embed': P('model', None)},
    'fsdp_tensor': {'query': P('data', 'model', None), 'wi': P('data', 'model'),
                    'wo': P('model', 'data'), 'embed': P('model', 'data')},
}
PATHS = {'query': 'block_1/self_attention/query/kernel', 'wi': 'block_0/mlp/wi/kernel',
         'wo': 'block_0/mlp/wo/kernel', 'embed': 'embed/embedding'}


def leaf(tree, path):
  for key in path.split('/'):
    tree = tree[key]
  return tree


def adam_moment(opt_state, path):
  """Adam's first moment of the parameter at `path` (it mirrors the parameter)."""
  (moment,) = [x for p, x in jax.tree_util.tree_leaves_with_path(opt_state)
               if jax.tree_util.keystr(p, simple=True, separator='/').endswith('mu/' + path)]
  return moment


@pytest.fixture(scope='module')
def one_device(tmp_path_factory, tfds_dir):
  """Parameters and training losses of the run on one device."""
  if not SHARED_DATA.is_dir():
    pytest.skip(f'{SHARED_DATA} is absent (it only exists on the project machines).')
  workdir = tmp_path_factory.mktemp('one')
  state, _ = loop.train_and_evaluate(gpt_config(SHARED_DATA, tfds_dir, mesh_shape=(1, 1)),
                                     workdir / 'run', devices=jax.devices()[:1])
  return jax.device_get(state.params), train_losses(workdir / 'run')


@pytest.mark.parametrize('mode', sorted(EXPECTED))
def test_each_sharding_places_parameters_by_its_rules_and_trains_as_one_device(
    mode, one_device, shared_data, tfds_dir, tmp_path):
  state, _ = loop.train_and_evaluate(gpt_config(shared_data, tfds_dir, sharding=mode),
                                     tmp_path / 'run', devices=jax.devices())
  for name, path in PATHS.items():
    param = leaf(state.params, path)
    assert param.sharding.spec == EXPECTED[mode][name], (mode, name)
    assert adam_moment(state.opt_state, path).sharding.spec == EXPECTED[mode][name]
    # Each device holds 1/ways of the parameter.
    ways = int(np.prod([{'data': 4, 'model': 2}[a] for a in EXPECTED[mode][name] if a]))
    assert param.addressable_shards[0].data.size == param.size // ways
  params, losses = one_device
  np.testing.assert_allclose(train_losses(tmp_path / 'run'), losses, rtol=2e-5)
  assert_close_to_one_device(state.params, params)


def assert_close_to_one_device(sharded, params, steps=4, learning_rate=1e-3):
  """Equal up to float rounding, which Adam amplifies where a gradient is rounding noise:
  the attention key biases, to which softmax is invariant, may move by up to the learning
  rate a step either way; everything else agrees to 1e-4."""
  flat = jax.tree_util.tree_flatten_with_path(jax.device_get(sharded))[0]
  for (path, a), b in zip(flat, jax.tree.leaves(params)):
    noise_only = jax.tree_util.keystr(path).endswith("['key']['bias']")
    np.testing.assert_allclose(a, b, atol=steps * learning_rate if noise_only else 1e-4,
                               err_msg=jax.tree_util.keystr(path))


def test_a_checkpoint_written_under_one_mesh_resumes_under_another(one_device, shared_data,
                                                                   tfds_dir, tmp_path):
  """Steps 1-2 with FSDP + tensor parallelism on a 4 x 2 mesh, steps 3-4 with tensor
  parallelism on 2 x 4: the same parameters as 4 steps on one device."""
  first = gpt_config(shared_data, tfds_dir, sharding='fsdp_tensor', num_steps=2)
  loop.train_and_evaluate(first, tmp_path / 'run', devices=jax.devices())
  second = gpt_config(shared_data, tfds_dir, sharding='tensor', mesh_shape=(2, 4))
  state, _ = loop.train_and_evaluate(second, tmp_path / 'run', devices=jax.devices())
  assert leaf(state.params, PATHS['wi']).sharding.spec == P(None, 'model')
  assert len(leaf(state.params, PATHS['wi']).sharding.mesh.devices[0]) == 4
  assert_close_to_one_device(state.params, one_device[0])


def test_sharding_settings_are_checked(shared_data, tfds_dir):
  with pytest.raises(UserError, match="splits over a 'model' mesh axis"):
    loop.build(gpt_config(shared_data, tfds_dir, sharding='tensor', mesh_shape=(-1,),
                          mesh_axes=('data',)), jax.devices())
  with pytest.raises(UserError, match="config.sharding='zero' must be one of"):
    loop.build(gpt_config(shared_data, tfds_dir, sharding='zero'), jax.devices())
  with pytest.raises(UserError, match='logical_axis_rules entry'):
    loop.build(gpt_config(shared_data, tfds_dir, logical_axis_rules=(('embed', 'fsdp'),)),
               jax.devices())


def test_logical_axis_rules_override_the_preset(shared_data, tfds_dir, capsys):
  c = gpt_config(shared_data, tfds_dir, sharding='fsdp_tensor', logical_axis_rules=(
      ('mlp', None), ('embed', None), ('heads', ('data', 'model'))))
  exp = loop.build(c, jax.devices())
  assert leaf(exp.state.params, PATHS['wi']).sharding.spec == P(None, None)
  assert leaf(exp.state.params, PATHS['embed']).sharding.spec == P('model', None)
  # 8 ways do not divide the 4 heads, so they stay whole (and the run says so).
  assert leaf(exp.state.params, PATHS['query']).sharding.spec == P(None, None, None)
  assert f"{PATHS['query']} keeps its 'heads' axis of 4 whole" in capsys.readouterr().out


TOKENS = jax.random.randint(jax.random.key(1), (2, 12), 1, 50)


def test_the_models_name_their_parameters_axes():
  axes = state_lib.param_axes(GPT(vocab_size=50, num_layers=2, model_dim=16, num_heads=2),
                              TOKENS)
  assert axes['embed/embedding'] == ('vocab', 'embed')
  assert axes['block_0/self_attention/out/kernel'] == ('heads', 'kv', 'embed')
  assert axes['block_1/mlp_residual/norm/scale'] == ('embed',)
  scanned = state_lib.param_axes(
      GPT(vocab_size=50, num_layers=2, model_dim=16, num_heads=2, scan_layers=True), TOKENS)
  assert scanned['blocks/mlp/wi/kernel'] == ('layers', 'embed', 'mlp')
  bert = state_lib.param_axes(BERT(vocab_size=50, head='pretraining', num_layers=1,
                                   model_dim=16, num_heads=2), TOKENS)
  assert bert['encoder/token_embed/embedding'] == ('vocab', 'embed')
  assert bert['mlm_bias'] == ('vocab',)


def init(model):
  return nn.meta.unbox(model.init(jax.random.key(0), TOKENS))['params']


@pytest.mark.parametrize('cls', [GPT, BERT])
def test_a_scanned_stack_computes_what_the_loop_of_blocks_does(cls):
  kwargs = dict(vocab_size=50, num_layers=3, model_dim=16, num_heads=2)
  if cls is BERT:
    kwargs['head'] = 'none'  # the hidden states
  looped, scanned = cls(**kwargs), cls(**kwargs, scan_layers=True)
  loop_params = jax.tree.map(np.asarray, init(looped))
  params = scale.relayout_blocks(loop_params, scanned=True)  # block_i -> 'layers' axis
  assert jax.tree.map(jnp.shape, params) == jax.tree.map(jnp.shape, init(scanned))
  np.testing.assert_allclose(jax.jit(scanned.apply)({'params': params}, TOKENS),
                             jax.jit(looped.apply)({'params': loop_params}, TOKENS), atol=1e-5)
  back = scale.relayout_blocks(params, scanned=False)
  assert jax.tree.structure(back) == jax.tree.structure(loop_params)
  for a, b in zip(jax.tree.leaves(back), jax.tree.leaves(loop_params)):
    np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize('remat,scan', [('full', False), ('dots', True)])
def test_rematerialisation_changes_no_gradient(remat, scan):
  kwargs = dict(vocab_size=50, num_layers=2, model_dim=16, num_heads=2, scan_layers=scan,
                dropout_rate=0.1)
  plain, recomputed = GPT(**kwargs), GPT(**kwargs, remat=remat)
  params = init(plain)
  loss = lambda model: lambda p: jnp.sum(jnp.square(model.apply(
      {'params': p}, TOKENS, train=True, rngs={'dropout': jax.random.key(3)})))
  for a, b in zip(jax.tree.leaves(jax.jit(jax.grad(loss(plain)))(params)),
                  jax.tree.leaves(jax.jit(jax.grad(loss(recomputed)))(params))):
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)


def test_bfloat16_computes_with_float32_parameters_and_logits():
  kwargs = dict(vocab_size=50, num_layers=2, model_dim=32, num_heads=2)
  params = init(GPT(**kwargs))
  half = GPT(**kwargs, dtype='bfloat16')
  assert all(x.dtype == jnp.float32 for x in jax.tree.leaves(init(half)))
  logits = jax.jit(half.apply)({'params': params}, TOKENS)
  exact = jax.jit(GPT(**kwargs).apply)({'params': params}, TOKENS)
  assert logits.dtype == jnp.float32
  # bfloat16 keeps 8 bits of mantissa: close, not equal.
  assert 0 < np.max(np.abs(logits - exact)) < 0.05 * np.max(np.abs(exact))
  grads = jax.jit(jax.grad(lambda p: jnp.mean(half.apply({'params': p}, TOKENS))))(params)
  assert all(g.dtype == jnp.float32 for g in jax.tree.leaves(grads))

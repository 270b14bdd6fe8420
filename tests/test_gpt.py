"""GPT and the language-model task: cached decoding equals the full forward pass, the
output layer is the embedding, and a short Tiny Shakespeare run learns."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from experiments.configs import shakespeare_gpt
from nets.gpt import GPT
from train import generate, loop, reporting


@pytest.mark.parametrize('positional', ['learned', 'rotary'])
def test_cached_decoding_equals_the_full_forward_pass(positional):
  model = GPT(vocab_size=11, num_layers=2, num_heads=2, model_dim=16, max_len=8,
              positional=positional)
  tokens = jnp.asarray(np.random.default_rng(0).integers(1, 11, (2, 8)), jnp.int32)
  variables = model.init(jax.random.key(0), tokens)
  full = jax.jit(model.apply)(variables, tokens)
  cache = jax.eval_shape(lambda: model.apply(variables, tokens, decode=True,
                                             mutable=['cache'])[1]['cache'])
  cache = jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), cache)
  step = jax.jit(lambda cache, token: model.apply({**variables, 'cache': cache}, token,
                                                  decode=True, mutable=['cache']))
  for t in range(8):
    logits, state = step(cache, tokens[:, t:t + 1])
    cache = state['cache']
    np.testing.assert_allclose(logits[:, 0], full[:, t], rtol=1e-4, atol=1e-4)


def test_output_layer_is_the_input_embedding():
  model = GPT(vocab_size=11, num_layers=1, num_heads=2, model_dim=16, max_len=8)
  tokens = jnp.ones((1, 4), jnp.int32)
  params = model.init(jax.random.key(0), tokens)['params']
  shapes = [x.shape for x in jax.tree.leaves(params)]
  assert (11, 16) in shapes and (16, 11) not in shapes  # no separate output matrix
  # 1 block: embedding 11x16 + positions 8x16 + 2 LN + attention 4x(16x16+16) + MLP
  # 16x64+64+64x16+16 + final LN.
  expected = 11 * 16 + 8 * 16 + 2 * 32 + 4 * (16 * 16 + 16) + (16 * 64 + 64 + 64 * 16 + 16) + 32
  assert sum(x.size for x in jax.tree.leaves(params)) == expected


def test_a_short_shakespeare_run_learns(shared_data, tmp_path):
  c = shakespeare_gpt.get_config()
  c.update(data_dir=str(shared_data / 'tinyshakespeare'), tfds_data_dir=str(tmp_path / 'tfds'),
           num_steps=60, log_every=20, eval_every=60, checkpoint_every=60, progress_bar=False)
  c.optimizer.warmup_steps = 10
  c.model.update(num_layers=1, model_dim=32)
  _, test = loop.train_and_evaluate(c, tmp_path / 'run', devices=jax.devices()[:1])
  train = [r for r in reporting.read_metrics(tmp_path / 'run') if r['split'] == 'train']
  assert train[-1]['loss'] < train[0]['loss'] - 0.5  # from ~log(65) = 4.2 nats downwards
  assert test['perplexity'] == pytest.approx(math.exp(test['loss']))
  assert test['bits_per_token'] == pytest.approx(test['loss'] / math.log(2))
  assert test['loss'] < math.log(65) - 0.5  # well below a uniform guess over 65 characters


def test_generation_with_and_without_the_cache_gives_the_same_tokens():
  model = GPT(vocab_size=13, num_layers=2, num_heads=2, model_dim=16, max_len=16)
  prompt = jnp.asarray([[3, 5, 7, 1], [2, 2, 9, 4]], jnp.int32)
  params = model.init(jax.random.key(0), prompt)['params']
  run = jax.jit(lambda cache, top_k, top_p: generate.generate(
      model, params, prompt, jax.random.key(1), 10, 1.0, top_k, top_p, use_cache=cache),
                static_argnums=(0, 1, 2))
  for top_k, top_p in ((0, 1.0), (5, 0.9)):
    np.testing.assert_array_equal(run(True, top_k, top_p), run(False, top_k, top_p))
  # top_k = 1 is greedy: each token is the argmax after the previous ones.
  tokens = np.asarray(run(True, 1, 1.0))
  sequence = np.concatenate([np.asarray(prompt), tokens], axis=1)
  logits = model.apply({'params': params}, jnp.asarray(sequence))
  np.testing.assert_array_equal(np.argmax(logits[:, 3:-1], -1), tokens)

"""Sampling text from a language model (GPT): a prompt, then one token at a time.

    y_t ~ softmax(top_p(top_k(z_t / temperature)))        (train/decoding.py's filters)

With `use_cache=True` the prompt is run once through the model in decode mode, filling
the key-value cache, and each new token costs one position; without it every step runs
the model over the whole buffer (the causal mask makes later, still-empty positions
irrelevant). Both draw step t with the key fold_in(rng, t), so they give the same tokens.
"""

import jax
import jax.numpy as jnp

from train import decoding


def _choose(logits_BxV, rng, step, temperature, top_k, top_p):
  logits_BxV = decoding.apply_temperature(logits_BxV.astype(jnp.float32), temperature)
  logits_BxV = decoding.top_p_filter(decoding.top_k_filter(logits_BxV, top_k), top_p)
  return jax.random.categorical(jax.random.fold_in(rng, step), logits_BxV, axis=-1)


def generate(model, params, prompt_BxP, rng, num_tokens: int, temperature: float = 1.0,
             top_k: int = 0, top_p: float = 1.0, use_cache: bool = True) -> jax.Array:
  """The `num_tokens` tokens [B, N] that follow each prompt row (jit this)."""
  batch, prompt_len = prompt_BxP.shape
  total = prompt_len + num_tokens
  choose = lambda logits, step: _choose(logits, rng, step, temperature, top_k, top_p)

  if use_cache:
    empty = jnp.zeros((batch, total), jnp.int32)
    cache = jax.eval_shape(lambda: model.apply({'params': params}, empty, decode=True,
                                               mutable=['cache'])[1]['cache'])
    cache = jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), cache)
    run = lambda tokens, cache: model.apply({'params': params, 'cache': cache}, tokens,
                                            decode=True, mutable=['cache'])
    logits_BxPxV, state = run(prompt_BxP, cache)

    def step(carry, t):
      logits_BxV, cache = carry
      token_B = choose(logits_BxV, t)
      logits, state = run(token_B[:, None], cache)
      return (logits[:, -1], state['cache']), token_B

    _, tokens_NxB = jax.lax.scan(step, (logits_BxPxV[:, -1], state['cache']),
                                 jnp.arange(num_tokens))
    return tokens_NxB.T

  buffer = jnp.zeros((batch, total), jnp.int32).at[:, :prompt_len].set(prompt_BxP)

  def recompute(t, buffer):
    logits_BxTxV = model.apply({'params': params}, buffer)
    token_B = choose(logits_BxTxV[:, prompt_len + t - 1], t)
    return buffer.at[:, prompt_len + t].set(token_B)

  return jax.lax.fori_loop(0, num_tokens, recompute, buffer)[:, prompt_len:]

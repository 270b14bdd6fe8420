"""train/hf_convert.py: Hugging Face BERT and GPT-2 checkpoints become our parameters.

Everywhere: checkpoints written by hand with numpy (old gamma/beta names, prefixes, buffers)
convert to exactly the layout of our models' `init`, and our models then compute what a
NumPy transcription of the Hugging Face equations (x W^T + b, in HF's own key names)
computes; malformed directories give one clear error. Where torch and transformers are
installed, small random HF models saved with save_pretrained give the same logits, pooled
outputs and hidden states in our models as in PyTorch, to 1e-4.
"""

import json
import re
import sys

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from safetensors.numpy import save_file
from scipy.special import erf

from nets.bert import BERT
from nets.gpt import GPT
from train import hf_convert, transfer
from train.errors import UserError

V, D, N, F, P, LAYERS = 19, 8, 2, 12, 10, 2  # vocabulary, width, heads, MLP, positions
TOL = dict(rtol=1e-4, atol=1e-4)


# ------------------------------------------------------ NumPy transcriptions of HF models

def _layer_norm(x, w, name, eps):
  mean, var = x.mean(-1, keepdims=True), x.var(-1, keepdims=True)
  return (x - mean) / np.sqrt(var + eps) * w[f'{name}.weight'] + w[f'{name}.bias']


def _attention(q_BxTxD, k_BxSxD, v_BxSxD, visible_BxTxS):
  split = lambda x: x.reshape(*x.shape[:2], N, D // N)
  scores = np.einsum('btnh,bsnh->bnts', split(q_BxTxD), split(k_BxSxD)) / np.sqrt(D // N)
  scores = np.where(visible_BxTxS[:, None], scores, -np.inf)
  weights = np.exp(scores - scores.max(-1, keepdims=True))
  weights /= weights.sum(-1, keepdims=True)
  return np.einsum('bnts,bsnh->btnh', weights, split(v_BxSxD)).reshape(q_BxTxD.shape)


def _bert_reference(w, tokens, segments, eps=1e-12):
  """HF BertForPreTraining (eval): (MLM logits, NSP logits, pooled, hidden states)."""
  linear = lambda x, name: x @ w[f'{name}.weight'].T + w[f'{name}.bias']
  norm = lambda x, name: _layer_norm(x, w, name, eps)
  gelu = lambda x: 0.5 * x * (1 + erf(x / np.sqrt(2)))
  h = norm(w['embeddings.word_embeddings.weight'][tokens]
           + w['embeddings.token_type_embeddings.weight'][segments]
           + w['embeddings.position_embeddings.weight'][:tokens.shape[1]], 'embeddings.LayerNorm')
  visible = np.broadcast_to((tokens != 0)[:, None, :], tokens.shape + tokens.shape[1:])
  for i in range(LAYERS):
    layer = lambda name: f'encoder.layer.{i}.{name}'
    a = _attention(*(linear(h, layer(f'attention.self.{p}')) for p in ('query', 'key', 'value')),
                   visible)
    h = norm(h + linear(a, layer('attention.output.dense')), layer('attention.output.LayerNorm'))
    m = linear(gelu(linear(h, layer('intermediate.dense'))), layer('output.dense'))
    h = norm(h + m, layer('output.LayerNorm'))
  pooled = np.tanh(linear(h[:, 0], 'pooler.dense'))
  x = norm(gelu(linear(h, 'cls.predictions.transform.dense')),
           'cls.predictions.transform.LayerNorm')
  mlm = x @ w['embeddings.word_embeddings.weight'].T + w['cls.predictions.bias']
  return mlm, linear(pooled, 'cls.seq_relationship'), pooled, h


def _gpt2_reference(w, tokens, eps=1e-5):
  """HF GPT2LMHeadModel (eval): LM logits. Conv1D computes x W + b."""
  conv = lambda x, name: x @ w[f'{name}.weight'] + w[f'{name}.bias']
  norm = lambda x, name: _layer_norm(x, w, name, eps)
  gelu = lambda x: 0.5 * x * (1 + np.tanh(np.sqrt(2 / np.pi) * (x + 0.044715 * x ** 3)))
  length = tokens.shape[1]
  h = w['wte.weight'][tokens] + w['wpe.weight'][:length]
  causal = np.tril(np.ones((1, length, length), bool))
  for i in range(LAYERS):
    q, k, v = np.split(conv(norm(h, f'h.{i}.ln_1'), f'h.{i}.attn.c_attn'), 3, axis=-1)
    h = h + conv(_attention(q, k, v, causal), f'h.{i}.attn.c_proj')
    h = h + conv(gelu(conv(norm(h, f'h.{i}.ln_2'), f'h.{i}.mlp.c_fc')), f'h.{i}.mlp.c_proj')
  return norm(h, 'ln_f') @ w['wte.weight'].T


# ------------------------------------------------------------- checkpoints written by hand

BERT_CONFIG = dict(model_type='bert', vocab_size=V, hidden_size=D, num_hidden_layers=LAYERS,
                   num_attention_heads=N, intermediate_size=F, max_position_embeddings=P,
                   type_vocab_size=2, hidden_act='gelu', layer_norm_eps=1e-12)
GPT2_CONFIG = dict(model_type='gpt2', vocab_size=V, n_embd=D, n_layer=LAYERS, n_head=N,
                   n_positions=P, activation_function='gelu_new', layer_norm_epsilon=1e-5)


def _random(shapes: dict, seed: int = 0) -> dict:
  """Random weights; LayerNorm weights near 1."""
  rng = np.random.default_rng(seed)
  return {k: (1.0 if k.endswith(('LayerNorm.weight', 'ln_1.weight', 'ln_2.weight',
                                 'ln_f.weight')) else 0.0)
          + 0.3 * rng.standard_normal(shape).astype(np.float32) for k, shape in shapes.items()}


def _bert_weights(seed: int = 0) -> dict:
  """BertForPreTraining's parameters, HF key names without the 'bert.' prefix."""
  linear = lambda name, out, fan_in: {f'{name}.weight': (out, fan_in), f'{name}.bias': (out,)}
  norm = lambda name: {f'{name}.weight': (D,), f'{name}.bias': (D,)}
  shapes = {'embeddings.word_embeddings.weight': (V, D),
            'embeddings.position_embeddings.weight': (P, D),
            'embeddings.token_type_embeddings.weight': (2, D), **norm('embeddings.LayerNorm'),
            **linear('pooler.dense', D, D), **linear('cls.predictions.transform.dense', D, D),
            **norm('cls.predictions.transform.LayerNorm'), 'cls.predictions.bias': (V,),
            **linear('cls.seq_relationship', 2, D)}
  for i in range(LAYERS):
    layer = f'encoder.layer.{i}'
    for p in ('query', 'key', 'value'):
      shapes.update(linear(f'{layer}.attention.self.{p}', D, D))
    shapes.update({**linear(f'{layer}.attention.output.dense', D, D),
                   **norm(f'{layer}.attention.output.LayerNorm'),
                   **linear(f'{layer}.intermediate.dense', F, D),
                   **linear(f'{layer}.output.dense', D, F), **norm(f'{layer}.output.LayerNorm')})
  return _random(shapes, seed)


def _gpt2_weights(seed: int = 0) -> dict:
  """GPT2LMHeadModel's parameters, HF key names without the 'transformer.' prefix."""
  conv = lambda name, fan_in, out: {f'{name}.weight': (fan_in, out), f'{name}.bias': (out,)}
  norm = lambda name: {f'{name}.weight': (D,), f'{name}.bias': (D,)}
  shapes = {'wte.weight': (V, D), 'wpe.weight': (P, D), **norm('ln_f')}
  for i in range(LAYERS):
    shapes.update({**norm(f'h.{i}.ln_1'), **conv(f'h.{i}.attn.c_attn', D, 3 * D),
                   **conv(f'h.{i}.attn.c_proj', D, D), **norm(f'h.{i}.ln_2'),
                   **conv(f'h.{i}.mlp.c_fc', D, 4 * D), **conv(f'h.{i}.mlp.c_proj', 4 * D, D)})
  return _random(shapes, seed)


def _write(directory, config: dict, weights: dict):
  directory.mkdir(parents=True, exist_ok=True)
  (directory / 'config.json').write_text(json.dumps(config))
  save_file(weights, str(directory / 'model.safetensors'))
  return directory


def _old_style(weights: dict, prefix: str) -> dict:
  """Keys as old TF-converted files have them: prefixed, LayerNorm gamma / beta."""
  rename = lambda k: k.replace('LayerNorm.weight', 'LayerNorm.gamma').replace(
      'LayerNorm.bias', 'LayerNorm.beta')
  return {(k if k.startswith('cls.') else prefix + rename(k)): v for k, v in weights.items()}


def _inputs(seed: int = 1):
  """Tokens [3, 7] from 1..V-1 with pad id 0 ending two rows, and two segments."""
  rng = np.random.default_rng(seed)
  tokens = rng.integers(1, V, (3, 7))
  tokens[1, 5:], tokens[2, 3:] = 0, 0
  segments = (np.arange(7) >= 3).astype(np.int64)[None].repeat(3, 0) * (tokens != 0)
  return tokens, segments


def _shapes(tree):
  return jax.tree.map(lambda x: x.shape, tree)


def _init_shapes(model, *inputs):
  return _shapes(jax.eval_shape(lambda: _init(model, *inputs)))


def _init(model, *inputs):
  variables = model.init(jax.random.key(0), *(jnp.asarray(x, jnp.int32) for x in inputs))
  return nn.meta.unbox(variables)['params']


def _apply(model, params, *inputs):
  apply = jax.jit(lambda params, *inputs: model.apply({'params': params}, *inputs))
  return jax.tree.map(np.asarray, apply(params, *(jnp.asarray(x, jnp.int32) for x in inputs)))


def test_a_handwritten_bert_pretraining_checkpoint_computes_hf_bert(tmp_path):
  weights = _bert_weights()
  buffer = {'bert.embeddings.position_ids': np.arange(P, dtype=np.int64)[None]}
  directory = _write(tmp_path, BERT_CONFIG, {**_old_style(weights, 'bert.'), **buffer})
  name, kwargs, params = hf_convert.load(str(directory))
  assert name == 'bert' and kwargs == dict(vocab_size=V, num_layers=LAYERS, num_heads=N,
                                           model_dim=D, mlp_dim=F, max_len=P,
                                           type_vocab_size=2, norm_epsilon=1e-12, norm='post')
  tokens, segments = _inputs()
  model = BERT(**kwargs, head='pretraining')
  assert _shapes(params) == _init_shapes(model, tokens, segments)
  assert all(x.dtype == np.float32 for x in jax.tree.leaves(params))
  mlm, pair = _apply(model, params, tokens, segments)
  want_mlm, want_pair, _, _ = _bert_reference(weights, tokens, segments)
  np.testing.assert_allclose(mlm, want_mlm, **TOL)
  np.testing.assert_allclose(pair, want_pair, **TOL)


def test_a_handwritten_gpt2_checkpoint_computes_hf_gpt2(tmp_path):
  weights = _gpt2_weights()
  # The hub's gpt2 file holds each layer's causal-mask buffer too; it is not a parameter.
  buffers = {f'h.{i}.attn.bias': np.tril(np.ones((1, 1, P, P), np.float32))
             for i in range(LAYERS)}
  name, kwargs, params = hf_convert.load(str(_write(tmp_path, GPT2_CONFIG,
                                                    {**weights, **buffers})))
  assert name == 'gpt' and kwargs == dict(vocab_size=V, num_layers=LAYERS, num_heads=N,
                                          model_dim=D, mlp_dim=4 * D, max_len=P,
                                          norm_epsilon=1e-5, mlp_activation='gelu',
                                          positional='learned')
  tokens, _ = _inputs()
  model = GPT(**kwargs)
  assert _shapes(params) == _init_shapes(model, tokens)
  np.testing.assert_allclose(_apply(model, params, tokens), _gpt2_reference(weights, tokens),
                             **TOL)


def test_a_base_model_gives_the_encoder_and_pooler_only(tmp_path):
  weights = {k: v for k, v in _bert_weights().items() if not k.startswith('cls.')}
  _, kwargs, params = hf_convert.load(str(_write(tmp_path, BERT_CONFIG, weights)))
  full = _init_shapes(BERT(**kwargs, head='pretraining'), *_inputs())
  assert _shapes(params) == {k: full[k] for k in ('encoder', 'pooler')}


def _drop(key):
  return lambda config, weights: (config, {k: v for k, v in weights.items() if k != key})


def _set_config(**changes):
  return lambda config, weights: ({**config, **changes}, weights)


def _add(key, value):
  return lambda config, weights: (config, {**weights, key: value})


@pytest.mark.parametrize('change, message', [
    (_set_config(model_type='roberta'), "'roberta'; only 'bert' and 'gpt2'"),
    (_set_config(hidden_act='gelu_new'), '"hidden_act": \'gelu_new\''),
    (_set_config(position_embedding_type='relative_key'), 'relative_key'),
    (_set_config(pad_token_id=1), '"pad_token_id": 1'),
    (_set_config(hidden_size=None), 'has no "hidden_size"'),
    (_set_config(num_hidden_layers=1), 'which bert has no parameter for (a layer beyond '
                                       'num_layers=1'),
    (_drop('encoder.layer.1.output.dense.bias'), "lacks 'encoder.layer.1.output.dense.bias'"),
    (_drop('cls.seq_relationship.bias'), "lacks 'cls.seq_relationship.bias', which the pair"),
    (_add('encoder.layer.0.adapter.weight', np.zeros(3, np.float32)),
     "'encoder.layer.0.adapter.weight', which bert has no"),
    (_add('cls.predictions.decoder.weight', np.ones((V, D), np.float32)),
     'untied output layer'),
    (_add('pooler.dense.weight', np.zeros((D, D + 1), np.float32)),
     "'pooler.dense.weight' has shape (8, 9)"),
], ids=['model_type', 'hidden_act', 'relative_positions', 'pad_id', 'missing_field',
        'extra_layer', 'missing_key', 'missing_head_key', 'unknown_key', 'untied_decoder',
        'wrong_shape'])
def test_a_checkpoint_the_models_cannot_represent_is_refused(tmp_path, change, message):
  config, weights = change(BERT_CONFIG, _bert_weights())
  _write(tmp_path, {k: v for k, v in config.items() if v is not None}, weights)
  with pytest.raises(UserError, match='^' + re.escape(str(tmp_path))) as error:
    hf_convert.load(str(tmp_path))
  assert message in str(error.value)


def test_gpt2_activations_and_untied_heads(tmp_path):
  _, kwargs, _ = hf_convert.load(str(_write(tmp_path / 'exact', {
      **GPT2_CONFIG, 'activation_function': 'gelu'}, _gpt2_weights())))
  assert kwargs['mlp_activation'] == 'gelu_exact'  # HF's 'gelu' is the exact one
  for key, value in [('activation_function', 'swish'), ('tie_word_embeddings', False),
                     ('scale_attn_by_inverse_layer_idx', True)]:
    _write(tmp_path / key, {**GPT2_CONFIG, key: value}, _gpt2_weights())
    with pytest.raises(UserError, match=f'"{key}": {value!r}.*cannot represent'):
      hf_convert.load(str(tmp_path / key))


def test_a_malformed_directory_gets_one_clear_sentence(tmp_path, monkeypatch):
  with pytest.raises(UserError, match='config.json cannot be read .*save_pretrained'):
    hf_convert.load(str(tmp_path / 'absent'))
  (tmp_path / 'config.json').write_text('{"model_type": ')
  with pytest.raises(UserError, match='config.json is not valid JSON'):
    hf_convert.load(str(tmp_path))
  (tmp_path / 'config.json').write_text(json.dumps(BERT_CONFIG))
  with pytest.raises(UserError, match='neither model.safetensors nor pytorch_model.bin'):
    hf_convert.load(str(tmp_path))
  (tmp_path / 'model.safetensors').write_bytes(b'\x10\x00\x00\x00\x00\x00\x00\x00{"a": ')
  with pytest.raises(UserError, match='model.safetensors cannot be read as safetensors'):
    hf_convert.load(str(tmp_path))
  (tmp_path / 'model.safetensors').unlink()
  (tmp_path / 'pytorch_model.bin').write_bytes(b'not a pickle')
  monkeypatch.setitem(sys.modules, 'torch', None)  # `import torch` raises ImportError
  with pytest.raises(UserError, match='pytorch_model.bin is a PyTorch file.*needs torch'):
    hf_convert.load(str(tmp_path))


# --------------------------------------------------------- models saved by transformers

@pytest.fixture(scope='module')
def hf():
  pytest.importorskip('torch', reason='the PyTorch comparisons need torch')
  return pytest.importorskip('transformers', reason='the PyTorch comparisons need transformers')


def _save(model, directory, **kwargs):
  """Saves `model` after adding N(0, 0.3^2) noise to every parameter: HF's initial weights
  (std 0.02, LayerNorms 1 and 0) make every logit nearly 0 and every LayerNorm alike."""
  import torch  # here: the tests that need it are skipped without it
  torch.manual_seed(0)
  with torch.no_grad():
    for parameter in model.parameters():  # each tied matrix once
      parameter.add_(0.3 * torch.randn_like(parameter))
  model.eval().save_pretrained(str(directory), **kwargs)
  return str(directory)


def _torch(hf_model, **inputs):
  import torch  # here: the tests that need it are skipped without it
  with torch.no_grad():
    return hf_model(**{k: torch.as_tensor(v) for k, v in inputs.items()})


def _hf_bert(hf_model, tokens, segments):
  """HF's outputs for our inputs: pad id 0 is what HF's attention_mask hides."""
  return _torch(hf_model, input_ids=tokens, token_type_ids=segments,
                attention_mask=(tokens != 0).astype(np.int64))


def _bert_config(hf, **kwargs):
  return hf.BertConfig(vocab_size=V, hidden_size=D, num_hidden_layers=LAYERS,
                       num_attention_heads=N, intermediate_size=F, max_position_embeddings=P,
                       **kwargs)


@pytest.mark.parametrize('safe', [True, False], ids=['safetensors', 'pytorch_bin'])
def test_bert_for_pretraining_matches_pytorch(hf, tmp_path, safe):
  hf_model = hf.BertForPreTraining(_bert_config(hf)).eval()
  _, kwargs, params = hf_convert.load(_save(hf_model, tmp_path, safe_serialization=safe))
  tokens, segments = _inputs()
  model = BERT(**kwargs, head='pretraining')
  assert _shapes(params) == _init_shapes(model, tokens, segments)
  mlm, pair = _apply(model, params, tokens, segments)
  want = _hf_bert(hf_model, tokens, segments)
  np.testing.assert_allclose(mlm, want.prediction_logits.numpy(), **TOL)
  np.testing.assert_allclose(pair, want.seq_relationship_logits.numpy(), **TOL)


def test_bert_for_masked_lm_and_bert_model_match_pytorch(hf, tmp_path):
  tokens, segments = _inputs()
  mlm_model = hf.BertForMaskedLM(_bert_config(hf)).eval()
  _, kwargs, params = hf_convert.load(_save(mlm_model, tmp_path / 'mlm'))
  assert sorted(params) == ['encoder', 'mlm_bias', 'mlm_norm', 'mlm_transform']
  model = BERT(**kwargs, head='pretraining')
  heads = jax.eval_shape(lambda: _init(model, tokens, segments))  # the pooler and pair head
  heads = jax.tree.map(lambda x: np.zeros(x.shape, x.dtype), heads)
  mlm, _ = _apply(model, transfer.merge(heads, params)[0], tokens, segments)
  np.testing.assert_allclose(mlm, _hf_bert(mlm_model, tokens, segments).logits.numpy(),
                             **TOL)

  base = hf.BertModel(_bert_config(hf)).eval()
  _, kwargs, params = hf_convert.load(_save(base, tmp_path / 'base'))
  want = _hf_bert(base, tokens, segments)
  hidden = _apply(BERT(**kwargs, head='none'), params, tokens, segments)
  np.testing.assert_allclose(hidden, want.last_hidden_state.numpy(), **TOL)
  # The pooled output: a 'sequence' head whose classifier is the identity.
  identity = {'kernel': np.eye(D, dtype=np.float32), 'bias': np.zeros(D, np.float32)}
  pooled = _apply(BERT(**kwargs, head='sequence', num_outputs=D),
                  {**params, 'classifier': identity}, tokens, segments)
  np.testing.assert_allclose(pooled, want.pooler_output.numpy(), **TOL)


def test_bert_classifier_and_span_heads_match_pytorch(hf, tmp_path):
  tokens, segments = _inputs()
  classifier = hf.BertForSequenceClassification(_bert_config(hf, num_labels=3)).eval()
  _, kwargs, params = hf_convert.load(_save(classifier, tmp_path / 'sequence'))
  assert kwargs['num_outputs'] == 3 and sorted(params) == ['classifier', 'encoder', 'pooler']
  np.testing.assert_allclose(_apply(BERT(**kwargs, head='sequence'), params, tokens, segments),
                             _hf_bert(classifier, tokens, segments).logits.numpy(), **TOL)
  qa = hf.BertForQuestionAnswering(_bert_config(hf)).eval()
  _, kwargs, params = hf_convert.load(_save(qa, tmp_path / 'span'))
  start, end = _apply(BERT(**kwargs, head='span'), params, tokens, segments)
  want = _hf_bert(qa, tokens, segments)
  np.testing.assert_allclose(start, want.start_logits.numpy(), **TOL)
  np.testing.assert_allclose(end, want.end_logits.numpy(), **TOL)


def test_gpt2_lm_head_model_matches_pytorch(hf, tmp_path):
  hf_model = hf.GPT2LMHeadModel(hf.GPT2Config(vocab_size=V, n_embd=D, n_layer=LAYERS,
                                              n_head=N, n_positions=P)).eval()
  _, kwargs, params = hf_convert.load(_save(hf_model, tmp_path))
  tokens = np.random.default_rng(2).integers(0, V, (3, 7))  # GPT-2 has no pad id
  model = GPT(**kwargs)
  assert _shapes(params) == _init_shapes(model, tokens)
  np.testing.assert_allclose(_apply(model, params, tokens),
                             _torch(hf_model, input_ids=tokens).logits.numpy(), **TOL)

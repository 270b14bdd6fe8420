"""Hugging Face checkpoints -> this codebase's parameters: BERT and GPT-2.

A checkpoint is a directory holding config.json and the weights, model.safetensors (read
with numpy) or pytorch_model.bin (read with torch). `load(directory)` returns the name of
our model ('bert': nets/bert.py, 'gpt': nets/gpt.py), its keyword arguments (read from
config.json: the architecture only; dropout stays the run's choice), and the parameters,
numpy float32, in exactly the layout of that model's `init`.

PyTorch's Linear stores W [out, in] and computes y = x W^T + b; Flax's Dense stores the
kernel K [in, out] and computes y = x K + b, so K = W^T. GPT-2's Conv1D already stores
[in, out]. The attention projections split the D = N * H features into N heads of H,

    query / key / value:  K [D, N*H] -> [D, N, H],  b [N*H] -> [N, H]
    out:                  K [N*H, D] -> [N, H, D]

and GPT-2's fused c_attn is [query | key | value] along its output axis, K [D, 3D]. A
LayerNorm's weight / bias (gamma / beta in old TF-converted files) is our scale / bias.
The output layers that HF ties to the token embedding (cls.predictions.decoder, lm_head)
are that embedding in our models too: a checkpoint that stores them must store the same
values.

Keys may carry the 'bert.' / 'transformer.' prefix of the head models or not. The encoder
(GPT-2: the whole model) must be complete; each head (BERT: the pooler, the masked LM,
the pair head, a classifier, the span head) is converted when the checkpoint holds it and
is absent from the returned tree otherwise (a BertModel gives 'encoder' and 'pooler'), so
the caller merges the tree into its own initial parameters.
"""

import json
import math
import os
import pickle
import re
from typing import Callable, NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from safetensors import SafetensorError, safe_open

from nets.bert import BERT
from nets.gpt import GPT
from train.errors import UserError

CONFIG, SAFETENSORS, PYTORCH = 'config.json', 'model.safetensors', 'pytorch_model.bin'
Path = tuple[str, ...]
BASE = 'base model'  # the group of the keys every checkpoint must hold


class _Rule(NamedTuple):
  """What one checkpoint key becomes: its group (a head or the encoder) and our leaves."""
  group: str
  leaves: list[tuple[Path, Callable[[np.ndarray], np.ndarray]]]


_same = lambda w: w
# Our leaf and the conversion of each parameter of a PyTorch module, by the module's kind.
_KINDS = {
    'embed': {'weight': ('embedding', _same)},
    'norm': {'weight': ('scale', _same), 'bias': ('bias', _same)},
    'linear': {'weight': ('kernel', np.transpose), 'bias': ('bias', _same)},
    'conv': {'weight': ('kernel', _same), 'bias': ('bias', _same)},
}


def _module(table: dict, group: str, hf_module: str, path: Path, kind: str) -> None:
  for name, (leaf, convert) in _KINDS[kind].items():
    table[f'{hf_module}.{name}'] = _Rule(group, [(path + (leaf,), convert)])


def _bert_rules(num_layers: int) -> dict[str, _Rule]:
  table = {'cls.predictions.bias': _Rule('mlm', [(('mlm_bias',), _same)])}
  for hf_module, ours, kind in [('word_embeddings', 'token_embed', 'embed'),
                                ('token_type_embeddings', 'segment_embed', 'embed'),
                                ('position_embeddings', 'position_embed', 'embed'),
                                ('LayerNorm', 'embed_norm', 'norm')]:
    _module(table, BASE, f'embeddings.{hf_module}', ('encoder', ours), kind)
  for i in range(num_layers):
    hf, ours = f'encoder.layer.{i}', ('encoder', f'block_{i}')
    for projection in ('query', 'key', 'value'):
      _module(table, BASE, f'{hf}.attention.self.{projection}',
              ours + ('self_attention', projection), 'linear')
    for hf_module, our_module, kind in [
        ('attention.output.dense', ('self_attention', 'out'), 'linear'),
        ('attention.output.LayerNorm', ('attention_residual', 'norm'), 'norm'),
        ('intermediate.dense', ('mlp', 'wi'), 'linear'),
        ('output.dense', ('mlp', 'wo'), 'linear'),
        ('output.LayerNorm', ('mlp_residual', 'norm'), 'norm')]:
      _module(table, BASE, f'{hf}.{hf_module}', ours + our_module, kind)
  for hf_module, ours, kind in [('pooler.dense', 'pooler', 'linear'),
                                ('cls.predictions.transform.dense', 'mlm_transform', 'linear'),
                                ('cls.predictions.transform.LayerNorm', 'mlm_norm', 'norm'),
                                ('cls.seq_relationship', 'pair', 'linear'),
                                ('classifier', 'classifier', 'linear'),
                                ('qa_outputs', 'span', 'linear')]:
    _module(table, 'mlm' if ours.startswith('mlm') else ours, hf_module, (ours,), kind)
  return table


def _gpt2_rules(num_layers: int) -> dict[str, _Rule]:
  table = {}
  for hf_module, ours, kind in [('wte', ('embed',), 'embed'),
                                ('wpe', ('AddPositionalEncoding_0',), 'embed'),
                                ('ln_f', ('final_norm',), 'norm')]:
    _module(table, BASE, hf_module, ours, kind)
  for i in range(num_layers):
    hf, ours = f'h.{i}', (f'block_{i}',)
    for hf_module, our_module, kind in [
        ('ln_1', ('self_attention_residual', 'norm'), 'norm'),
        ('attn.c_proj', ('self_attention', 'out'), 'conv'),
        ('ln_2', ('mlp_residual', 'norm'), 'norm'),
        ('mlp.c_fc', ('mlp', 'wi'), 'conv'),
        ('mlp.c_proj', ('mlp', 'wo'), 'conv')]:
      _module(table, BASE, f'{hf}.{hf_module}', ours + our_module, kind)
    for name, leaf in [('weight', 'kernel'), ('bias', 'bias')]:
      table[f'{hf}.attn.c_attn.{name}'] = _Rule(BASE, [
          (ours + ('self_attention', projection, leaf),
           lambda w, i=i: np.split(w, 3, axis=-1)[i])
          for i, projection in enumerate(('query', 'key', 'value'))])
  return table


def _field(config: dict, name: str, path: str, default=None):
  if name not in config and default is None:
    raise UserError(f'{path} has no "{name}"; a Hugging Face config.json of this model '
                    'type always holds it: is the file complete?')
  return config.get(name, default)


def _refuse_unless(config: dict, name: str, allowed: tuple, default, path: str,
                   model: str) -> None:
  value = config.get(name, default)
  if value not in allowed:
    raise UserError(f'{path} has "{name}": {value!r}, which {model} cannot represent (it '
                    f'needs {" or ".join(map(repr, allowed))}); this checkpoint cannot be '
                    'converted.')


def _bert_kwargs(config: dict, path: str) -> dict:
  model = 'nets/bert.py\'s BERT (exact GELU, absolute positions, pad id 0, an encoder)'
  for name, allowed, default in [('hidden_act', ('gelu',), 'gelu'),
                                 ('position_embedding_type', ('absolute',), 'absolute'),
                                 ('pad_token_id', (0,), 0),
                                 ('is_decoder', (False,), False),
                                 ('add_cross_attention', (False,), False)]:
    _refuse_unless(config, name, allowed, default, path, model)
  return dict(vocab_size=_field(config, 'vocab_size', path),
              num_layers=_field(config, 'num_hidden_layers', path),
              num_heads=_field(config, 'num_attention_heads', path),
              model_dim=_field(config, 'hidden_size', path),
              mlp_dim=_field(config, 'intermediate_size', path),
              max_len=_field(config, 'max_position_embeddings', path),
              type_vocab_size=_field(config, 'type_vocab_size', path, 2),
              norm_epsilon=_field(config, 'layer_norm_eps', path, 1e-12), norm='post')


# HF's activation_function -> GPT's mlp_activation (HF 'gelu' is the exact one).
_GPT2_ACTIVATIONS = {'gelu_new': 'gelu', 'gelu_pytorch_tanh': 'gelu', 'gelu': 'gelu_exact',
                     'relu': 'relu'}


def _gpt2_kwargs(config: dict, path: str) -> dict:
  model = 'nets/gpt.py\'s GPT (tied output embedding, 1/sqrt(H) attention, no cross-attention)'
  _refuse_unless(config, 'activation_function', tuple(_GPT2_ACTIVATIONS), 'gelu_new', path,
                 model)
  for name, allowed, default in [('scale_attn_weights', (True,), True),
                                 ('scale_attn_by_inverse_layer_idx', (False,), False),
                                 ('add_cross_attention', (False,), False),
                                 ('tie_word_embeddings', (True,), True)]:
    _refuse_unless(config, name, allowed, default, path, model)
  model_dim = _field(config, 'n_embd', path)
  return dict(vocab_size=_field(config, 'vocab_size', path),
              num_layers=_field(config, 'n_layer', path),
              num_heads=_field(config, 'n_head', path),
              model_dim=model_dim,
              mlp_dim=config.get('n_inner') or 4 * model_dim,
              max_len=_field(config, 'n_positions', path),
              norm_epsilon=_field(config, 'layer_norm_epsilon', path, 1e-5),
              mlp_activation=_GPT2_ACTIVATIONS[config.get('activation_function', 'gelu_new')],
              positional='learned')


class _Family(NamedTuple):
  """How to convert one HF model_type."""
  model_name: str
  prefix: str  # of the base model's keys inside the head models
  kwargs: Callable[[dict, str], dict]
  rules: Callable[[int], dict[str, _Rule]]
  tied: dict[str, str]  # key -> the key it must equal
  buffers: str  # a regex of keys that hold no parameter (PyTorch buffers)


_FAMILIES = {
    'bert': _Family('bert', 'bert.', _bert_kwargs, _bert_rules,
                    {'cls.predictions.decoder.weight': 'embeddings.word_embeddings.weight',
                     'cls.predictions.decoder.bias': 'cls.predictions.bias'},
                    r'embeddings\.(position_ids|token_type_ids)'),
    'gpt2': _Family('gpt', 'transformer.', _gpt2_kwargs, _gpt2_rules,
                    {'lm_head.weight': 'wte.weight'}, r'h\.\d+\.attn\.(masked_)?bias'),
}


def _read_config(directory: str) -> dict:
  path = os.path.join(directory, CONFIG)
  try:
    with open(path, encoding='utf-8') as f:
      config = json.load(f)
  except OSError as error:
    raise UserError(f'{path} cannot be read ({error.strerror}); point config.init_from at a '
                    'directory saved by save_pretrained (config.json and the weights).'
                    ) from None
  except json.JSONDecodeError as error:
    raise UserError(f'{path} is not valid JSON ({error}).') from None
  model_type = config.get('model_type') if isinstance(config, dict) else None
  if model_type not in _FAMILIES:
    raise UserError(f'{path} has "model_type": {model_type!r}; only '
                    f'{" and ".join(map(repr, _FAMILIES))} checkpoints can be converted.')
  return config


def _read_safetensors(path: str) -> dict[str, np.ndarray]:
  try:
    with safe_open(path, framework='np') as f:
      return {key: f.get_tensor(key) for key in f.keys()}
  except (SafetensorError, OSError) as error:
    raise UserError(f'{path} cannot be read as safetensors ({error}); is the file cut?'
                    ) from None


def _read_pytorch(path: str) -> dict[str, np.ndarray]:
  try:
    import torch  # here: only .bin checkpoints need it, and the runtime does not pin it
  except ImportError:
    raise UserError(f'{path} is a PyTorch file, and reading it needs torch, which is not '
                    'installed; pip install torch, or save the checkpoint as safetensors '
                    '(save_pretrained(directory, safe_serialization=True)).') from None
  try:
    state = torch.load(path, map_location='cpu', weights_only=True)
  except (RuntimeError, OSError, EOFError, pickle.UnpicklingError) as error:
    raise UserError(f'{path} cannot be read by torch.load ({error}); is the file cut?'
                    ) from None
  return {key: value.float().numpy() for key, value in state.items()}


def _read_weights(directory: str) -> tuple[str, dict[str, np.ndarray]]:
  for name, read in [(SAFETENSORS, _read_safetensors), (PYTORCH, _read_pytorch)]:
    path = os.path.join(directory, name)
    if os.path.isfile(path):
      return path, read(path)
  raise UserError(f'{directory} holds neither {SAFETENSORS} nor {PYTORCH} (sharded '
                  'checkpoints are not supported); save the model there with '
                  'save_pretrained.')


def _normalise(weights: dict[str, np.ndarray], prefix: str, path: str) -> dict:
  """Keys without the head models' prefix, with gamma / beta renamed weight / bias."""
  out = {}
  for key, value in weights.items():
    name = key.removeprefix(prefix)
    name = re.sub(r'\.gamma$', '.weight', re.sub(r'\.beta$', '.bias', name))
    if name in out:
      raise UserError(f'{path} holds {name!r} twice (with and without {prefix!r}, or as '
                      'gamma/beta and weight/bias); keep one.')
    out[name] = value
  return out


def _merges(shape: tuple, expected: tuple) -> bool:
  """Whether `shape` is `expected` with runs of neighbouring axes multiplied together."""
  start = 0
  for dim in shape:
    stop = start + 1
    while stop < len(expected) and math.prod(expected[start:stop]) < dim:
      stop += 1
    if stop > len(expected) or math.prod(expected[start:stop]) != dim:
      return False
    start = stop
  return start == len(expected)


def _get(tree: dict, path: Path):
  for name in path:
    tree = tree[name]
  return tree


def _set(tree: dict, path: Path, value) -> None:
  for name in path[:-1]:
    tree = tree.setdefault(name, {})
  tree[path[-1]] = value


def _expected_shapes(model_name: str, kwargs: dict, groups: set[str]) -> dict:
  """Our model's parameter shapes for every head the checkpoint holds (no computation)."""
  tokens = jnp.zeros((1, 1), jnp.int32)
  if model_name == 'gpt':
    heads = [GPT(**kwargs)]
  else:
    heads = [BERT(**kwargs, head='pretraining')]
    heads += [BERT(**kwargs, head='span')] if 'span' in groups else []
    heads += [BERT(**kwargs, head='sequence')] if 'classifier' in groups else []
  shapes = {}
  for model in heads:
    boxed = jax.eval_shape(model.init, jax.random.key(0), tokens)
    shapes.update(nn.meta.unbox(boxed)['params'])
  return shapes


def load(directory: str) -> tuple[str, dict, dict]:
  """(model_name, model_kwargs, params) of the Hugging Face checkpoint in `directory`."""
  config = _read_config(directory)
  family = _FAMILIES[config['model_type']]
  kwargs = family.kwargs(config, os.path.join(directory, CONFIG))
  path, weights = _read_weights(directory)
  weights = _normalise(weights, family.prefix, path)
  rules = family.rules(kwargs['num_layers'])
  for key in weights:
    if key not in rules and key not in family.tied and not re.fullmatch(family.buffers, key):
      raise UserError(f'{path} holds {key!r}, which {family.model_name} has no parameter for '
                      f'(a layer beyond num_layers={kwargs["num_layers"]} in {CONFIG}, or '
                      'another architecture); this checkpoint cannot be converted.')
  groups = {rule.group for key, rule in rules.items() if key in weights} | {BASE}
  for key, rule in rules.items():
    if rule.group in groups and key not in weights:
      raise UserError(f'{path} lacks {key!r}, which the {rule.group} part of the checkpoint '
                      'needs; the file is incomplete.')
  for key, source in family.tied.items():
    if key in weights and not np.array_equal(weights[key], weights[source]):
      raise UserError(f'{path}: {key!r} differs from {source!r}, but {family.model_name} ties '
                      'them (one matrix); an untied output layer cannot be converted.')
  if 'classifier' in groups:
    kwargs['num_outputs'] = weights['classifier.weight'].shape[0]
  shapes = _expected_shapes(family.model_name, kwargs, groups)
  params = {}
  for key, rule in rules.items():
    if rule.group not in groups:
      continue
    for leaf_path, convert in rule.leaves:
      value, expected = convert(weights[key]), _get(shapes, leaf_path).shape
      if not _merges(value.shape, expected):
        raise UserError(f'{path}: {key!r} has shape {weights[key].shape}, which does not fit '
                        f'{CONFIG} (it becomes {"/".join(leaf_path)} of shape {expected}); '
                        'the weights and config.json disagree.')
      _set(params, leaf_path, np.ascontiguousarray(value.reshape(expected), np.float32))
  return family.model_name, kwargs, params

"""Flax linen modules, looked up by name (`config.model.name`). Never imports `train`."""

import flax.linen as nn

from nets.bow import BagOfWords
from nets.cnn import CNN
from nets.gat import GAT, GCN
from nets.gpt import GPT
from nets.mlp import MLP, ModelConfigError
from nets.transformer import NonAutoregressiveTransformer, Transformer

MODELS: dict[str, type[nn.Module]] = {
    'mlp': MLP,
    'cnn': CNN,
    'bag_of_words': BagOfWords,
    'gat': GAT,
    'gcn': GCN,
    'gpt': GPT,
    'transformer': Transformer,
    'nat_transformer': NonAutoregressiveTransformer,
}


def create(name: str, **kwargs) -> nn.Module:
  """Builds `MODELS[name](**kwargs)`, naming the bad field if the config is wrong."""
  if name not in MODELS:
    raise ModelConfigError(f'config.model.name={name!r} is not a known model; '
                           f'choose one of {sorted(MODELS)}.')
  cls = MODELS[name]
  unknown = sorted(set(kwargs) - set(cls.__dataclass_fields__))
  if unknown:
    known = sorted(f for f in cls.__dataclass_fields__ if f not in ('parent', 'name'))
    raise ModelConfigError(f'config.model has fields {unknown} that {cls.__name__} does not '
                           f'take; its fields are {known}.')
  return cls(**kwargs)

"""Flax linen modules, looked up by name (`config.model.name`). Never imports `train`."""

import flax.linen as nn

from nets.bert import BERT
from nets.bow import BagOfWords
from nets.cnn import CNN
from nets.crnn import CRNN
from nets.gat import GAT, GCN
from nets.gpt import GPT
from nets.mlp import MLP, ModelConfigError
from nets.patch_transformer import PatchTransformer
from nets.resnet import ResNet
from nets.rnn_classifier import RNNClassifier, RNNTagger
from nets.rnn_lm import RNNLM
from nets.rnn_seq2seq import RNNSeq2Seq
from nets.text_cnn import TextCNN
from nets.transformer import NonAutoregressiveTransformer, Transformer
from nets.window_ner import WindowClassifier
from nets.word2vec import Word2Vec

MODELS: dict[str, type[nn.Module]] = {
    'mlp': MLP,
    'bert': BERT,
    'cnn': CNN,
    'patch_transformer': PatchTransformer,
    'resnet': ResNet,
    'crnn': CRNN,
    'bag_of_words': BagOfWords,
    'gat': GAT,
    'gcn': GCN,
    'gpt': GPT,
    'rnn_lm': RNNLM,
    'rnn_tagger': RNNTagger,
    'rnn_classifier': RNNClassifier,
    'text_cnn': TextCNN,
    'window_ner': WindowClassifier,
    'transformer': Transformer,
    'nat_transformer': NonAutoregressiveTransformer,
    'rnn_seq2seq': RNNSeq2Seq,
    'word2vec': Word2Vec,
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

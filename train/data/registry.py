"""Datasets by name: `config.dataset` selects a builder `fn(config) -> Splits`."""

from typing import Callable

from ml_collections import ConfigDict

from train.data.pipeline import Splits
from train.errors import UserError

Builder = Callable[[ConfigDict], Splits]
_BUILDERS: dict[str, Builder] = {}


def register(name: str) -> Callable[[Builder], Builder]:
  def wrap(fn: Builder) -> Builder:
    _BUILDERS[name] = fn
    return fn
  return wrap


def names() -> list[str]:
  return sorted(_BUILDERS)


def build(config: ConfigDict) -> Splits:
  if config.dataset not in _BUILDERS:
    raise UserError(f'config.dataset={config.dataset!r} is not a known dataset; '
                     f'choose one of {names()}.')
  return _BUILDERS[config.dataset](config)

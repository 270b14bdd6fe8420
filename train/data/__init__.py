"""Input pipelines. Importing this package registers every dataset builder."""

from train.data import images, synthetic  # noqa: F401  (registration side effects)
from train.data import graph, sequence_tasks, text  # noqa: F401  (text and graph datasets)
from train.data.pipeline import ArraySource, Shard, Source, Splits
from train.data.registry import build, names, register

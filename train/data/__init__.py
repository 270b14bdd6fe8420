"""Input pipelines. Importing this package registers every dataset builder."""

from train.data import images, synthetic  # noqa: F401  (registration side effects)
from train.data import graph, sequence_tasks, text  # noqa: F401  (text and graph datasets)
from train.data import word2vec_corpus  # noqa: F401  (the word2vec corpus)
from train.data import digit_sequences  # noqa: F401  (MNIST digit strings for CTC)
from train.data.pipeline import ArraySource, Shard, Source, Splits
from train.data.registry import build, names, register

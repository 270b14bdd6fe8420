"""Input pipelines. Importing this package registers every dataset builder."""

from train.data import images, synthetic  # noqa: F401  (registration side effects)
from train.data import curves  # noqa: F401  (the 1-D regression curve)
from train.data import graph, sequence_tasks, text  # noqa: F401  (text and graph datasets)
from train.data import word2vec_corpus  # noqa: F401  (the word2vec corpus)
from train.data import digit_sequences  # noqa: F401  (MNIST digit strings for CTC)
from train.data import qa  # noqa: F401  (extractive questions on CoNLL-2003 sentences)
from train.data import bert_pretraining  # noqa: F401  (BERT's masked segment pairs)
from train.data.pipeline import ArraySource, Shard, Source, Splits
from train.data.registry import build, names, register

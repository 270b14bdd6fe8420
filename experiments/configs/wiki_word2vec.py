"""word2vec on 106 Wikipedia articles: skip-gram (default) or CBOW, negative sampling.

word2vec's settings: dimension 100, window 5, 5 negatives (noise ~ count^0.75), minimum
count 5, sub-sampling 1e-3, 5 epochs, SGD from 0.025 (skip-gram) or 0.05 (CBOW) falling
linearly to 1e-4 of it. Pick the architecture with the config argument, which also sets
its learning rate (`--config.model.architecture=cbow` alone would keep 0.025); the output
layer with --config.model.output=hierarchical|softmax (hierarchical: WordSim-353 0.43,
5x slower; softmax: about 170x slower). A step trains 512 chunks of 8 centres, each
chunk sharing 8 noise words (train/word2vec_pairs.py), as 32 successive SGD updates of 16
chunks (train/word2vec_task.py); an "example" in the logs is a chunk. The final
evaluation logs wordsim353, simlex999 and analogy (split test); experiments/word2vec.py
then shows neighbours, evaluates, exports the vectors and plots them.

Command:
  python -m experiments.main --config=experiments/configs/wiki_word2vec.py \
      --config.data_dir=../shared/data/wiki --workdir=workdirs/wiki_word2vec
  python -m experiments.main --config=experiments/configs/wiki_word2vec.py:cbow \
      --config.data_dir=../shared/data/wiki --workdir=workdirs/wiki_word2vec_cbow
Expected: skip-gram WordSim-353 0.267, SimLex-999 0.141, analogy 0.019 (seed 0; over seeds
          0-2: 0.246 / 0.135 / 0.017, gensim 4.4 with the same settings 0.238 / 0.120 /
          0.017); CBOW 0.274 / 0.102 / 0.011 (seeds 0-2: 0.246 / 0.088 / 0.011, gensim
          0.145 / -0.002 / 0.008). About 14 s end to end on 2 CPU cores, 3 s of it
          training: 757k corpus words/s for skip-gram (gensim, 2 workers: 404k), 837k for
          CBOW (gensim 1,055k), printed by experiments/benchmarks/word2vec_vs_gensim.py.
"""

from ml_collections import ConfigDict

from experiments.configs import default

LEARNING_RATES = {'skipgram': 0.025, 'cbow': 0.05}  # word2vec.c's defaults


def get_config(architecture: str = 'skipgram'):
  if architecture not in LEARNING_RATES:
    raise ValueError(f'wiki_word2vec.py:{architecture}: choose one of {sorted(LEARNING_RATES)}.')
  c = default.get_config()
  c.dataset = 'word2vec_corpus'
  c.data = ConfigDict({
      'corpus': 'enwiki-text.txt', 'min_count': 5, 'sample': 1e-3, 'window': 5,
      'negatives': 5, 'negative_pool': 8, 'chunk_len': 8,
      'wordsim353': 'wordsim353.tsv', 'simlex999': 'simlex999.txt',
      'analogy': 'questions-words.txt'})
  c.task = 'word2vec'
  c.model = ConfigDict({'name': 'word2vec', 'embed_dim': 100, 'architecture': architecture,
                        'output': 'negative'})
  c.optimizer.update(name='sgd', learning_rate=LEARNING_RATES[architecture],
                     schedule='linear', end_factor=1e-4, warmup_steps=0)
  c.batch_size = 512  # chunks of config.data.chunk_len centres, 4,096 centres a step
  c.chunks_per_update = 16  # applied as 32 successive SGD updates of 128 centres
  c.eval_batch_size = 1024  # words of the vocabulary
  c.num_steps = -1
  c.num_epochs = 5
  c.log_every = 100
  c.eval_every = 100_000  # the final evaluation only (the loop always runs it)
  c.checkpoint_every = 1000
  return c

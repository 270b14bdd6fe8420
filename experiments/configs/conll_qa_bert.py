"""Extractive question answering on CoNLL-2003 sentences with a small BERT from scratch.

The questions are generated (train/data/qa.py, 'conll_qa'): for each sentence and each
entity type in it, "which person ?" / "which location ?" / "which organisation ?" /
"which miscellaneous entity ?", answered by the FIRST entity of that type in the
sentence; [CLS] question [SEP] sentence [SEP] with segment ids 0 / 1 (16,785 / 4,106 /
4,083 questions from CoNLL's train / dev / test sentences). BERT (conll_bert's: 4 layers, 128
wide, 4 heads) with the span head scores each context sub-word as the answer's start and end
(task 'span_extraction', train/span_tasks.py); evaluation decodes the best span of at
most 30 sub-words and reports exact match and token-overlap F1 over sub-word positions.

Command:
  python -m experiments.main --config=experiments/configs/conll_qa_bert.py \
      --config.data_dir=../shared/data/conll2003 --workdir=workdirs/conll_qa_bert
Expected: test exact match 0.682, F1 0.789 (4,083 questions; dev 0.703 / 0.794) after
1,500 steps (2.9 epochs; 300 steps gave 0.437 / 0.623); by type, exact match PER 0.645,
LOC 0.737, ORG 0.673, MISC 0.648. About 280 s on 2 idle CPU cores.
"""

from experiments.configs import conll_bert


def get_config():
  c = conll_bert.get_config()
  c.dataset = 'conll_qa'
  del c.data['cls_sep']  # the examples already have [CLS] and [SEP]
  c.task = 'span_extraction'
  c.max_answer_len = 30
  c.model.head = 'span'
  return c

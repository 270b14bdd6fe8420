"""Tokenizers round-trip, share special ids, reload, and refuse a changed vocabulary."""

import numpy as np
import pytest

from train.data import tokenizers

CORPUS = ['the cat sat on the mat', 'the dog sat', 'a cat and a dog', 'the end']
TEXT = 'Ünïcode, tabs\tand  spaces\nnew lines and emoji 😀 [MASK] too'
SETTINGS = {'corpus': 'toy', 'vocab_size': 300, 'min_count': 1, 'model_type': 'bpe'}


def _train(kind, texts=CORPUS, directory=None, **overrides):
  return tokenizers.load_or_train(kind, lambda: texts, directory, **{**SETTINGS, **overrides})


def test_special_ids_are_shared():
  assert tokenizers.SPECIALS[tokenizers.PAD] == '<pad>'
  assert (tokenizers.PAD, tokenizers.UNK, tokenizers.BOS, tokenizers.EOS,
          tokenizers.MASK, tokenizers.CLS, tokenizers.SEP) == tuple(range(7))


def test_char_round_trip_and_unknown_characters():
  tok = _train('char', [TEXT])
  ids = tok.encode(TEXT)
  assert len(ids) == len(TEXT) and ids.min() >= len(tokenizers.SPECIALS)
  assert tok.decode(ids) == TEXT
  assert tok.vocab_size == len(tokenizers.SPECIALS) + len(set(TEXT))
  assert list(tok.encode('a#a')) == [tok.encode('a')[0], tokenizers.UNK, tok.encode('a')[0]]
  wrapped = [tokenizers.BOS, *tok.encode('ab'), tokenizers.EOS, tokenizers.PAD]
  assert tok.decode(wrapped) == 'ab'


def test_word_vocabulary_min_count_and_max_size():
  # Counts: the 4, cat 2, sat 2, a 2, dog 2, then on, mat, and, end once each.
  assert _train('word', min_count=2).tokens[7:] == ['the', 'a', 'cat', 'dog', 'sat']
  assert _train('word', vocab_size=9).tokens[7:] == ['the', 'a']
  tok = _train('word')
  assert tok.vocab_size == 7 + 9
  text = ' the  cat\tsat on\nthe mat '
  assert tok.decode(tok.encode(text)) == ' '.join(text.split())
  assert list(tok.encode('the zebra')) == [tok.tokens.index('the'), tokenizers.UNK]
  assert tok.decode(tok.encode('the zebra')) == 'the <unk>'


@pytest.mark.parametrize('model_type', ['bpe', 'unigram'])
def test_sentencepiece_round_trips_any_text(model_type):
  tok = _train('sentencepiece', CORPUS * 20, model_type=model_type)
  assert tok.vocab_size <= 300
  for text in [TEXT, '  leading and trailing  ', CORPUS[0]]:
    ids = tok.encode(text)
    assert tokenizers.PAD not in ids
    assert tok.decode(ids) == text.replace('[MASK]', '')  # decode drops specials
  assert tokenizers.MASK in tok.encode('a [MASK] b')  # BERT's specials are single ids
  batch = tok.encode_batch(['the cat', 'dog'])
  assert [list(b) for b in batch] == [list(tok.encode('the cat')), list(tok.encode('dog'))]


@pytest.mark.parametrize('kind', ['char', 'word', 'sentencepiece'])
def test_save_and_load_give_the_same_ids(kind, tmp_path):
  trained = _train(kind, CORPUS * 20, str(tmp_path))
  loaded = tokenizers.load(str(tmp_path))
  assert type(loaded) is type(trained) and loaded.vocab_size == trained.vocab_size
  assert list(loaded.encode(TEXT)) == list(trained.encode(TEXT))

  def must_not_train():
    raise AssertionError('a saved tokenizer must be loaded, not retrained')

  again = tokenizers.load_or_train(kind, must_not_train, str(tmp_path), **SETTINGS)
  assert list(again.encode(TEXT)) == list(trained.encode(TEXT))


def test_vocabulary_mismatch_with_a_checkpoint_is_named(tmp_path):
  _train('word', directory=str(tmp_path))
  with pytest.raises(ValueError, match=r'Vocabulary mismatch.*' + str(tmp_path)):
    _train('word', directory=str(tmp_path), vocab_size=100)
  with pytest.raises(ValueError, match='Vocabulary mismatch'):
    _train('char', directory=str(tmp_path))


def test_unknown_kind_and_missing_directory_are_named(tmp_path):
  with pytest.raises(ValueError, match='config.data.tokenizer'):
    _train('bytes')
  with pytest.raises(ValueError, match='no tokenizer was saved'):
    tokenizers.load(str(tmp_path))


@pytest.mark.parametrize('tok', [_train('char', [TEXT]), tokenizers.CharTokenizer('zax', {})])
def test_char_encode_matches_a_dictionary_lookup(tok):
  table = {c: i for i, c in enumerate(tok.tokens)}
  probe = TEXT[::-1] + '§zax'
  expected = [table.get(c, tokenizers.UNK) for c in probe]
  np.testing.assert_array_equal(tok.encode(probe), expected)

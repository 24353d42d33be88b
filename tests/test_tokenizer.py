"""Property and regression tests for `mie_lm.tokenizer` beyond the notebook's inline tests."""
import pytest
from hypothesis import given, settings, strategies as st

from mie_lm.corpora import python_docs
from mie_lm.tokenizer import SPECIAL_TOKENS, BPETokenizer, bytes_per_token


@pytest.fixture(scope="module")
def tok():
    return BPETokenizer.train(python_docs().train, vocab_size=1024)


@settings(max_examples=2000, deadline=None)
@given(st.text())
def test_round_trip_any_string(tok, s):
    assert tok.decode(tok.encode(s)) == s


@settings(max_examples=300, deadline=None)
@given(st.lists(st.sampled_from(["🦜", "日", "本", "\x00", "\n", " ", "é", "<|eos|>", "<|pad|>", "a"]), max_size=30).map("".join))
def test_round_trip_hard_alphabet(tok, s):
    ids = tok.encode(s, add_bos=True, add_eos=True)
    assert tok.decode(ids[1:-1]) == s
    assert tok.decode(ids, skip_special_tokens=True) == s
    assert ids.count(tok.eos_id) == 1  # literal "<|eos|>" text never becomes the control token


@settings(max_examples=200, deadline=None)
@given(st.lists(st.text(max_size=40), max_size=8))
def test_encode_batch_matches_encode(tok, texts):
    assert tok.encode_batch(texts, add_bos=True) == [tok.encode(t, add_bos=True) for t in texts]


def test_special_ids_and_vocab(tok):
    assert [tok.bos_id, tok.eos_id, tok.pad_id] == [0, 1, 2]
    assert len(tok) == tok.vocab_size == 1024
    assert [tok.tk.id_to_token(i) for i in range(3)] == list(SPECIAL_TOKENS)


def test_decode_accepts_numpy_and_torch(tok):
    import numpy as np
    import torch
    ids = tok.encode("tensor input")
    assert tok.decode(np.array(ids)) == tok.decode(torch.tensor(ids)) == "tensor input"
    with pytest.raises(ValueError, match="1-D sequence of ints"):
        tok.decode([[1, 2]])


def test_training_is_deterministic():
    texts = python_docs().train[:200]
    a, b = BPETokenizer.train(texts, vocab_size=600), BPETokenizer.train(texts, vocab_size=600)
    assert a.fingerprint == b.fingerprint


def test_train_accepts_a_generator():
    tok = BPETokenizer.train((t for t in ["abc abd", "abc"]), vocab_size=262, min_frequency=1)
    assert tok.decode(tok.encode("abc")) == "abc"


@pytest.mark.parametrize("bad, msg", [
    (dict(texts="one string"), "single str"),
    (dict(texts=["x"], vocab_size=258), "vocab_size=258"),
    (dict(texts=["x"], vocab_size=300.0), "vocab_size=300.0"),
    (dict(texts=[None]), "texts\\[0\\] must be a str, got NoneType"),
    (dict(texts=["ok\udc80"]), "not valid Unicode"),
    (dict(texts=[]), "empty corpus"),
])
def test_train_bad_input(bad, msg):
    with pytest.raises(ValueError, match=msg):
        BPETokenizer.train(**{"vocab_size": 300, **bad})


def test_load_rejects_a_tokenizer_without_specials(tmp_path):
    from tokenizers import Tokenizer, models
    path = tmp_path / "plain.json"
    Tokenizer(models.BPE()).save(str(path))
    with pytest.raises(ValueError, match="special tokens"):
        BPETokenizer.load(path)


def test_save_is_atomic_and_leaves_no_temp_file(tok, tmp_path):
    p = tok.save(tmp_path / "tok.json")
    assert p.exists() and not list(tmp_path.glob("*.tmp"))
    assert BPETokenizer.load(p).fingerprint == tok.fingerprint


def test_bytes_per_token_at_least_one(tok):
    assert bytes_per_token(tok, python_docs().valid) > 1.0


def test_special_tokens_of_a_foreign_tokenizer(tmp_path):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    raw = Tokenizer(models.BPE()); raw.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    raw.decoder = decoders.ByteLevel()
    raw.train_from_iterator(["a b c", "abc abc"], trainers.BpeTrainer(vocab_size=300, special_tokens=["<|endoftext|>"],
                                                                     initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    with pytest.raises(ValueError, match="lacks the special tokens"): BPETokenizer(raw)
    gpt2_roles = ("<|endoftext|>",) * 3  # GPT-2: one token begins, ends and pads
    tok = BPETokenizer(raw, gpt2_roles)
    assert tok.bos_id == tok.eos_id == tok.pad_id == raw.token_to_id("<|endoftext|>") and tok.special_tokens == gpt2_roles
    assert tok.decode(tok.encode("a <|endoftext|> b")) == "a <|endoftext|> b"  # the name in text stays text
    assert tok.encode("x", add_bos=True, add_eos=True)[::2] == [tok.bos_id, tok.eos_id]
    path = tmp_path / "tokenizer.json"; path.write_text(raw.to_str())
    assert BPETokenizer.load(path, gpt2_roles).special_tokens == gpt2_roles
    with pytest.raises(ValueError, match="lacks the special tokens"): BPETokenizer.load(path)

"""Tests of `mie_lm.data` and the corpora it reads: bad inputs, WikiText from a local copy, the shift, memmap packing."""
import os

os.environ["HF_DATASETS_OFFLINE"] = os.environ["HF_HUB_OFFLINE"] = "1"  # set before `datasets` is imported: never download

import subprocess
import sys

import numpy as np
import pytest
import torch
from hypothesis import given, settings, strategies as st
from tokenizers import Tokenizer, models

from mie_lm.corpora import Corpus, get_corpus, python_docs, synthetic, text_files, wikitext
from mie_lm.data import (IGNORE_INDEX, LMDataset, PackedDataset, collate_lm, corpus_stats, lm_dataloader,
                         pack_tokens, packed_tokens, plot_doc_lengths, plot_shift)
from mie_lm.tokenizer import BPETokenizer


@pytest.fixture(scope="module")
def tok():
    return BPETokenizer.train(python_docs().train, vocab_size=512)


# ---- bad inputs -----------------------------------------------------------------------------------

@pytest.mark.parametrize("block_size", [0, -1, 1.5, None, True])
def test_bad_block_size(tok, block_size):
    with pytest.raises(ValueError, match=f"block_size must be an int >= 1, got {block_size!r}"):
        LMDataset(["hello"], tok, block_size)
    with pytest.raises(ValueError, match="block_size must be an int >= 1"):
        PackedDataset(np.arange(100, dtype=np.uint16), block_size)


@pytest.mark.parametrize("docs", [[], (), "a string"])
def test_empty_corpus(tok, docs):
    with pytest.raises(ValueError, match="empty corpus"):
        LMDataset(docs, tok, 8)


def test_empty_docs(tok):
    with pytest.raises(ValueError, match="all 3 documents are empty strings"):
        LMDataset(["", "", ""], tok, 8)
    with pytest.raises(ValueError, match="empty corpus: the 1 documents hold no text"):
        pack_tokens([""], tok, progress=False)
    with pytest.raises(ValueError, match="empty corpus: the 0 documents"):
        packed_tokens(Corpus("empty", [], []), tok, progress=False)


def test_corpus_shorter_than_one_block(tok):
    stream = pack_tokens(["one two three"], tok, progress=False)
    with pytest.raises(ValueError, match=f"the corpus has {len(stream)} tokens, shorter than one block of block_size \\+ 1 = 101"):
        PackedDataset(stream, 100)
    with pytest.raises(ValueError, match="shorter than one block"):
        PackedDataset.from_corpus(Corpus("tiny", ["one two"], ["x"]), tok, 100)


class _NoSpecials:
    "A tokenizer-like object whose special-token ids are missing."
    bos_id, eos_id, pad_id, vocab_size = None, 1, None, 300
    def encode_batch(self, texts, add_bos=False, add_eos=False): return [[3] for _ in texts]


@pytest.mark.parametrize("bad", [_NoSpecials(), Tokenizer(models.BPE()), "gpt2"])
def test_tokenizer_without_specials(bad):
    for make in (lambda: LMDataset(["hi"], bad, 8), lambda: pack_tokens(["hi"], bad, progress=False)):
        with pytest.raises(ValueError, match="lacks .*use a `BPETokenizer`"):
            make()


def test_missing_files_and_folders(tmp_path):
    with pytest.raises(FileNotFoundError, match="no such file or folder: .*nope.txt"):
        text_files(tmp_path / "nope.txt")
    with pytest.raises(FileNotFoundError, match="has no files matching '\\*.txt'"):
        text_files(tmp_path)
    with pytest.raises(FileNotFoundError, match="no files match the glob"):
        text_files(str(tmp_path / "*.txt"))


def test_undecodable_file_is_named(tmp_path):
    (tmp_path / "good.txt").write_text("fine\n\ntext")
    (tmp_path / "bad.txt").write_bytes(b"ok \xff\xfe then")
    with pytest.raises(ValueError, match="bad.txt' is not valid utf-8: byte b'\\\\xff' at offset 3"):
        text_files(tmp_path)
    c = text_files(tmp_path / "bad.txt", encoding="latin-1")
    assert c.train + c.valid == ["ok ÿþ", " then"]


def test_text_files_recursive_glob(tmp_path):
    (tmp_path / "a" / "b").mkdir(parents=True)
    (tmp_path / "a" / "b" / "deep.txt").write_text("p1\n\np2\n\np3")
    (tmp_path / "top.txt").write_text("only line")
    c = text_files(tmp_path, pattern="**/*.txt")
    assert c.meta["files"] == [str(tmp_path / "a" / "b" / "deep.txt"), str(tmp_path / "top.txt")]
    assert [a + b for a, b in zip(c.documents("train"), c.documents("valid"))] == ["p1\n\np2\n\np3", "only line"]
    assert text_files(str(tmp_path / "**" / "*.txt")).train == c.train


# ---- a file is modelled as it is -------------------------------------------------------------------

LAYOUT = "Title\r\n\r\n  indented verse,\n\tand a tab;\n\n\n\nthree blank lines, trailing spaces   \n\nend\n\n"


@pytest.mark.parametrize("reps", [1, 40, 3000])  # tiny, one piece, many pieces
def test_packed_stream_decodes_to_the_exact_file(tok, tmp_path, reps):
    f = tmp_path / "layout.txt"
    f.write_bytes(LAYOUT.encode() * reps)
    c = text_files(f)
    streams = [packed_tokens(c, tok, split=s, progress=False) for s in ("train", "valid")]
    for s in streams:  # one stream per split: a single EOS, at its end, and no BOS
        assert s[-1] == tok.eos_id and (s == tok.eos_id).sum() == 1 and (s == tok.bos_id).sum() == 0
    assert (tok.decode(streams[0][:-1]) + tok.decode(streams[1][:-1])).encode() == f.read_bytes()
    assert streams[0][:-1].tolist() + streams[1][:-1].tolist() == tok.encode(f.read_bytes().decode())  # the whole file's tokens
    assert max(map(len, c.train + c.valid)) <= 2 ** 16


def test_separate_files_stay_separate_documents(tok, tmp_path):
    for i in range(3): (tmp_path / f"f{i}.txt").write_text(f"file {i}\n\n" * 50)
    c = text_files(tmp_path)
    s = packed_tokens(c, tok, progress=False, add_bos=True)
    assert (s == tok.eos_id).sum() == 3 and (s == tok.bos_id).sum() == 3
    docs = tok.decode(s).split("<|eos|>")[:-1]
    assert [d.removeprefix("<|bos|>") for d in docs] == list(c.documents("train"))
    assert all(d.startswith(f"file {i}") for i, d in enumerate(c.documents("train")))


def test_split_is_a_contiguous_tail(tmp_path):
    text = "".join(f"Line {i} of the file.\n" for i in range(1000))
    (tmp_path / "t.txt").write_text(text)
    c = text_files(tmp_path / "t.txt", valid_frac=0.2)
    (head,), (tail,) = c.documents("train"), c.documents("valid")
    assert head + tail == text and tail.startswith("Line ") and 0.19 < len(tail) / len(text) < 0.21


def test_single_line_file_trains(tmp_path):
    rng = np.random.default_rng(0)
    words = rng.choice(["lorem", "ipsum", "dolor", "sit", "amet,", "x7"], 48_000)
    (tmp_path / "flat.txt").write_text(" ".join(words))  # about 240 kB and no newline at all
    c = text_files(tmp_path / "flat.txt")
    assert c.valid and c.train and len(c.train) > 1 and sum(c.ends("train")) == 1
    tok = BPETokenizer.train(c.train, vocab_size=300)
    ds = PackedDataset.from_corpus(c, tok, 64, "valid")
    assert len(ds) > 10


def test_pieces_and_ends_are_checked(tok):
    with pytest.raises(ValueError, match="valid_ends needs one flag per text"):
        Corpus("c", ["a"], ["b", "c"], valid_ends=[True])
    with pytest.raises(ValueError, match="train_ends needs .* the last True"):
        Corpus("c", ["a", "b"], [], train_ends=[True, False])
    with pytest.raises(ValueError):  # a flag list that does not match the texts
        pack_tokens(["a", "b"], tok, ends=[True], progress=False)
    c = Corpus("c", ["a", " b", "c"], ["d"], train_ends=[False, True, True])
    assert pack_tokens(c.train, tok, ends=c.ends("train"), add_bos=True, progress=False).tolist() == \
        tok.encode("a b", add_bos=True, add_eos=True) + tok.encode("c", add_bos=True, add_eos=True)
    assert list(c.documents("train")) == ["a b", "c"] and "2 train docs" in repr(c)
    assert c.fingerprint != Corpus("c", ["a", " b", "c"], ["d"]).fingerprint


def test_too_little_text(tmp_path):
    (tmp_path / "one.txt").write_text("x")
    with pytest.raises(ValueError, match="too short to hold out any validation text"):
        text_files(tmp_path / "one.txt")
    (tmp_path / "blank.txt").write_text(" \n\n ")
    with pytest.raises(ValueError, match="hold no text"):
        text_files(tmp_path / "blank.txt")


def test_bad_loader_and_split_args(tok):
    ds = LMDataset(["a b c"], tok, 8, progress=False)
    with pytest.raises(ValueError, match="batch_size must be an int >= 1, got 0"):
        lm_dataloader(ds, 0)
    with pytest.raises(ValueError, match="give both rank and world_size or neither"):
        lm_dataloader(ds, 2, world_size=2)
    with pytest.raises(ValueError, match="split must be 'train' or 'valid', got 'validation'"):
        packed_tokens(Corpus("c", ["a"], ["b"]), tok, split="validation")
    with pytest.raises(ValueError, match="unknown corpus 'wikitext2'"):
        get_corpus("wikitext2")


# ---- WikiText from a local copy (no network) --------------------------------------------------------

def _wiki_lines(split, n):
    return [l for i in range(n) for l in ("", f" = {split.title()} article {i} = \n", "", f" Body {i} . \n",
                                          " = = Section = = \n", "", f" More text {i} . \n")]


def test_wikitext_local_parquet_hub_layout(tmp_path):
    import datasets
    folder = tmp_path / "Salesforce-wikitext" / "wikitext-103-raw-v1"  # a clone of the Hub repository
    folder.mkdir(parents=True)
    for split, n in (("train", 4), ("validation", 2), ("test", 1)):
        datasets.Dataset.from_dict({"text": _wiki_lines(split, n)}).to_parquet(folder / f"{split}-00000-of-00001.parquet")
    c = get_corpus("wikitext-103-raw-v1", path=tmp_path / "Salesforce-wikitext", cache_dir=tmp_path / "cache")
    assert (c.name, len(c.train), len(c.valid)) == ("wikitext-103-raw-v1", 4, 2)
    assert c.train[1] == "= Train article 1 = \n Body 1 . \n = = Section = = \n More text 1 ."
    assert all("Test" not in d for d in c.train + c.valid)


def test_wikitext_local_raw_text_files(tmp_path):
    for split, n in (("train", 3), ("valid", 1), ("test", 1)):
        (tmp_path / f"wiki.{split}.raw").write_text("".join(l or " \n" for l in _wiki_lines(split, n)))
    c = wikitext("wikitext-2-raw-v1", path=tmp_path, cache_dir=tmp_path / "cache")
    assert (len(c.train), len(c.valid)) == (3, 1)
    assert c.valid[0].startswith("= Valid article 0 =") and "More text 0 ." in c.valid[0]


def test_wikitext_local_save_to_disk(tmp_path):
    import datasets
    dd = datasets.DatasetDict({s: datasets.Dataset.from_dict({"text": _wiki_lines(s, 2)}) for s in ("train", "validation")})
    dd.save_to_disk(tmp_path / "saved")
    c = wikitext(path=tmp_path / "saved")
    assert (len(c.train), len(c.valid)) == (2, 2)


def test_wikitext_local_errors(tmp_path):
    (tmp_path / "train.parquet").write_bytes(b"")
    with pytest.raises(FileNotFoundError, match="has no validation file"):
        wikitext(path=tmp_path)
    (tmp_path / "valid.txt").write_text("x")
    with pytest.raises(ValueError, match="mixes file kinds \\['parquet', 'text'\\]"):
        wikitext(path=tmp_path)
    with pytest.raises(FileNotFoundError, match="no WikiText folder at .*missing"):
        wikitext(path=tmp_path / "missing")
    with pytest.raises(ValueError, match="unknown WikiText configuration 'wikitext-2'"):
        wikitext("wikitext-2")


def test_wikitext_offline_error_says_what_to_do(tmp_path):
    with pytest.raises(FileNotFoundError) as e:
        wikitext("wikitext-2-raw-v1", cache_dir=tmp_path)  # empty cache + offline mode: load_dataset cannot succeed
    msg = str(e.value)
    assert "datasets.load_dataset('Salesforce/wikitext', 'wikitext-2-raw-v1')" in msg
    assert "huggingface.co/datasets/Salesforce/wikitext" in msg and "path='that/folder'" in msg


# ---- the shift, as properties ---------------------------------------------------------------------

texts = st.lists(st.text(max_size=60), min_size=1, max_size=6).filter(any)


@settings(max_examples=40, deadline=None)
@given(docs=texts, block_size=st.integers(1, 40))
def test_document_mode_shift(tok, docs, block_size):
    ds = LMDataset(docs, tok, block_size, progress=False)
    for i, doc in enumerate(docs):
        full = tok.encode(doc, add_bos=True, add_eos=True)[:block_size + 1]
        x = ds[i]
        assert x["input_ids"].tolist() == full[:-1] and x["labels"].tolist() == full[1:]
        assert len(x["input_ids"]) <= block_size
    b = collate_lm([ds[i] for i in range(len(ds))], tok.pad_id)
    m = b["attention_mask"].bool()
    assert (b["labels"][~m] == IGNORE_INDEX).all() and (b["input_ids"][~m] == tok.pad_id).all()
    assert (b["labels"][m] != IGNORE_INDEX).all()
    assert torch.equal(b["labels"][:, :-1][m[:, 1:]], b["input_ids"][:, 1:][m[:, 1:]])  # labels[t] == input_ids[t+1]


@settings(max_examples=40, deadline=None)
@given(n=st.integers(2, 300), block_size=st.integers(1, 50), mode=st.sampled_from(["sequential", "random"]),
       seed=st.integers(0, 10))
def test_packed_mode_shift(n, block_size, mode, seed):
    stream = np.random.default_rng(seed).integers(0, 60_000, n).astype(np.uint16)
    if n < block_size + 1:
        with pytest.raises(ValueError, match="shorter than one block"):
            PackedDataset(stream, block_size, mode)
        return
    ds = PackedDataset(stream, block_size, mode, seed=seed)
    for i in range(len(ds)):
        x, o = ds[i], int(ds.offsets[i])
        assert x["input_ids"].tolist() == stream[o:o + block_size].tolist()
        assert x["labels"].tolist() == stream[o + 1:o + block_size + 1].tolist()
    b = collate_lm([ds[i] for i in range(len(ds))], pad_id=None)
    assert b["attention_mask"].all() and b["input_ids"].shape == (len(ds), block_size)


# ---- memmap packing and the cache -----------------------------------------------------------------

def test_memmap_matches_in_memory(tok, tmp_path):
    docs = synthetic(n_train=300, n_valid=10).train
    mem = pack_tokens(docs, tok, progress=False)
    mm = pack_tokens((d for d in docs), tok, path=tmp_path / "s.bin", chunk_docs=7, progress=False)
    assert isinstance(mm, np.memmap) and mm.dtype == np.uint16 and np.array_equal(mm, mem)
    assert not (tmp_path / "s.bin.tmp").exists()
    bos = pack_tokens(docs[:2], tok, add_bos=True, progress=False)
    assert bos.tolist() == tok.encode(docs[0], True, True) + tok.encode(docs[1], True, True)


def test_uint32_stream_when_vocab_is_large(tok):
    class Big:  # a tokenizer with a vocabulary beyond uint16
        bos_id, eos_id, pad_id, vocab_size = 0, 1, 2, 70_000
        def encode_batch(self, texts, add_bos=False, add_eos=False): return [[69_999] + [1] * add_eos for _ in texts]
    s = pack_tokens(["a", "b"], Big(), progress=False)
    assert s.dtype == np.uint32 and s.tolist() == [69_999, 1, 69_999, 1]


def test_over_cap_goes_to_disk_cache(tok, tmp_path, monkeypatch):
    monkeypatch.setenv("MIE_LM_CACHE", str(tmp_path / "default"))
    c = synthetic(n_train=20, n_valid=2)
    s = packed_tokens(c, tok, max_in_memory_bytes=c.train_bytes // 4, progress=False)  # 4x over the cap
    assert isinstance(s, np.memmap) and len(list((tmp_path / "default").glob("synthetic-train-*.bin"))) == 1
    ds = PackedDataset.from_corpus(c, tok, 16, cache_dir=tmp_path / "default", mode="random", n_samples=5)
    assert np.array_equal(ds.tokens, s) and len(ds) == 5


def test_cache_key_follows_tokenizer(tok, tmp_path):
    c = synthetic(n_train=20, n_valid=2)
    other = BPETokenizer.train(c.train, vocab_size=300)
    packed_tokens(c, tok, cache_dir=tmp_path, progress=False)
    s = packed_tokens(c, other, cache_dir=tmp_path, progress=False)
    assert len(list(tmp_path.glob("*.bin"))) == 2 and s.tolist() == pack_tokens(c.train, other, progress=False).tolist()


# ---- loaders --------------------------------------------------------------------------------------

def test_workers_give_the_same_batches(tok):
    ds = PackedDataset(pack_tokens(synthetic(n_train=30, n_valid=2).train, tok, progress=False), 32)
    runs = [[b["input_ids"] for b in lm_dataloader(ds, 4, seed=3, num_workers=w)] for w in (0, 2)]
    assert all(torch.equal(a, b) for a, b in zip(*runs)) and len(runs[0]) == len(runs[1])


def test_distributed_shards_cover_once(tok):
    ds = LMDataset([f"doc {i}" for i in range(10)], tok, 8, progress=False)
    got = sorted(tuple(x[x != tok.pad_id].tolist()) for r in range(3) for b in lm_dataloader(ds, 2, rank=r, world_size=3)
                 for x in b["input_ids"])
    want = sorted(tuple(ds[i]["input_ids"].tolist()) for i in range(10))
    assert set(got) == set(want) and len(got) == 12  # DistributedSampler pads 10 to 12 so shards are equal


# ---- figures, table, import hygiene -----------------------------------------------------------------

def test_figures_and_table(tok):
    import matplotlib
    matplotlib.use("Agg")
    ds = LMDataset(["one two three four", "five"], tok, 4, progress=False)
    assert len(plot_shift(tok, ds[0]).axes) == 1
    assert plot_doc_lengths(ds.lengths, block_size=4).get_xlabel() == "tokens per document"
    df = corpus_stats([Corpus("c", ["ab"], ["c"], entropy_floor_bpb=0.5)], tok)
    assert df.to_dict("list")["bytes"] == [2, 1] and df.floor_bpb.tolist() == [0.5, 0.5]


def test_package_imports_without_matplotlib():
    code = "import sys, mie_lm.data, mie_lm.corpora; print(sorted(m for m in ('matplotlib', 'pandas', 'datasets') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"

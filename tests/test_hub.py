"""Tests for `mie_lm.hub`: a Hugging Face folder that `transformers` loads and that agrees with mie_lm."""
import json

import pytest
import torch
from hypothesis import given, settings, strategies as st

from mie_lm.corpora import python_docs
from mie_lm.generation import generate, generate_text
from mie_lm.hub import (check_gpt2_layout, export_hf, gpt2_state_dict, gpt_config_from_hf, is_hf_folder, load_hf,
                        tokenizer_files)
from mie_lm.model import GPT, GPTConfig, lm_loss
from mie_lm.tokenizer import BPETokenizer

torch.set_num_threads(1)  # small models: extra threads only add contention on shared CI machines
transformers = pytest.importorskip("transformers")
transformers.utils.logging.set_verbosity_error()
transformers.utils.logging.disable_progress_bar()


@pytest.fixture(scope="module")
def docs():
    return python_docs()


@pytest.fixture(scope="module")
def tok(docs):
    return BPETokenizer.train(docs.train, vocab_size=600)


@pytest.fixture(scope="module")
def model(tok):
    torch.manual_seed(0)
    m = GPT(GPTConfig(n_layer=2, n_head=2, n_embd=32, block_size=64, vocab_size=tok.vocab_size)).eval()
    with torch.no_grad():  # perturb every parameter: a random model far from uniform, with distinct greedy choices
        for p in m.parameters(): p.add_(0.3 * torch.randn_like(p))
    return m


@pytest.fixture(scope="module")
def folder(model, tok, tmp_path_factory):
    return export_hf(model, tok, tmp_path_factory.mktemp("export") / "model")


@pytest.fixture(scope="module")
def hf_tok(folder):
    return transformers.AutoTokenizer.from_pretrained(folder)


@pytest.fixture(scope="module")
def hf_model(folder):
    return transformers.AutoModelForCausalLM.from_pretrained(folder).eval()


def test_folder_has_the_hf_files(folder):
    names = {p.name for p in folder.iterdir()}
    assert names == {"config.json", "generation_config.json", "model.safetensors", "tokenizer.json",
                     "tokenizer_config.json", "special_tokens_map.json"}
    assert is_hf_folder(folder)


def test_auto_classes_load_without_custom_code(folder, hf_model, hf_tok, tok):
    assert type(hf_model).__name__ == "GPT2LMHeadModel"
    assert (hf_tok.bos_token_id, hf_tok.eos_token_id, hf_tok.pad_token_id) == (tok.bos_id, tok.eos_id, tok.pad_id)
    gen = transformers.GenerationConfig.from_pretrained(folder)
    assert (gen.bos_token_id, gen.eos_token_id, gen.pad_token_id) == (tok.bos_id, tok.eos_id, tok.pad_id)
    assert not any(p.name.endswith(".py") for p in folder.iterdir())  # no custom code


@settings(max_examples=200, deadline=None)
@given(text=st.text(max_size=60) | st.lists(st.sampled_from(["<|bos|>", "<|eos|>", "<|pad|>", " ", "\n", "é", "ab", "日本", "🦜"]),
                                            max_size=12).map("".join))
def test_hf_tokenizer_ids_equal_encode(hf_tok, tok, text):
    ids = tok.encode(text)
    assert hf_tok(text, add_special_tokens=True)["input_ids"] == ids
    assert hf_tok.decode(ids) == text


def test_hf_loss_equals_lm_loss(hf_model, model, tok, docs):
    for text in docs.valid[:5]:
        ids = torch.tensor([tok.encode(text, add_bos=True)[:model.config.block_size]])
        with torch.no_grad():
            assert hf_model(ids, labels=ids).loss.item() == pytest.approx(lm_loss(model(ids[:, :-1]), ids[:, 1:]).item(), abs=1e-5)


PROMPTS = ["The return value of", "x", "A class definition creates a new type and the", "If"]


def test_pipeline_greedy_equals_generate(folder, model, tok):
    pipe = transformers.pipeline("text-generation", model=str(folder), device="cpu")
    for p in PROMPTS:  # one prompt at a time, token for token
        out = pipe(p, max_new_tokens=16, do_sample=False, return_tensors=True)[0]["generated_token_ids"]
        ours = generate(model, torch.tensor([tok.encode(p)]), max_new_tokens=16, eos_token_id=tok.eos_id)[0].tolist()
        assert out == ours
    batch = pipe(PROMPTS, max_new_tokens=16, do_sample=False, batch_size=len(PROMPTS), return_tensors=True)  # left-padded
    theirs = [[i for i in o[0]["generated_token_ids"]] for o in batch]
    ids = [tok.encode(p) for p in PROMPTS]
    T = max(map(len, ids))
    x = torch.tensor([[tok.pad_id] * (T - len(i)) + i for i in ids])
    mask = torch.tensor([[0] * (T - len(i)) + [1] * len(i) for i in ids])
    ours = generate(model, x, mask, max_new_tokens=16, eos_token_id=tok.eos_id, pad_token_id=tok.pad_id)
    for row, their, n in zip(ours.tolist(), theirs, map(len, ids)):
        assert their[-(n + 16):] == row[T - n:]  # each row's prompt and its new tokens; the pipeline keeps its padding
    texts = [o[0]["generated_text"] for o in pipe(PROMPTS, max_new_tokens=16, do_sample=False, batch_size=len(PROMPTS),
                                                   return_full_text=False)]
    assert texts == generate_text(model, tok, PROMPTS, max_new_tokens=16)


def test_round_trip(folder, model, tok):
    m2, t2 = load_hf(folder, device="cpu")
    assert t2.fingerprint == tok.fingerprint and t2.special_tokens == tok.special_tokens
    assert m2.config == model.config and not m2.training
    x = torch.randint(0, tok.vocab_size, (2, 20))
    with torch.no_grad(): assert torch.equal(m2(x), model(x))


def test_export_equals_transformers_state_dict(model):
    sd, hf_sd = gpt2_state_dict(model), model.to_hf_gpt2().state_dict()
    assert all(torch.equal(v, hf_sd[k]) for k, v in sd.items())


def test_foreign_gpt2_folder(tmp_path):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    raw = Tokenizer(models.BPE()); raw.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    raw.decoder = decoders.ByteLevel()
    raw.train_from_iterator(["héllo world", "hello there"], trainers.BpeTrainer(
        vocab_size=280, special_tokens=["<|endoftext|>"], initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    hf = transformers.GPT2LMHeadModel(transformers.GPT2Config(n_layer=1, n_head=2, n_embd=16, n_positions=32,
                                                              vocab_size=raw.get_vocab_size())).eval()
    hf.save_pretrained(tmp_path)
    transformers.PreTrainedTokenizerFast(tokenizer_object=raw, eos_token="<|endoftext|>").save_pretrained(tmp_path)
    gpt, t = load_hf(tmp_path, device="cpu")
    assert t.bos_id == t.eos_id == t.pad_id == raw.token_to_id("<|endoftext|>")
    x = torch.tensor([t.encode("héllo")])
    assert t.decode(x[0]) == "héllo"
    with torch.no_grad(): assert torch.allclose(gpt(x), hf(x).logits, atol=1e-5)
    assert generate_text(gpt, t, "ab", max_new_tokens=3) is not None


# ---------------------------------------------------------------- bad input
def test_non_empty_folder_without_overwrite(model, tok, tmp_path):
    out = export_hf(model, tok, tmp_path / "m")
    before = {p.name: p.stat().st_mtime_ns for p in out.iterdir()}
    with pytest.raises(ValueError, match="is not empty; pass overwrite=True") as e: export_hf(model, tok, out)
    assert "\n" not in str(e.value)
    assert {p.name: p.stat().st_mtime_ns for p in out.iterdir()} == before
    export_hf(model, tok, out, overwrite=True)
    (tmp_path / "mine").mkdir(); (tmp_path / "mine" / "a.txt").write_text("keep")
    with pytest.raises(ValueError, match="not a model"): export_hf(model, tok, tmp_path / "mine", overwrite=True)
    assert (tmp_path / "mine" / "a.txt").read_text() == "keep"
    (tmp_path / "file").write_text("x")
    with pytest.raises(ValueError, match="is a file"): export_hf(model, tok, tmp_path / "file")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file", "m", "mine"]  # no temporary folder left


def test_nothing_partial_on_failure(model, tok, tmp_path, monkeypatch):
    import safetensors.torch
    def boom(*a, **k): raise OSError("disk full")
    monkeypatch.setattr(safetensors.torch, "save_file", boom)
    with pytest.raises(OSError, match="disk full"): export_hf(model, tok, tmp_path / "m")
    assert list(tmp_path.iterdir()) == []
    monkeypatch.undo()
    out = export_hf(model, tok, tmp_path / "m")
    monkeypatch.setattr(safetensors.torch, "save_file", boom)
    with pytest.raises(OSError): export_hf(model, tok, out, overwrite=True)
    assert load_hf(out, device="cpu")[0].config == model.config  # the earlier export is intact
    assert [p.name for p in tmp_path.iterdir()] == ["m"]


def test_non_gpt2_layout_is_refused(tok, tmp_path):
    with pytest.raises(ValueError, match="bias=False is not exportable"):
        export_hf(GPT(GPTConfig(bias=False, vocab_size=tok.vocab_size)), tok, tmp_path / "m")
    assert not (tmp_path / "m").exists()
    check_gpt2_layout(GPTConfig(n_layer=3, n_head=4, n_embd=32, block_size=16, vocab_size=99, dropout=0.1))  # sizes are free
    for option, value in [("norm", "rmsnorm"), ("pos_emb", "rope"), ("mlp", "swiglu")]:  # the modern block options
        with pytest.raises(ValueError, match=f"cannot export to GPT-2: {option}='{value}' is not exportable"):
            export_hf(GPT(GPTConfig(vocab_size=tok.vocab_size, **{option: value})), tok, tmp_path / "m")
    assert not (tmp_path / "m").exists()


def test_pruned_or_mismatched_model_is_refused(model, tok, tmp_path):
    small = GPT(GPTConfig(n_layer=1, n_head=1, n_embd=8, block_size=8, vocab_size=300))
    with pytest.raises(ValueError, match="tokenizer has 600 tokens but the model's vocab_size is 300"):
        export_hf(small, tok, tmp_path / "m")
    pruned = GPT(model.config)
    pruned.transformer.h[0].attn.c_attn = torch.nn.Linear(32, 48)  # one head removed
    with pytest.raises(ValueError, match="'transformer.h.0.attn.c_attn.weight' does not have the shape"):
        gpt2_state_dict(pruned)


def test_other_architecture_is_refused(folder, tmp_path):
    import shutil
    other = tmp_path / "llama"; shutil.copytree(folder, other)
    cfg = json.loads((other / "config.json").read_text())
    (other / "config.json").write_text(json.dumps({**cfg, "model_type": "llama", "architectures": ["LlamaForCausalLM"]}))
    with pytest.raises(ValueError, match="not a GPT-2 model: architecture 'LlamaForCausalLM'") as e: load_hf(other)
    assert "\n" not in str(e.value)
    with pytest.raises(ValueError, match="unsupported n_inner=7"): gpt_config_from_hf({**cfg, "n_inner": 7})
    (other / "config.json").write_text(json.dumps(cfg))
    (other / "model.safetensors").rename(other / "pytorch_model.bin")
    with pytest.raises(FileNotFoundError, match="no model.safetensors .*pickled"): load_hf(other)
    with pytest.raises(FileNotFoundError, match="no config.json"): load_hf(tmp_path)
    assert not is_hf_folder(tmp_path)


def test_is_hf_folder_tells_native_checkpoints_apart(model, tmp_path):
    assert not is_hf_folder(model.save_pretrained(tmp_path / "native"))
    (tmp_path / "bad").mkdir(); (tmp_path / "bad" / "config.json").write_text("{not json")
    assert not is_hf_folder(tmp_path / "bad")


def test_tokenizer_config_keeps_special_text_literal(tok):
    cfg = json.loads(tokenizer_files(tok, 64)["tokenizer_config.json"])
    assert cfg["split_special_tokens"] and cfg["padding_side"] == "left" and cfg["bos_token"] == "<|bos|>"

"""Property and interop tests for `mie_lm.model` (the notebook holds the lesson-sized checks)."""
import json
import math

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings, strategies as st

from mie_lm.model import (CONFIG_NAME, IGNORE_INDEX, KVCache, PRESETS, WEIGHTS_NAME, GPT, GPTConfig,
                          attention_mask_4d, causal_mask, lm_loss, naive_attention, plot_attention,
                          position_ids_from_mask, resolve_device)

torch.set_num_threads(1)  # small models: extra threads only add contention on shared CI machines
transformers = pytest.importorskip("transformers")


def random_hf(n_layer, n_head, n_embd, n_positions, vocab_size, seed=0, attn="sdpa"):
    "A random `GPT2LMHeadModel` with every parameter perturbed (no trivial biases or LayerNorms)."
    torch.manual_seed(seed)
    cfg = transformers.GPT2Config(n_layer=n_layer, n_head=n_head, n_embd=n_embd, n_positions=n_positions,
                                  vocab_size=vocab_size, bos_token_id=None, eos_token_id=None)
    hf = transformers.GPT2LMHeadModel._from_config(cfg, attn_implementation=attn).eval()
    with torch.no_grad():
        for p in hf.parameters(): p.add_(0.1 * torch.randn_like(p))
    return hf


def tiny(seed=0, **kw):
    torch.manual_seed(seed)
    return GPT(GPTConfig(**kw)).eval()


# ---------------------------------------------------------------- GPT-2 interop
HF_SHAPES = [(1, 1, 8, 16, 50), (2, 4, 32, 64, 100), (3, 2, 48, 32, 257), (2, 12, 96, 40, 1000)]


@pytest.mark.parametrize("shape", HF_SHAPES)
def test_from_hf_logits_match(shape):
    hf = random_hf(*shape)
    ours = GPT.from_hf_gpt2(hf).eval()
    x = torch.randint(0, shape[4], (3, shape[3]))
    with torch.no_grad(): err = (ours(x) - hf(x).logits).abs().max().item()
    assert err < 1e-5, err


@pytest.mark.parametrize("shape", HF_SHAPES[:2])
def test_from_hf_state_dict_and_round_trip(shape):
    hf = random_hf(*shape)
    n_layer, n_head, n_embd, n_pos, vocab = shape
    cfg = GPTConfig(n_layer=n_layer, n_head=n_head, n_embd=n_embd, block_size=n_pos, vocab_size=vocab)
    ours = GPT.from_hf_gpt2(hf.state_dict(), config=cfg).eval()  # bare state dict
    back = ours.to_hf_gpt2().eval()
    x = torch.randint(0, vocab, (2, n_pos))
    with torch.no_grad():
        torch.testing.assert_close(back(x).logits, hf(x).logits, rtol=0, atol=1e-5)
        torch.testing.assert_close(ours(x), hf(x).logits, rtol=0, atol=1e-5)
    assert isinstance(back, transformers.GPT2LMHeadModel) and not back.training


def test_from_hf_base_model_without_prefix():
    hf = random_hf(2, 2, 16, 16, 40)
    ours = GPT.from_hf_gpt2(hf.transformer.state_dict(), config=GPTConfig(n_layer=2, n_head=2, n_embd=16, block_size=16, vocab_size=40))
    x = torch.randint(0, 40, (1, 16))
    with torch.no_grad(): torch.testing.assert_close(ours.eval()(x), hf(x).logits, rtol=0, atol=1e-5)


def test_attentions_and_padding_match_hf():
    hf = random_hf(2, 4, 32, 32, 64, attn="eager")
    ours = GPT.from_hf_gpt2(hf).eval()
    x = torch.randint(0, 64, (2, 12))
    mask = torch.ones(2, 12, dtype=torch.long); mask[0, :5] = 0  # left padding
    pos = position_ids_from_mask(mask)
    with torch.no_grad():
        out = hf(x, attention_mask=mask, position_ids=pos, output_attentions=True)
        logits, atts = ours(x, attention_mask=mask, output_attentions=True)
    real = mask.bool()
    torch.testing.assert_close(logits[real], out.logits[real], rtol=0, atol=1e-5)
    for a, b in zip(atts, out.attentions):
        torch.testing.assert_close(a[1], b[1], rtol=0, atol=1e-5)  # unpadded row: identical weights
        torch.testing.assert_close(a[0, :, 5:, 5:], b[0, :, 5:, 5:], rtol=0, atol=1e-5)  # real queries, real keys
        assert a[0, :, 5:, :5].abs().max() == 0  # no real query attends to padding


def test_hf_errors():
    hf = random_hf(1, 1, 8, 16, 50)
    with pytest.raises(ValueError, match="pass `config=`"): GPT.from_hf_gpt2(hf.state_dict())
    hf.config.activation_function = "relu"
    with pytest.raises(ValueError, match="unsupported activation_function='relu'"): GPT.from_hf_gpt2(hf)
    hf.config.activation_function, hf.config.scale_attn_by_inverse_layer_idx = "gelu_new", True
    with pytest.raises(ValueError, match="unsupported scale_attn_by_inverse_layer_idx=True"): GPT.from_hf_gpt2(hf)
    cfg = GPTConfig(n_layer=1, n_head=1, n_embd=8, block_size=16, vocab_size=51)
    with pytest.raises(ValueError, match=r"tensor 'transformer.wte.weight' in the GPT-2 state dict has shape \(50, 8\), but the config needs \(51, 8\)"):
        GPT.from_hf_gpt2(hf.state_dict(), config=cfg)
    sd = {**hf.state_dict(), "transformer.extra.weight": torch.zeros(1)}
    with pytest.raises(ValueError, match="unexpected tensor 'transformer.extra.weight'"):
        GPT.from_hf_gpt2(sd, config=GPTConfig(n_layer=1, n_head=1, n_embd=8, block_size=16, vocab_size=50))
    for kw in (dict(bias=False), dict(norm="rmsnorm"), dict(pos_emb="rope"), dict(mlp="swiglu")):
        with pytest.raises(ValueError, match="only the GPT-2 layout converts"): GPT(GPTConfig(**kw)).to_hf_gpt2()


# ---------------------------------------------------------------- properties
@settings(max_examples=15, deadline=None)
@given(T=st.integers(2, 24), t=st.integers(1, 23), seed=st.integers(0, 2**16))
def test_causality(T, t, seed):
    t = min(t, T - 1)
    model = tiny(n_layer=2, block_size=24)
    g = torch.Generator().manual_seed(seed)
    x = torch.randint(0, 512, (2, T), generator=g)
    y = x.clone(); y[:, t:] = torch.randint(0, 512, (2, T - t), generator=g)
    with torch.no_grad(): torch.testing.assert_close(model(x)[:, :t], model(y)[:, :t], rtol=0, atol=1e-6)


@settings(max_examples=15, deadline=None)
@given(T=st.integers(1, 20), prefill=st.integers(1, 20), chunk=st.integers(1, 4), seed=st.integers(0, 2**16))
def test_cached_equals_full_forward(T, prefill, chunk, seed):
    prefill = min(prefill, T)
    model = tiny(seed % 7, n_layer=3, n_head=4, block_size=32)
    x = torch.randint(0, 512, (2, T), generator=torch.Generator().manual_seed(seed))
    with torch.no_grad():
        full = model(x)
        model.setup_cache(2, T)
        steps = [model(x[:, :prefill], cache_pos=0)]
        steps += [model(x[:, s:s + chunk], cache_pos=s) for s in range(prefill, T, chunk)]  # multi-token chunks too
    torch.testing.assert_close(torch.cat(steps, 1), full, rtol=0, atol=1e-5)


@settings(max_examples=15, deadline=None)
@given(lens=st.lists(st.integers(1, 12), min_size=1, max_size=4), seed=st.integers(0, 2**16))
def test_left_padded_equals_unpadded(lens, seed):
    model = tiny(n_layer=2, block_size=16)
    g = torch.Generator().manual_seed(seed)
    seqs = [torch.randint(3, 512, (n,), generator=g) for n in lens]
    T = max(lens)
    batch = torch.stack([F.pad(s, (T - len(s), 0), value=2) for s in seqs])  # pad id 2 on the left
    mask = torch.stack([F.pad(torch.ones(len(s), dtype=torch.long), (T - len(s), 0)) for s in seqs])
    with torch.no_grad():
        out = model(batch, attention_mask=mask)
        assert out.isfinite().all()
        for i, s in enumerate(seqs):
            torch.testing.assert_close(out[i, T - len(s):], model(s[None])[0], rtol=0, atol=1e-5)
        # and the same through the cache, decoding the last 3 tokens one at a time
        p = max(T - 3, 1)
        model.setup_cache(len(seqs), T)
        steps = [model(batch[:, :p], attention_mask=mask[:, :p], cache_pos=0)]
        steps += [model(batch[:, t:t + 1], attention_mask=mask[:, :t + 1], cache_pos=t) for t in range(p, T)]
        real = mask.bool()
        torch.testing.assert_close(torch.cat(steps, 1)[real], out[real], rtol=0, atol=1e-5)


def test_right_padding_needs_no_special_care():
    model = tiny()
    x = torch.randint(0, 512, (1, 6))
    mask = torch.tensor([[1, 1, 1, 1, 0, 0]])
    with torch.no_grad(): torch.testing.assert_close(model(x, attention_mask=mask)[:, :4], model(x[:, :4]), rtol=0, atol=1e-5)


@pytest.mark.parametrize("name", list(PRESETS))
@pytest.mark.parametrize("bias", [True, False])
def test_param_count_formula(name, bias):
    cfg = GPTConfig.from_preset(name, bias=bias)
    if cfg.num_params > 30e6: pytest.skip("large presets: formula checked on the meta device below")
    assert sum(p.numel() for p in GPT(cfg).parameters()) == cfg.num_params


def test_param_count_formula_gpt2_meta():
    with torch.device("meta"): model = GPT(GPTConfig.from_preset("gpt2"))
    assert sum(p.numel() for p in model.parameters()) == GPTConfig.from_preset("gpt2").num_params == 124_439_808


def test_overfits_one_batch():
    torch.manual_seed(0)
    model = GPT(GPTConfig()).train()
    x = torch.randint(0, 512, (4, 16)); y = torch.roll(x, -1, 1)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    for _ in range(80):
        loss = lm_loss(model(x), y); opt.zero_grad(); loss.backward(); opt.step()
    assert loss.item() < 0.05


def test_initial_loss_near_uniform_and_init_scale():
    model = tiny(n_layer=4)
    x = torch.randint(0, 512, (4, 64))
    with torch.no_grad(): loss = lm_loss(model(x), torch.roll(x, -1, 1)).item()
    assert abs(loss - math.log(512)) < 0.1
    std = model.transformer.h[0].attn.c_proj.weight.std().item()
    assert abs(std - 0.02 / math.sqrt(8)) < 0.002


def test_dropout_only_in_training():
    model = tiny(dropout=0.5)
    x = torch.randint(0, 512, (2, 8))
    with torch.no_grad():
        assert torch.equal(model(x), model(x))
        model.train()
        assert not torch.equal(model(x), model(x))
        logits, atts = model(x, output_attentions=True)  # explicit path with dropout still runs
        assert logits.isfinite().all() and len(atts) == 2


# ---------------------------------------------------------------- pieces
def test_naive_attention_with_mask_matches_sdpa():
    q, k, v = torch.randn(3, 2, 3, 4, 8).unbind(0)
    mask = attention_mask_4d(torch.tensor([[0, 1, 1, 1], [1, 1, 1, 1]]), T=4)
    y, att = naive_attention(q, k, v, mask)
    torch.testing.assert_close(y, F.scaled_dot_product_attention(q, k, v, attn_mask=mask))
    assert torch.equal(causal_mask(3), torch.tensor([[1, 0, 0], [1, 1, 0], [1, 1, 1]]).bool())


def test_lm_loss_ignore_index_and_no_shift():
    logits = torch.randn(2, 5, 11)
    labels = torch.randint(0, 11, (2, 5))
    torch.testing.assert_close(lm_loss(logits, labels), F.cross_entropy(logits.reshape(10, 11), labels.reshape(10)))
    labels[0, :] = IGNORE_INDEX
    torch.testing.assert_close(lm_loss(logits, labels), F.cross_entropy(logits[1], labels[1]))
    with pytest.raises(ValueError, match=r"labels must have shape \(2, 5\)"): lm_loss(logits, labels[0])
    with pytest.raises(ValueError, match=r"logits must be 3-D \(B, T, vocab_size\), got shape \(5, 11\)"): lm_loss(logits[0], labels[0])


def test_kv_cache_contract():
    c = KVCache(2, 3, 5, 4)
    assert c.max_len == 5 and c.k_cache.shape == (2, 3, 5, 4)
    k, v = c.update(0, torch.ones(2, 3, 2, 4), torch.ones(2, 3, 2, 4))
    assert k.shape == (2, 3, 2, 4) and k.data_ptr() == c.k_cache.data_ptr()  # a view, no copy
    with pytest.raises(ValueError, match=r"got \(2, 3, 2, 4\) and \(2, 3, 1, 4\)"):
        c.update(2, torch.ones(2, 3, 2, 4), torch.ones(2, 3, 1, 4))
    with pytest.raises(ValueError, match="cannot write positions 4..5"):
        c.update(4, torch.ones(2, 3, 2, 4), torch.ones(2, 3, 2, 4))
    with pytest.raises(ValueError, match="cannot write positions -1"):
        c.update(-1, torch.ones(2, 3, 1, 4), torch.ones(2, 3, 1, 4))
    with pytest.raises(ValueError, match=r"\(B, n_head, T, head_dim\) = \(2, 3, T, 4\)"):
        c.update(0, torch.ones(3, 4), torch.ones(3, 4))
    c.reset()
    assert c.k_cache.abs().sum() == 0 and c.v_cache.abs().sum() == 0


def test_setup_cache_idempotent_and_reallocates_on_change():
    model = tiny()
    model.setup_cache(2, 8)
    c0 = model.transformer.h[1].attn.kv_cache
    c0.k_cache.fill_(1.0)
    model.setup_cache(2, 8)
    assert model.transformer.h[1].attn.kv_cache is c0 and c0.k_cache.abs().sum() == 0  # reused and reset
    model.setup_cache(3, 8)
    assert model.transformer.h[1].attn.kv_cache.k_cache.shape == (3, 2, 8, 32)
    model.setup_cache(3)
    assert model.transformer.h[1].attn.kv_cache.max_len == 128  # default: block_size
    model.to(torch.bfloat16).setup_cache(3)
    assert model.transformer.h[1].attn.kv_cache.k_cache.dtype == torch.bfloat16
    with pytest.raises(ValueError, match="batch_size must be a positive int, got 0"): model.setup_cache(0, 8)
    with pytest.raises(ValueError, match="max_len must be an int in"): model.setup_cache(1, 0)


def test_cache_batch_mismatch_and_bad_cache_pos():
    model = tiny()
    model.setup_cache(2, 8)
    with torch.no_grad():
        with pytest.raises(ValueError, match=r"= \(2, 2, T, 32\), got \(3, 2, 1, 32\)"):
            model(torch.zeros(3, 1, dtype=torch.long), cache_pos=0)
        with pytest.raises(ValueError, match="cache_pos must be an int >= 0 or None, got -1"):
            model(torch.zeros(2, 1, dtype=torch.long), cache_pos=-1)
        with pytest.raises(ValueError, match=r"attention_mask must have shape \(B, past \+ T\) = \(2, 4\), got \(2, 1\)"):
            model(torch.zeros(2, 1, dtype=torch.long), attention_mask=torch.ones(2, 1), cache_pos=3)


def test_bad_inputs():
    model = tiny()
    with pytest.raises(ValueError, match="empty batch"): model(torch.zeros(0, 3, dtype=torch.long))
    with pytest.raises(ValueError, match=r"token id -1 is outside the vocabulary \[0, 512\)"): model(torch.tensor([[1, -1]]))
    with pytest.raises(ValueError, match="input_ids must be a 2-D integer tensor"): model([[1, 2]])
    with pytest.raises(ValueError, match=r"sequence length 0 must be in \[1, block_size=128\]"): model(torch.zeros(1, 0, dtype=torch.long))


@pytest.mark.parametrize("kw,msg", [
    (dict(n_embd=-4), "n_embd must be a positive int, got -4"),
    (dict(block_size=2.0), "block_size must be a positive int, got 2.0"),
    (dict(vocab_size=True), "vocab_size must be a positive int, got True"),
    (dict(n_head=3), "n_head=3 must divide n_embd=64"),
    (dict(dropout=-0.1), r"dropout must be a probability in \[0, 1\), got -0.1"),
    (dict(bias="yes"), "bias must be a bool, got 'yes'"),
])
def test_config_validation(kw, msg):
    with pytest.raises(ValueError, match=msg): GPTConfig(**kw)


def test_presets_exact_names():
    assert list(PRESETS) == ["tiny", "small", "medium", "large", "gpt2"]
    assert GPTConfig.from_preset("gpt2").n_embd == 768
    for bad in ["Tiny", "gpt-2", " small", "med"]:
        with pytest.raises(ValueError, match="choose one of tiny, small, medium, large, gpt2"): GPTConfig.from_preset(bad)
    with pytest.raises(ValueError, match="n_head=5 must divide"): GPTConfig.from_preset("tiny", n_head=5)


def test_devices_and_dtypes():
    assert resolve_device("auto").type in ("cuda", "mps", "cpu")
    with pytest.raises(ValueError, match="unknown device 'tpu9'"): resolve_device("tpu9")
    model = tiny()
    x = torch.randint(0, 512, (2, 9))
    with torch.no_grad():
        ref = model(x)
        for dtype, tol in [(torch.bfloat16, 0.1), (torch.float16, 0.02)]:
            m = tiny().to(dtype)
            out = m(x)
            assert out.dtype == dtype
            torch.testing.assert_close(out.float(), ref, rtol=0, atol=tol)
            m.setup_cache(2, 9)
            step = torch.cat([m(x[:, :5], cache_pos=0)] + [m(x[:, t:t + 1], cache_pos=t) for t in range(5, 9)], 1)
            torch.testing.assert_close(step.float(), ref, rtol=0, atol=2 * tol)


def test_plot_attention_labels():
    import matplotlib; matplotlib.use("Agg")
    ax = plot_attention(causal_mask(3), tokens=["a", "b", "c"], title="t")
    assert [t.get_text() for t in ax.get_xticklabels()] == ["a", "b", "c"] and ax.get_title() == "t"


# ---------------------------------------------------------------- checkpoints
def test_save_load_round_trip(tmp_path):
    model = tiny(bias=False, n_layer=3)
    path = model.save_pretrained(tmp_path / "ck")
    assert sorted(p.name for p in path.iterdir()) == [CONFIG_NAME, WEIGHTS_NAME]
    loaded = GPT.from_pretrained(path, device="cpu")
    assert loaded.config == model.config and not loaded.training
    x = torch.randint(0, 512, (2, 7))
    with torch.no_grad(): assert torch.equal(loaded(x), model(x))
    assert loaded.lm_head.weight is loaded.transformer.wte.weight  # still tied after loading
    # a bf16 checkpoint loads in bf16 by default
    model.to(torch.bfloat16).save_pretrained(tmp_path / "bf")
    assert GPT.from_pretrained(tmp_path / "bf", device="cpu").lm_head.weight.dtype == torch.bfloat16
    # a model with KV caches saves the same files
    model.float().setup_cache(1, 8)
    model.save_pretrained(tmp_path / "cached")
    assert GPT.from_pretrained(tmp_path / "cached", "cpu").config == model.config


def test_save_is_atomic(tmp_path, monkeypatch):
    import safetensors.torch
    model = tiny()
    path = model.save_pretrained(tmp_path / "ck")
    before = {p.name: p.read_bytes() for p in path.iterdir()}
    def boom(sd, filename, metadata=None):
        open(filename, "wb").write(b"partial")
        raise OSError("disk full")
    monkeypatch.setattr(safetensors.torch, "save_file", boom)
    with pytest.raises(OSError, match="disk full"): tiny(1).save_pretrained(path)
    assert {p.name: p.read_bytes() for p in path.iterdir()} == before  # old checkpoint intact, no temp files


def test_load_errors(tmp_path):
    model = tiny()
    path = model.save_pretrained(tmp_path / "ck")
    w, cfg = (path / WEIGHTS_NAME).read_bytes(), json.loads((path / CONFIG_NAME).read_text())
    # without the checksum, a truncated file is caught by the safetensors parser
    (path / CONFIG_NAME).write_text(json.dumps({k: v for k, v in cfg.items() if k != "weights_sha256"}))
    (path / WEIGHTS_NAME).write_bytes(w[:50])
    with pytest.raises(ValueError, match="is not a valid safetensors file"): GPT.from_pretrained(path)
    (path / WEIGHTS_NAME).write_bytes(b"\x00" * 8)
    with pytest.raises(ValueError, match="is not a valid safetensors file"): GPT.from_pretrained(path)
    (path / WEIGHTS_NAME).write_bytes(w)
    assert GPT.from_pretrained(path, "cpu").config == model.config  # checksum is optional
    (path / CONFIG_NAME).write_text("{not json")
    with pytest.raises(ValueError, match="is not valid JSON"): GPT.from_pretrained(path)
    (path / CONFIG_NAME).write_text(json.dumps({**cfg, "n_head": 3}))
    with pytest.raises(ValueError, match="n_head=3 must divide"): GPT.from_pretrained(path)
    (path / CONFIG_NAME).write_text(json.dumps({**cfg, "n_layer": 1}))
    with pytest.raises(ValueError, match="unexpected tensor 'transformer.h.1.attn.c_attn.bias'"): GPT.from_pretrained(path)
    (path / CONFIG_NAME).write_text(json.dumps({**cfg, "vocab_size": 500}))
    with pytest.raises(ValueError, match=r"tensor 'transformer.wte.weight' in .* has shape \(512, 64\), but the config needs \(500, 64\)"):
        GPT.from_pretrained(path)
    (path / WEIGHTS_NAME).unlink()
    with pytest.raises(FileNotFoundError, match="no model.safetensors in"): GPT.from_pretrained(path)
    with pytest.raises(FileNotFoundError, match="no config.json in"): GPT.from_pretrained(tmp_path / "missing")


def test_never_unpickles(tmp_path):
    "A pickle disguised as `model.safetensors` is rejected, and its payload never runs."
    import pickle
    model = tiny()
    path = model.save_pretrained(tmp_path / "ck")
    cfg = json.loads((path / CONFIG_NAME).read_text()); cfg.pop("weights_sha256")
    (path / CONFIG_NAME).write_text(json.dumps(cfg))
    flag = tmp_path / "pwned"
    class Evil:
        def __reduce__(self): return (open, (str(flag), "w"))
    (path / WEIGHTS_NAME).write_bytes(pickle.dumps(Evil()))
    with pytest.raises(ValueError): GPT.from_pretrained(path)
    assert not flag.exists()


# ---------------------------------------------------------------- the one loss and the checkpoint I/O helpers
def test_lm_loss_reductions_and_ignore_index():
    from mie_lm.data import IGNORE_INDEX as DATA_IGNORE
    import mie_lm.model as M
    assert M.IGNORE_INDEX is DATA_IGNORE  # defined once, in data
    torch.manual_seed(0)
    logits, labels = torch.randn(2, 5, 11), torch.randint(0, 11, (2, 5))
    labels[1, 3:] = IGNORE_INDEX
    none = lm_loss(logits, labels, reduction="none")
    ref = F.cross_entropy(logits.reshape(10, 11), labels.reshape(10), reduction="none", ignore_index=-100).view(2, 5)
    torch.testing.assert_close(none, ref)
    torch.testing.assert_close(lm_loss(logits, labels, reduction="sum"), ref.sum())
    torch.testing.assert_close(lm_loss(logits, labels), ref.sum() / 8)
    other = labels.clone(); other[other == IGNORE_INDEX] = 7  # a different ignore value
    torch.testing.assert_close(lm_loss(logits, other, ignore_index=7), F.cross_entropy(logits.reshape(10, 11), other.reshape(10), ignore_index=7))
    assert lm_loss(logits.bfloat16(), labels, reduction="none").dtype == torch.float32
    with pytest.raises(ValueError, match="reduction must be 'mean', 'sum' or 'none', got 'avg'"): lm_loss(logits, labels, reduction="avg")


def test_atomic_write_and_file_sha256(tmp_path):
    import hashlib
    from mie_lm.model import atomic_write, file_sha256
    p = atomic_write(tmp_path / "a.bin", lambda tmp: tmp.write_bytes(b"x" * 3_000_000))
    assert file_sha256(p) == hashlib.sha256(b"x" * 3_000_000).hexdigest() and list(tmp_path.iterdir()) == [p]
    def fail(tmp): tmp.write_bytes(b"half"); raise OSError("disk full")
    with pytest.raises(OSError): atomic_write(p, fail)
    assert p.read_bytes() == b"x" * 3_000_000 and list(tmp_path.iterdir()) == [p]  # old file whole, no temp left


def test_read_config_refuses_non_objects_and_returns_extras(tmp_path):
    from mie_lm.model import read_config
    GPT(GPTConfig()).save_pretrained(tmp_path)
    cfg, meta = read_config(tmp_path, extra=("compression",))
    assert cfg == GPTConfig() and len(meta["weights_sha256"]) == 64 and meta["compression"] is None
    (tmp_path / CONFIG_NAME).write_text("[1, 2, 3]")
    with pytest.raises(ValueError, match="must hold a JSON object of GPTConfig fields, got list"): GPT.from_pretrained(tmp_path)


def test_no_private_cross_module_names():
    import re
    from pathlib import Path
    root = Path(__file__).resolve().parents[1] / "mie_lm"
    for name in ("model", "generation", "compression"):
        src = (root / f"{name}.py").read_text()
        assert not re.search(r"from \.\w+ import \([^)]*\b_\w+|from \.\w+ import [^(\n]*\b_\w+", src), name
        assert "torch._" not in src.replace("torch._C", ""), name
    assert sum((root / f).read_text().count("scaled_dot_product_attention(") for f in ("model.py", "generation.py", "compression.py")) == 1


# ---------------------------------------------------------------- modern block options
OPTIONS = [dict(norm="rmsnorm"), dict(pos_emb="rope"), dict(mlp="swiglu"), dict(bias=False),
           dict(norm="rmsnorm", pos_emb="rope", mlp="swiglu", bias=False)]
OPTION_IDS = ["rmsnorm", "rope", "swiglu", "no-bias", "all"]


@pytest.mark.parametrize("kw", OPTIONS, ids=OPTION_IDS)
def test_options_count_cache_padding_causality(kw, tmp_path):
    torch.manual_seed(0)
    model = GPT(GPTConfig(n_layer=2, n_head=4, n_embd=32, block_size=24, vocab_size=61, **kw)).eval()
    assert sum(p.numel() for p in model.parameters()) == model.config.num_params
    assert {"transformer.h.0.ln_1.weight", "transformer.h.0.attn.c_proj.weight", "transformer.h.0.mlp.c_fc.weight"} <= set(model.state_dict())
    with torch.no_grad():
        for p in model.parameters(): p.add_(0.1 * torch.randn_like(p))
        x = torch.randint(0, 61, (2, 14))
        am = torch.ones(2, 14, dtype=torch.long); am[0, :4] = 0
        full = model(x, attention_mask=am)
        model.setup_cache(2, 14)
        steps = [model(x[:, :6], attention_mask=am[:, :6], cache_pos=0)]
        steps += [model(x[:, t:t + 2], attention_mask=am[:, :t + 2], cache_pos=t) for t in range(6, 14, 2)]
        steps = torch.cat(steps, 1)
        torch.testing.assert_close(steps[1], full[1], atol=1e-5, rtol=0)
        torch.testing.assert_close(steps[0, 4:], full[0, 4:], atol=1e-5, rtol=0)
        torch.testing.assert_close(full[0, 4:], model(x[:1, 4:])[0], atol=1e-5, rtol=0)  # left padding == alone
        y = x.clone(); y[:, 9:] = (y[:, 9:] + 1) % 61
        torch.testing.assert_close(model(y)[:, :9], model(x)[:, :9], atol=1e-6, rtol=0)  # causal
    model.save_pretrained(tmp_path)
    assert torch.equal(GPT.from_pretrained(tmp_path, device="cpu")(x), model(x))


def test_option_validation():
    with pytest.raises(ValueError, match=r"pos_emb must be one of \('learned', 'rope'\), got 'alibi'"): GPTConfig(pos_emb="alibi")
    with pytest.raises(ValueError, match=r"mlp must be one of \('gelu', 'swiglu'\), got 'relu'"): GPTConfig(mlp="relu")
    with pytest.raises(ValueError, match="head_dim=3 must be even"): GPTConfig(n_embd=6, n_head=2, pos_emb="rope")
    assert "wpe" not in dict(GPT(GPTConfig(pos_emb="rope")).transformer.named_children())
    assert isinstance(GPT(GPTConfig(norm="rmsnorm")).transformer.h[0].ln_1, torch.nn.RMSNorm)

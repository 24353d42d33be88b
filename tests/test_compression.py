"Tests of mie_lm.compression on small random models (fast: no training)."
import json
import math
import subprocess
import sys

import pytest
import torch
import torch.nn as nn
from torch.nn.utils import prune

from mie_lm.compression import (HALF_DTYPES, INT8_MAX, SCHEMES, CompressedGPT, Int8Embedding, Int8Linear,
                                checkpoint_size_mb, compression_report, decode_time,
                                dequantize_int8, dynamic_int8_linear, greedy_agreement, head_importance,
                                load_compressed, magnitude_prune, mask_heads, max_logit_diff,
                                plot_perplexity_vs_size, prunable_weights, prune_heads, quantize,
                                quantize_int8, save_compressed, sparsity_by_layer, to_half)
from mie_lm.generation import generate
from mie_lm.model import FEW_ROWS, GPT, GPTConfig
from mie_lm.tokenizer import BPETokenizer


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return GPT(GPTConfig.from_preset("tiny", n_head=4)).eval()


@pytest.fixture(scope="module")
def ids():
    return torch.randint(0, 512, (3, 12), generator=torch.Generator().manual_seed(1))


def test_import_does_not_load_matplotlib():
    code = "import sys, mie_lm.compression; assert 'matplotlib' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)


def test_quantize_int8_round_trip_bound():
    w = torch.randn(64, 48) * torch.logspace(-3, 1, 64)[:, None]  # rows of very different size
    q, s = quantize_int8(w)
    assert q.dtype == torch.int8 and s.shape == (64,) and q.abs().max() <= INT8_MAX
    assert ((w - dequantize_int8(q, s)).abs() <= s[:, None] / 2 + 1e-7).all()
    assert dequantize_int8(q, s, torch.float64).dtype == torch.float64
    with pytest.raises(ValueError, match="2-D floating-point"): quantize_int8(torch.ones(3))


def test_int8_linear_and_embedding(model):
    lin = model.transformer.h[0].mlp.c_fc
    m = Int8Linear.from_linear(lin)
    x = torch.randn(2, 3, 64)
    torch.testing.assert_close(m(x), nn.functional.linear(x, dequantize_int8(m.weight, m.scale), lin.bias))
    with pytest.raises(TypeError, match="Conv1d"): Int8Linear.from_linear(nn.Conv1d(2, 2, 1))
    emb = Int8Embedding(5, 3)
    assert emb(torch.tensor([[0, 4]])).shape == (1, 2, 3)


def test_int8_compiled_few_rows_and_decode(model, ids):
    "Under `torch.compile` an `Int8Linear` with up to `FEW_ROWS` rows runs `few_rows_product` over the int8 bytes: same values, same greedy tokens."
    m = Int8Linear.from_linear(model.transformer.h[0].attn.c_attn)
    compiled = torch.compile(m, fullgraph=True)
    for rows in (1, 3, FEW_ROWS + 1):  # one row, a few (summed products), too many (`F.linear`)
        x = torch.randn(rows, 1, 64)
        torch.testing.assert_close(compiled(x), m(x), rtol=1e-5, atol=1e-5)
    q = quantize(model, "int8")
    for prompt in (ids[:1, :5], ids[:, :5]):  # batch 1 and batch 3
        torch.testing.assert_close(generate(q, prompt, max_new_tokens=12, compile=True), generate(q, prompt, max_new_tokens=12), rtol=0, atol=0)


def test_dynamic_linear_close_to_float(model):
    lin = model.transformer.h[0].attn.c_attn
    d = dynamic_int8_linear(*quantize_int8(lin.weight), lin.bias)
    x = torch.randn(4, 64)
    assert (d(x) - lin(x)).abs().max() < 0.05


@pytest.mark.parametrize("dtype", list(HALF_DTYPES))
def test_to_half(model, ids, dtype):
    h = to_half(model, dtype)
    assert h.lm_head.weight.dtype == HALF_DTYPES[dtype] and model.lm_head.weight.dtype == torch.float32
    assert max_logit_diff(model, h, ids) < 0.1
    with pytest.raises(ValueError, match="'fp8'"): to_half(model, "fp8")


@pytest.mark.parametrize("scheme", SCHEMES)
def test_quantize_model(model, ids, scheme):
    q = quantize(model, scheme)
    assert isinstance(q, CompressedGPT) and q.quantization == scheme
    assert max_logit_diff(model, q, ids) < 0.2
    out, ref = generate(q, ids[:, :4], max_new_tokens=6), generate(model, ids[:, :4], max_new_tokens=6)
    assert out.shape == (3, 10) and 0 <= greedy_agreement(ref, out, 4) <= 1
    q.setup_cache(1, 8)
    assert q.transformer.h[0].attn.kv_cache.k_cache.dtype == torch.float32  # not the int8 of `wte`
    with pytest.raises(ValueError, match=f"already quantized \\(scheme '{scheme}'\\)"): quantize(q, "int8")
    with pytest.raises(ValueError, match="'int4'"): quantize(model, "int4")
    with pytest.raises(TypeError, match="Sequential"): quantize(nn.Sequential())


def test_greedy_agreement():
    a = torch.tensor([[1, 2, 3, 4]])
    assert greedy_agreement(a, torch.tensor([[1, 2, 3, 5]]), 2) == 0.5
    with pytest.raises(ValueError, match="shapes differ"): greedy_agreement(a, a[:, :3], 2)


@pytest.mark.parametrize("make", [lambda m: m, lambda m: to_half(m, "bf16"), lambda m: quantize(m, "int8"),
                                  lambda m: quantize(m, "int8-dynamic"), lambda m: prune_heads(m, {1: [0, 3]})])
def test_save_load_round_trip(model, ids, tmp_path, make):
    m = make(model)
    save_compressed(m, tmp_path / "ck")
    back = load_compressed(tmp_path / "ck")
    assert getattr(back, "quantization", None) == getattr(m, "quantization", None)
    with torch.no_grad(): assert torch.equal(back(ids), m(ids))


def test_scheme_read_from_metadata_not_name(model, tmp_path):
    save_compressed(quantize(model, "int8-dynamic"), tmp_path / "fp32_model")
    assert load_compressed(tmp_path / "fp32_model").quantization == "int8-dynamic"
    with pytest.raises(ValueError, match="compression"): GPT.from_pretrained(tmp_path / "fp32_model")
    model.save_pretrained(tmp_path / "plain")
    with pytest.raises(ValueError, match="names no compression scheme"): load_compressed(tmp_path / "plain")
    cfg = json.loads((tmp_path / "fp32_model" / "config.json").read_text()); cfg["compression"]["scheme"] = "int8"
    (tmp_path / "fp32_model" / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(ValueError, match="says"): load_compressed(tmp_path / "fp32_model")


def test_size_on_disk(model):
    fp32, q8 = checkpoint_size_mb(model), checkpoint_size_mb(quantize(model))
    assert q8 < 0.35 * fp32 and checkpoint_size_mb(to_half(model, "fp16")) < 0.55 * fp32


@pytest.mark.parametrize("scope", ["global", "layer"])
def test_magnitude_prune(model, scope):
    p = magnitude_prune(model, 0.6, scope)
    w = torch.cat([m.weight.flatten() for m, _ in prunable_weights(p)])
    assert abs((w == 0).float().mean().item() - 0.6) < 1e-3 and not prune.is_pruned(p)
    if scope == "layer": assert all(abs(v - 0.6) < 1e-3 for v in sparsity_by_layer(p).values())
    assert max(sparsity_by_layer(model).values()) == 0.0


@pytest.mark.parametrize("bad", [1.0, -0.01, 2, "0.5", True, float("nan")])
def test_sparsity_out_of_range(model, bad):
    with pytest.raises(ValueError, match="sparsity must be a fraction in \\[0, 1\\)"): magnitude_prune(model, bad)


def test_prune_heads_equals_masking(model, ids):
    heads = {0: [1, 2], 1: [3]}
    p = prune_heads(model, heads)
    assert p.n_heads == [2, 3] and [b.attn.n_head for b in p.transformer.h] == [2, 3]
    assert p.transformer.h[0].attn.c_attn.weight.shape == (3 * 2 * 16, 64)
    with torch.no_grad(), mask_heads(model, heads): masked = model(ids)
    torch.testing.assert_close(p(ids), masked, atol=1e-5, rtol=1e-5)
    with torch.no_grad(): torch.testing.assert_close(model(ids), model(ids))  # hooks removed after the block
    p.setup_cache(3, 12)
    with torch.no_grad():
        steps = torch.cat([p(ids[:, :5], cache_pos=0)] + [p(ids[:, t:t + 1], cache_pos=t) for t in range(5, 12)], 1)
    torch.testing.assert_close(steps, p(ids), atol=1e-4, rtol=1e-4)
    assert decode_time(p, ids, 2) > 0 and decode_time(model, ids[:1, :4], 2) > 0
    # the fused decode step reads head counts from the cache: cached greedy == uncached greedy
    torch.testing.assert_close(generate(p, ids[:, :4], max_new_tokens=6), generate(p, ids[:, :4], max_new_tokens=6, use_cache=False))
    with pytest.raises(ValueError, match="keep at least one"): prune_heads(model, {0: [0, 1, 2, 3]})
    with pytest.raises(ValueError, match="head 7"): prune_heads(model, {0: [7]})
    with pytest.raises(ValueError, match="n_heads must list"): CompressedGPT(model.config, [4])


def test_head_importance(model, ids):
    imp = head_importance(model, ids, ids.roll(-1, 1))
    assert imp.shape == (2, 4) and torch.isfinite(imp).all()
    assert torch.isnan(head_importance(prune_heads(model, {0: [0]}), ids, ids.roll(-1, 1))[0, 3])


def test_compression_report_and_plot(model):
    import matplotlib; matplotlib.use("Agg")
    tok = BPETokenizer.train(["def f(x):\n    return x + 1\n" * 20, "import os\nprint(os.getcwd())\n" * 20], vocab_size=300)
    m = GPT(GPTConfig.from_preset("tiny", vocab_size=tok.vocab_size)).eval()
    variants = {"fp32": m, "int8": quantize(m), "heads": prune_heads(m, {0: [0]})}
    prompts = torch.tensor([tok.encode("def f", add_bos=True)] * 2)
    df = compression_report(variants, tok, ["def g(y):\n    return y\n", "import sys\n"], prompts, new_tokens=3, repeats=1)
    assert list(df.index) == list(variants) and df.loc["fp32", "greedy_agreement"] == 1.0
    assert df.loc["int8", "size_ratio"] < 0.5 and df.loc["heads", "tok_s_b8"] > 0 and df.loc["int8", "tok_s_b8"] > 0
    assert plot_perplexity_vs_size(df) is not None
    with pytest.raises(ValueError, match="empty"): compression_report({}, tok, ["x"], prompts)


@pytest.mark.parametrize("scheme", ["none", *SCHEMES])
def test_compression_with_modern_options(scheme, tmp_path):
    torch.manual_seed(0)
    m = GPT(GPTConfig.from_preset("tiny", n_head=4, norm="rmsnorm", pos_emb="rope", mlp="swiglu", bias=False)).eval()
    c = prune_heads(m, {0: [1]}) if scheme == "none" else quantize(m, scheme)
    x = torch.randint(0, 512, (2, 10))
    out = generate(c, x, max_new_tokens=6)
    assert out.tolist() == generate(c, x, max_new_tokens=6, use_cache=False).tolist()
    back = load_compressed(save_compressed(c, tmp_path / scheme))
    with torch.no_grad(): torch.testing.assert_close(back(x), c(x))

"""Heavier checks of `mie_lm.generation`: Hugging Face parity, chi-square tests of the samplers, cache/batch equivalences."""
import pytest
import torch
import torch.nn as nn
from hypothesis import given, settings, strategies as st

from mie_lm.generation import (SamplingConfig, apply_temperature, chi_square_pvalue, choose, decode_one_token, generate,
                               generate_text, generation_trace, min_p_filter, plot_next_token, prefill, process_logits,
                               repetition_penalty_filter, sampling_explorer, stream_generate, top_k_filter, top_p_filter)
from mie_lm.model import GPT, GPTConfig, lm_loss

torch.set_num_threads(1)
transformers = pytest.importorskip("transformers")


def model(seed=0, **kw):
    torch.manual_seed(seed)
    m = GPT(GPTConfig(**{**dict(n_layer=2, n_head=4, n_embd=32, block_size=64, vocab_size=97), **kw})).eval()
    with torch.no_grad():  # sharper than the 0.02 init, so greedy paths are not decided by rounding
        for p in m.parameters(): p.add_(0.2 * torch.randn_like(p))
    return m


def left_padded(prompts, pad=0):
    T = max(map(len, prompts))
    ids = torch.tensor([[pad] * (T - len(p)) + p for p in prompts])
    return ids, torch.tensor([[0] * (T - len(p)) + [1] * len(p) for p in prompts])


# ---------------------------------------------------------------- Hugging Face parity
@pytest.mark.parametrize("shape", [(2, 4, 32, 97), (3, 2, 48, 300)])
def test_greedy_equals_hf_generate(shape):
    n_layer, n_head, n_embd, vocab = shape
    ours = model(n_layer=n_layer, n_head=n_head, n_embd=n_embd, vocab_size=vocab)
    hf = ours.to_hf_gpt2().eval()
    ids, am = left_padded([[5, 6, 7, 8, 9], [10, 11], [12, 13, 14]])
    out = generate(ours, ids, am, max_new_tokens=30)
    with torch.no_grad():
        ref = hf.generate(ids, attention_mask=am, max_new_tokens=30, do_sample=False, pad_token_id=0)
    torch.testing.assert_close(out, ref, rtol=0, atol=0)


# ---------------------------------------------------------------- equivalences
@settings(max_examples=15, deadline=None)
@given(lengths=st.lists(st.integers(1, 12), min_size=1, max_size=4), seed=st.integers(0, 10_000))
def test_batch_equals_each_alone_and_cache_equals_no_cache(lengths, seed):
    m = model()
    g = torch.Generator().manual_seed(seed)
    prompts = [torch.randint(3, 97, (n,), generator=g).tolist() for n in lengths]
    ids, am = left_padded(prompts)
    batch = generate(m, ids, am, max_new_tokens=10)
    torch.testing.assert_close(batch, generate(m, ids, am, max_new_tokens=10, use_cache=False), rtol=0, atol=0)
    for r, p in enumerate(prompts):
        alone = generate(m, torch.tensor([p]), max_new_tokens=10)
        assert batch[r, ids.shape[1]:].tolist() == alone[0, len(p):].tolist()


def test_sampling_with_cache_equals_without():
    m = model()
    ids, am = left_padded([[5, 6, 7], [8]])
    kw = dict(max_new_tokens=20, do_sample=True, temperature=0.9, top_k=20, top_p=0.95, min_p=0.01, repetition_penalty=1.3)
    a = generate(m, ids, am, generator=torch.Generator().manual_seed(1), **kw)
    b = generate(m, ids, am, generator=torch.Generator().manual_seed(1), use_cache=False, **kw)
    torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_per_row_eos_and_pad():
    m = model()
    ids, am = left_padded([[5, 6, 7], [8, 9]])
    free = generate(m, ids, am, max_new_tokens=15)
    eos = free[0, 3 + 4].item()  # row 0's fifth new token becomes EOS
    out = generate(m, ids, am, max_new_tokens=15, eos_token_id=eos, pad_token_id=96)
    first = [(free[r, 3:] == eos).nonzero()[0].item() if (free[r, 3:] == eos).any() else None for r in range(2)]
    for r, f in enumerate(first):
        if f is None: assert out[r, 3:].tolist() == free[r, 3:out.shape[1]].tolist()
        else:
            assert out[r, 3:3 + f + 1].tolist() == free[r, 3:3 + f + 1].tolist()
            assert (out[r, 3 + f + 1:] == 96).all()


class WrappedLinear(nn.Linear):
    "A `Linear` subclass: `decode_one_token` must call it as a module (as a quantized layer would be)."
    calls = 0
    def forward(self, x):
        WrappedLinear.calls += 1
        return super().forward(x)


def test_decode_calls_swapped_layers_as_modules():
    m = model()
    ref = generate(m, torch.tensor([[5, 6, 7]]), max_new_tokens=8)
    for b in m.transformer.h:
        old = b.mlp.c_fc
        b.mlp.c_fc = WrappedLinear(old.in_features, old.out_features)
        b.mlp.c_fc.load_state_dict(old.state_dict())
    assert generate(m, torch.tensor([[5, 6, 7]]), max_new_tokens=8).tolist() == ref.tolist()
    assert WrappedLinear.calls >= 2 * 8


def assert_decoding_matches_forward(m, ids):
    "Decoding `ids` one token at a time after a one-token prefill gives the full forward's logits at every position."
    logits, state = prefill(m, ids[:, :1], max_len=ids.shape[1])
    with torch.no_grad(): full = m(ids)
    for i in range(1, ids.shape[1]):
        logits = decode_one_token(m, ids[:, i:i + 1], state)
        torch.testing.assert_close(logits, full[:, i], rtol=0, atol=1e-5)


def test_decode_one_token_matches_forward_at_block_size():
    assert_decoding_matches_forward(model(block_size=16), torch.randint(0, 97, (3, 16)))


def test_onednn_products_decode_like_hf_and_the_full_forward(monkeypatch):
    "With every weight over the oneDNN threshold, eager decoding runs oneDNN's product and still matches HF and the full forward."
    import mie_lm.model as M
    if not M.onednn_linear_available(): pytest.skip("this PyTorch build has no oneDNN linear op")
    calls = []
    monkeypatch.setattr(M, "ONEDNN_MIN_WEIGHT", 0)
    real = M.onednn_linear
    monkeypatch.setattr(M, "onednn_linear", lambda x, w, b=None: calls.append(x.shape) or real(x, w, b))
    ours = model(n_layer=3, n_head=2, n_embd=48, vocab_size=300)
    ids, am = left_padded([[5, 6, 7, 8, 9], [10, 11], [12, 13, 14]])
    out = generate(ours, ids, am, max_new_tokens=30)
    assert len(calls) == 29 * (3 * 4 + 1)  # every projection and the head of every decode step (the 5-token prompt: MKL)
    with torch.no_grad():
        ref = ours.to_hf_gpt2().eval().generate(ids, attention_mask=am, max_new_tokens=30, do_sample=False, pad_token_id=0)
    torch.testing.assert_close(out, ref, rtol=0, atol=0)
    assert_decoding_matches_forward(ours, torch.randint(0, 300, (2, 12)))


def test_batch_one_decoding_reads_the_head_copy_and_never_a_stale_one(monkeypatch):
    "Batch-1 decode steps take the head's (C, V) copy; after an optimizer step it is refused, then remade, and HF still agrees."
    import mie_lm.model as M
    served, real = [], M.HeadCopy.serves
    monkeypatch.setattr(M.HeadCopy, "serves", lambda self, layer, x: served.append(real(self, layer, x)) or served[-1])
    ours, ids = model(n_layer=3, n_head=2, n_embd=48, vocab_size=300), torch.randint(3, 300, (1, 6))

    def generate_like_hf():
        served.clear()
        out = generate(ours, ids, max_new_tokens=12)
        with torch.no_grad():
            ref = ours.to_hf_gpt2().eval().generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=12, do_sample=False, pad_token_id=0)
        torch.testing.assert_close(out, ref, rtol=0, atol=0)
        assert served == [False] + [True] * 11  # the 6-token prefill runs `lm_head`, each of the 11 decode steps the copy

    generate_like_hf()
    first = ours.head_copy
    assert first is not None and first.current(ours.lm_head)
    assert_decoding_matches_forward(ours, torch.randint(0, 300, (1, 12)))  # one row: the copy, to 1e-5
    ours.train()
    opt = torch.optim.SGD(ours.parameters(), lr=0.5)
    lm_loss(ours(ids[:, :-1]), ids[:, 1:]).backward()
    opt.step()  # an in-place change of every weight, the tied head included
    ours.eval()
    assert not first.current(ours.lm_head)
    with torch.no_grad():  # a one-row forward before any new `setup_cache`: the stale copy must not answer
        served.clear()
        torch.testing.assert_close(ours(ids[:, :1]), ours.to_hf_gpt2()(ids[:, :1]).logits, rtol=0, atol=1e-5)
        assert served == [False]
    generate_like_hf()  # `setup_cache` made a new copy of the new weight
    assert ours.head_copy is not first and ours.head_copy.current(ours.lm_head)


# ---------------------------------------------------------------- statistical tests of the samplers
LOGITS = torch.tensor([3.0, 2.5, 2.0, 2.0, 1.0, 0.5, 0.0, -0.5, -1.0, -3.0])
CASES = [dict(), dict(temperature=0.5), dict(temperature=2.0), dict(top_k=3), dict(top_k=4, temperature=1.5),
         dict(top_p=0.6), dict(top_p=0.9, temperature=0.8), dict(min_p=0.2), dict(top_k=6, top_p=0.8, min_p=0.05)]


def expected_probs(logits, temperature=1.0, top_k=None, top_p=None, min_p=None):
    "The intended distribution, computed independently with plain Python on sorted probabilities."
    z = (logits / temperature).tolist()
    order = sorted(range(len(z)), key=lambda i: (-z[i], i))
    keep = set(order[:top_k] if top_k else order)
    def renorm(ids):
        w = {i: torch.tensor(z[i]).exp().item() for i in ids}; s = sum(w.values())
        return {i: w[i] / s for i in ids}
    p = renorm(keep)
    if top_p:
        acc, nucleus = 0.0, []
        for i in [i for i in order if i in p]:
            nucleus.append(i); acc += p[i]
            if acc >= top_p: break
        p = renorm(nucleus)
    if min_p:
        top = max(p.values()); p = renorm([i for i in p if p[i] >= min_p * top])
    return torch.tensor([p.get(i, 0.0) for i in range(len(z))])


@pytest.mark.parametrize("case", CASES, ids=lambda c: ",".join(f"{k}={v}" for k, v in c.items()) or "plain")
def test_draws_follow_truncated_distribution(case):
    cfg = SamplingConfig(do_sample=True, **case)
    expected = expected_probs(LOGITS, **case)
    torch.testing.assert_close(process_logits(LOGITS[None], cfg)[0].softmax(-1), expected, rtol=0, atol=1e-6)
    draws = choose(process_logits(LOGITS.expand(40_000, -1), cfg), True, torch.Generator().manual_seed(0))
    counts = torch.bincount(draws, minlength=len(LOGITS))
    assert counts[expected == 0].sum() == 0
    assert chi_square_pvalue(counts, expected) > 1e-3


def test_chi_square_pvalue_against_known_values():
    # chi2 = 4 with 1 degree of freedom: p = 0.0455; chi2 = 0: p = 1
    assert abs(chi_square_pvalue(torch.tensor([60, 40]), torch.tensor([0.5, 0.5])) - 0.0455) < 1e-3
    assert chi_square_pvalue(torch.tensor([50, 50]), torch.tensor([0.5, 0.5])) == pytest.approx(1.0)


def test_same_seed_same_sample_independent_of_global_rng():
    m = model()
    kw = dict(max_new_tokens=20, do_sample=True, top_p=0.9)
    a = generate(m, torch.tensor([[5, 6]]), generator=torch.Generator().manual_seed(3), **kw)
    torch.manual_seed(123); torch.rand(10)
    assert generate(m, torch.tensor([[5, 6]]), generator=torch.Generator().manual_seed(3), **kw).tolist() == a.tolist()


# ---------------------------------------------------------------- properties of the filters
@settings(max_examples=50, deadline=None)
@given(st.integers(1, 40), st.floats(1e-6, 1.0), st.integers(0, 1000))
def test_filters_keep_at_least_one_and_the_argmax(k, p, seed):
    z = torch.randn(3, 40, generator=torch.Generator().manual_seed(seed)).round(decimals=1)  # rounding makes ties
    for f in (top_k_filter(z, k), top_p_filter(z, p), min_p_filter(z, p)):
        kept = f > -float("inf")
        assert kept.any(-1).all()
        assert kept.gather(-1, z.argmax(-1, keepdim=True)).all()
    assert ((top_k_filter(z, k) > -float("inf")).sum(-1) == min(k, 40)).all()


def test_filters_are_pure():
    z = torch.randn(2, 10); z0 = z.clone()
    for f in (lambda: apply_temperature(z, 0.5), lambda: top_k_filter(z, 3), lambda: top_p_filter(z, 0.5),
              lambda: min_p_filter(z, 0.3), lambda: repetition_penalty_filter(z, torch.tensor([[1], [2]]), 1.5)):
        f(); assert torch.equal(z, z0)


# ---------------------------------------------------------------- bad input
@pytest.mark.parametrize("kw, msg", [(dict(temperature=-0.1), "temperature must be a finite number >= 0 (0 means greedy), got -0.1"),
                                     (dict(top_p=0.0), "top_p must be in (0, 1], got 0.0"),
                                     (dict(top_p=1.01), "top_p must be in (0, 1], got 1.01"),
                                     (dict(top_k=0), "top_k must be an int >= 1, got 0"),
                                     (dict(min_p=2.0), "min_p must be in [0, 1], got 2.0"),
                                     (dict(repetition_penalty=-1.0), "repetition_penalty must be a finite number > 0, got -1.0"),
                                     (dict(max_new_tokens=-3), "max_new_tokens must be an int >= 0, got -3"),
                                     (dict(long_prompt="drop"), "long_prompt must be 'error' or 'truncate', got 'drop'")])
def test_bad_input_names_the_value(kw, msg):
    m = model()
    with pytest.raises(ValueError) as e: generate(m, torch.tensor([[1, 2]]), **{"max_new_tokens": 3, "do_sample": True, **kw})
    assert msg in str(e.value)


def test_nan_logits_are_an_error():
    m = model()
    with torch.no_grad(): m.lm_head.weight[5, 0] = float("nan")
    with pytest.raises(ValueError, match=r"logits contain NaN \(row 0, token 5\)"): generate(m, torch.tensor([[1, 2]]), max_new_tokens=3)


# ---------------------------------------------------------------- text helpers and teaching tools
@pytest.fixture(scope="module")
def tok():
    from mie_lm.tokenizer import BPETokenizer
    return BPETokenizer.train(["hello world, hello there. " * 20, "the quick brown fox jumps"] * 5, vocab_size=300)


def test_text_helpers(tok):
    m = model(vocab_size=len(tok))
    texts = generate_text(m, tok, ["hello", "the quick brown", ""], max_new_tokens=8)
    assert len(texts) == 3 and all(isinstance(t, str) for t in texts)
    assert texts[0] == generate_text(m, tok, "hello", max_new_tokens=8)
    stream = list(stream_generate(m, torch.tensor([tok.encode("hello")]), max_new_tokens=5))
    assert len(stream) == 5 and stream[0].shape == (1,)
    trace = generation_trace(m, tok, "hello", max_new_tokens=6, eos_token_id=None)
    assert list(trace.columns) == ["token", "id", "probability", "rank", "entropy_bits", "stop"] and len(trace) == 6


def test_long_prompt_truncation_in_generate_text(tok):
    m = model(vocab_size=len(tok), block_size=16)
    text = generate_text(m, tok, "hello world, hello there. " * 5, max_new_tokens=6, eos_token_id=None, long_prompt="truncate")
    ids = torch.tensor([tok.encode("hello world, hello there. " * 5)])
    ref = generate(m, ids, max_new_tokens=6, long_prompt="truncate")
    assert text == tok.decode(ref[0, 10:].tolist(), skip_special_tokens=True)


def test_plot_and_explorer(tok):
    import matplotlib; matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    m = model(vocab_size=len(tok))
    ax = plot_next_token(torch.randn(len(tok)), tok, top_p=0.5, n=10)
    assert len(ax.patches) == 20
    w = sampling_explorer(m, tok, "hello", max_new_tokens=4)
    w.children[1].value = 3  # top_k slider re-renders
    assert [c.description for c in w.children[:3]] == ["temperature", "top_k", "top_p"]
    plt.close("all")


# ---------------------------------------------------------------- one SamplingConfig from the caller to the sampler
def test_sampling_config_reaches_the_sampler_unchanged(monkeypatch):
    import mie_lm.generation as G
    m, seen = model(), []
    orig = G.process_logits
    monkeypatch.setattr(G, "process_logits", lambda logits, cfg, *a: seen.append(cfg) or orig(logits, cfg, *a))
    cfg = SamplingConfig(do_sample=True, temperature=0.9, top_k=20)
    a = generate(m, torch.tensor([[5, 6]]), sampling=cfg, max_new_tokens=6, generator=torch.Generator().manual_seed(0))
    assert len(seen) == 6 and all(c is cfg for c in seen)
    b = generate(m, torch.tensor([[5, 6]]), do_sample=True, temperature=0.9, top_k=20, max_new_tokens=6, generator=torch.Generator().manual_seed(0))
    assert seen[-1] == cfg and a.tolist() == b.tolist()  # shorthands build the same object


def test_values_validated_once_per_call(monkeypatch):
    import mie_lm.generation as G
    calls = []
    orig = G._check_top_p
    monkeypatch.setattr(G, "_check_top_p", lambda p: calls.append(p) or orig(p))
    generate(model(), torch.tensor([[5, 6]]), max_new_tokens=12, do_sample=True, top_p=0.9, generator=torch.Generator().manual_seed(0))
    assert calls == [0.9]


@pytest.mark.parametrize("kw, msg", [
    (dict(sampling=SamplingConfig(), temperature=0.5), "pass sampling= or keyword shorthands (temperature=), not both"),
    (dict(top_n=3), "unknown sampling option(s) ['top_n']"),
    (dict(sampling=dict(top_k=3)), "sampling must be a SamplingConfig, got dict"),
    (dict(do_sample=True, temperature=float("inf")), "temperature must be a finite number >= 0 (0 means greedy), got inf"),
    (dict(stop_strings=[""]), "stop_strings must be non-empty strings, got ['']"),
    (dict(stop_strings=["ok", ""]), "stop_strings must be non-empty strings, got ['ok', '']"),
    (dict(attention_mask=torch.tensor([[2, 2]])), "attention_mask must hold only 0 (padding) and 1 (real token), got 2"),
    (dict(attention_mask=torch.tensor([[0.5, 1.0]])), "attention_mask must hold only 0 (padding) and 1 (real token), got 0.5")])
def test_nonsense_is_refused(kw, msg):
    with pytest.raises(ValueError) as e: generate(model(), torch.tensor([[1, 2]]), max_new_tokens=3, tokenizer=object(), **kw)
    assert msg in str(e.value)


def test_forward_refuses_non_binary_mask_on_cpu():
    m = model()
    with pytest.raises(ValueError, match=r"attention_mask must hold only 0 \(padding\) and 1 \(real token\), got 2"):
        m(torch.tensor([[1, 2]]), attention_mask=torch.tensor([[2, 2]]))
    m(torch.tensor([[1, 2]]), attention_mask=torch.tensor([[False, True]]))  # bool masks need no check


def test_decode_state_and_prefill_are_the_model_forward():
    m = model()
    ids = torch.randint(0, 97, (2, 9))
    am = torch.ones(2, 9, dtype=torch.long); am[0, :2] = 0
    logits, state = prefill(m, ids[:, :4], am[:, :4], max_len=9)
    assert state.pos == 4 and state.position_ids.flatten().tolist() == [2, 4]
    with torch.no_grad(): full = m(ids, attention_mask=am)
    for i in range(4, 9):
        logits = decode_one_token(m, ids[:, i:i + 1], state)
        torch.testing.assert_close(logits, full[:, i], rtol=0, atol=1e-5)


@pytest.mark.parametrize("kw", [dict(norm="rmsnorm"), dict(pos_emb="rope"), dict(mlp="swiglu"), dict(bias=False),
                                dict(norm="rmsnorm", pos_emb="rope", mlp="swiglu", bias=False)],
                         ids=["rmsnorm", "rope", "swiglu", "no-bias", "all"])
def test_generation_with_each_block_option(kw):
    m = model(**kw)
    prompts = [[5, 6, 7, 8], [9], [10, 11]]
    ids, am = left_padded(prompts)
    greedy = generate(m, ids, am, max_new_tokens=12)
    torch.testing.assert_close(greedy, generate(m, ids, am, max_new_tokens=12, use_cache=False), rtol=0, atol=0)
    for r, p in enumerate(prompts):
        assert greedy[r, ids.shape[1]:].tolist() == generate(m, torch.tensor([p]), max_new_tokens=12)[0, len(p):].tolist()
    cfg = SamplingConfig(do_sample=True, temperature=0.8, top_p=0.9)
    a = generate(m, ids, am, sampling=cfg, max_new_tokens=12, generator=torch.Generator().manual_seed(0))
    b = generate(m, ids, am, sampling=cfg, max_new_tokens=12, generator=torch.Generator().manual_seed(0), use_cache=False)
    torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_stop_strings_decode_only_a_window(tok, monkeypatch):
    m = model(vocab_size=len(tok))
    ids = torch.tensor([tok.encode("hello")])
    free = generate(m, ids, max_new_tokens=40)
    text = tok.decode(free[0, 1:].tolist())
    stop = text[len(text) // 2: len(text) // 2 + 3]
    lengths = []
    orig = tok.decode
    monkeypatch.setattr(tok, "decode", lambda ids, *a, **k: lengths.append(len(ids)) or orig(ids, *a, **k))
    out = generate(m, ids, max_new_tokens=40, stop_strings=stop, tokenizer=tok)
    monkeypatch.undo()
    new = tok.decode(out[0, 1:].tolist())
    assert stop in new and stop not in tok.decode(out[0, 1:-1].tolist())  # stops right when the string appears
    assert max(lengths) <= len(stop.encode()) + 1  # each check decodes a bounded window, not all new tokens


# ---------------------------------------------------------------- compiled decode step
def test_compiled_decode_matches_eager_padded_batch_and_one_row():
    "`compile=True`: same greedy tokens as the eager path and HF, for a padded batch of three rows and for one row (summed products)."
    from torch._dynamo.utils import counters
    m = model(3)
    hf = m.to_hf_gpt2().eval()
    ids, am = left_padded([[5, 6, 7, 8, 9], [10, 11], [12, 13, 14]])
    out = generate(m, ids, am, max_new_tokens=20, compile=True)
    torch.testing.assert_close(out, generate(m, ids, am, max_new_tokens=20), rtol=0, atol=0)
    with torch.no_grad():
        torch.testing.assert_close(out, hf.generate(ids, attention_mask=am, max_new_tokens=20, do_sample=False, pad_token_id=0), rtol=0, atol=0)
    one = torch.tensor([[4, 8, 15, 16, 23, 42]])
    torch.testing.assert_close(generate(m, one, max_new_tokens=25, compile=True), generate(m, one, max_new_tokens=25), rtol=0, atol=0)
    graphs = counters["stats"]["unique_graphs"]
    # another prompt length, another number of new tokens, sampling: the same graph (the cache always has block_size slots)
    s = dict(do_sample=True, top_k=5, generator=torch.Generator().manual_seed(0))
    a = generate(m, one[:, :3], max_new_tokens=40, compile=True, **s)
    s["generator"] = torch.Generator().manual_seed(0)
    torch.testing.assert_close(a, generate(m, one[:, :3], max_new_tokens=40, **s), rtol=0, atol=0)
    assert counters["stats"]["unique_graphs"] == graphs


def test_compiled_decode_logits_match_full_forward():
    m = model(4)
    seq = torch.randint(0, 97, (1, 20), generator=torch.Generator().manual_seed(0))
    with torch.no_grad(): full = m(seq)
    logits, state = prefill(m, seq[:, :8], compile=True)
    assert state.compiled and m.transformer.h[0].attn.kv_cache.max_len == m.config.block_size
    for i in range(8, 20):
        torch.testing.assert_close(logits, full[:, i - 1], rtol=0, atol=1e-5)
        logits = decode_one_token(m, seq[:, i:i + 1], state)


def test_compile_flag_is_checked():
    m = model()
    with pytest.raises(ValueError, match="compile must be a bool, got 'yes'"):
        generate(m, torch.tensor([[1, 2]]), max_new_tokens=2, compile="yes")
    with pytest.raises(ValueError, match="needs use_cache=True"):
        generate(m, torch.tensor([[1, 2]]), max_new_tokens=2, compile=True, use_cache=False)

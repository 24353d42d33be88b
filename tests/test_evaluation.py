"""Tests for `mie_lm.evaluation`: perplexity accounting, sliding windows, HF agreement, tables, plots, widget."""
import math
import subprocess
import sys

import matplotlib
matplotlib.use("Agg")
import matplotlib.pyplot as plt
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings, strategies as st

from mie_lm.corpora import python_docs
from mie_lm.data import IGNORE_INDEX, LMDataset, collate_lm
from mie_lm.evaluation import (GLTR_BUCKETS, PerplexityReport, attention_explorer, attention_maps, evaluate_dataset,
                               evaluate_text, gltr_buckets, next_token_topk, perplexity, perplexity_vs_stride,
                               plot_all_heads, plot_head, plot_perplexity_comparison, plot_perplexity_hist,
                               plot_stride_curve, plot_topk, predictable_tokens, probability_html, rank_bucket,
                               save_token_html, score_sequences, sequence_perplexity, token_nll, token_table,
                               window_spans)
from mie_lm.model import GPT, GPTConfig
from mie_lm.tokenizer import BPETokenizer

torch.set_num_threads(1)  # small models: extra threads only add contention on shared CI machines
transformers = pytest.importorskip("transformers")


@pytest.fixture(scope="module")
def docs():
    return python_docs()


@pytest.fixture(scope="module")
def tok(docs):
    return BPETokenizer.train(docs.train, vocab_size=400)


@pytest.fixture(scope="module")
def model(tok):
    torch.manual_seed(0)
    m = GPT(GPTConfig(n_layer=2, n_head=2, n_embd=32, block_size=64, vocab_size=tok.vocab_size)).eval()
    with torch.no_grad():  # perturb every parameter: a random model that is far from uniform
        for p in m.parameters(): p.add_(0.2 * torch.randn_like(p))
    return m


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


# ---------------------------------------------------------------- perplexity of logits
@settings(max_examples=25, deadline=None)
@given(V=st.integers(2, 300), B=st.integers(1, 3), T=st.integers(1, 6))
def test_uniform_logits_give_vocab_size(V, B, T):
    labels = torch.randint(0, V, (B, T))
    assert perplexity(torch.zeros(B, T, V), labels) == pytest.approx(V, rel=1e-5)
    assert torch.allclose(sequence_perplexity(torch.randn(B, 1, 1).expand(B, T, V), labels), torch.full((B,), float(V)))


@settings(max_examples=25, deadline=None)
@given(V=st.integers(2, 300), T=st.integers(1, 8))
def test_perfect_model_gives_one(V, T):
    labels = torch.randint(0, V, (2, T))
    assert perplexity(F.one_hot(labels, V).float() * 100, labels) == pytest.approx(1.0, abs=1e-6)


def test_ignore_index_never_counts():
    logits, labels = torch.randn(2, 5, 7), torch.randint(0, 7, (2, 5))
    masked = labels.clone(); masked[:, 3:] = IGNORE_INDEX
    garbage = logits.clone(); garbage[:, 3:] = 1e4 * torch.randn(2, 2, 7)  # anything at ignored positions
    assert perplexity(garbage, masked) == pytest.approx(perplexity(logits[:, :3], labels[:, :3]), rel=1e-6)
    assert (token_nll(garbage, masked)[:, 3:] == 0).all()


def test_heavily_padded_batch_equals_unpadded(model, tok, docs):
    texts = [docs.valid[0][:40], docs.valid[1][:200], "x = 1", docs.valid[2][:90]]
    ds = LMDataset(texts, tok, block_size=model.config.block_size, progress=False)
    examples = [ds[i] for i in range(len(ds))]
    with torch.no_grad():
        alone = torch.cat([token_nll(model(e["input_ids"][None]), e["labels"][None])[0] for e in examples])
        batch = collate_lm(examples + [{"input_ids": torch.tensor([5]), "labels": torch.tensor([IGNORE_INDEX])}], tok.pad_id)
        logits = model(batch["input_ids"], attention_mask=batch["attention_mask"])
    assert (batch["labels"] == IGNORE_INDEX).float().mean() > 0.3  # heavy padding
    assert perplexity(logits, batch["labels"]) == pytest.approx(alone.mean().exp().item(), rel=1e-5)
    per_seq = sequence_perplexity(logits[:-1], batch["labels"][:-1])
    sizes = [len(e["labels"]) for e in examples]
    assert torch.allclose(per_seq, torch.stack([x.mean().exp() for x in alone.split(sizes)]), rtol=1e-5)


def test_errors_on_logits():
    with pytest.raises(ValueError, match="logits must be 3-D"): token_nll(torch.zeros(2, 3), torch.zeros(2, 3, dtype=torch.long))
    with pytest.raises(ValueError, match="no scored token"): perplexity(torch.zeros(1, 2, 3), torch.full((1, 2), IGNORE_INDEX))
    with pytest.raises(ValueError, match=r"sequence\(s\) \[1\]"):
        sequence_perplexity(torch.zeros(2, 2, 3), torch.tensor([[0, 1], [IGNORE_INDEX, IGNORE_INDEX]]))


# ---------------------------------------------------------------- sliding windows
@settings(max_examples=200, deadline=None)
@given(n=st.integers(2, 300), window=st.integers(1, 64), data=st.data())
def test_window_spans_score_every_token_once_with_enough_context(n, window, data):
    stride = data.draw(st.integers(1, window))
    spans = window_spans(n, window, stride)
    scored = [t for b, e, k in spans for t in range(e - k + 1, e + 1)]  # label positions
    assert scored == list(range(1, n))
    for i, (b, e, k) in enumerate(spans):
        assert 0 <= b < e <= n - 1 and e - b == min(window, e) and 1 <= k <= e - b  # every window as long as it can be
        if i: assert e - k + 1 - b >= window - stride + 1  # context of the first scored label


def test_window_spans_errors():
    with pytest.raises(ValueError, match="stride=9 must be an int in \\[1, window=8\\]"): window_spans(20, 8, 9)
    with pytest.raises(ValueError, match="stride=0"): window_spans(20, 8, 0)
    with pytest.raises(ValueError, match="window must be an int >= 1, got 0"): window_spans(20, 0, 1)
    with pytest.raises(ValueError, match="at least 2 tokens to score one, got 1"): window_spans(1, 8, 4)


def test_score_sequences_match_full_forward(model):
    torch.manual_seed(1)
    seqs = [torch.randint(0, model.config.vocab_size, (n,)) for n in (65, 2, 30, 64)]
    with torch.no_grad():
        full = [token_nll(model(s[None, :-1]), s[None, 1:])[0] for s in seqs]
    for stride in (1, 5, 64):
        for got, want in zip(score_sequences(model, seqs, 64, stride, batch_size=3), full):
            assert torch.allclose(got, want, atol=1e-4)
    short = score_sequences(model, seqs, 16, 4, batch_size=5, progress=True)
    assert [len(x) for x in short] == [64, 1, 29, 63]
    assert torch.allclose(short[0][:16], full[0][:16], atol=1e-4)
    # the context of a token scored late in a window: exactly the window before it
    with torch.no_grad():
        b, e, k = window_spans(65, 16, 4)[3]
        direct = token_nll(model(seqs[0][None, b:e]), seqs[0][None, b + 1:e + 1])[0, -k:]
    assert torch.allclose(short[0][e - k:e], direct, atol=1e-4)


class _NoHead(torch.nn.Module):
    "A model without an `lm_head` attribute: the engine falls back to full logits."
    def __init__(self, m): super().__init__(); self.m = m
    def forward(self, x): return self.m(x)


def test_score_sequences_without_lm_head(model):
    seqs = [torch.randint(0, model.config.vocab_size, (40,))]
    want = score_sequences(model, seqs, 16, 8)[0]
    assert torch.allclose(score_sequences(_NoHead(model), seqs, 16, 8)[0], want, atol=1e-5)


# ---------------------------------------------------------------- agreement with Hugging Face
def hf_documented_loop(hf, ids, max_length, stride):
    """HF's documented sliding-window loop, with the count fixed to the labels the loss really averages over.

    The documentation subtracts one label per window for the internal shift; with overlapping windows the
    dropped label is already -100, so the fix counts `(target_ids[:, 1:] != -100)` instead. A short last
    window starts further back so that it reads `max_length` tokens, as in mie_lm and lm-evaluation-harness."""
    nll_sum, n_tokens, prev_end, seq_len = 0.0, 0, 0, ids.size(1)
    for begin in range(0, seq_len, stride):
        end = min(begin + max_length, seq_len)
        trg_len = end - prev_end
        input_ids = ids[:, max(end - max_length, 0):end]
        target_ids = input_ids.clone(); target_ids[:, :-trg_len] = -100
        with torch.no_grad(): loss = hf(input_ids, labels=target_ids).loss
        n = (target_ids[:, 1:] != -100).sum().item()
        nll_sum += loss.item() * n; n_tokens += n
        prev_end = end
        if end == seq_len: break
    return math.exp(nll_sum / n_tokens), n_tokens


def test_perplexity_equals_hf_loss(model, tok, docs):
    hf = model.to_hf_gpt2().eval()
    text = docs.valid[4][:100]
    ids = torch.tensor(tok.encode(text, add_bos=True))[None]
    assert ids.shape[1] <= model.config.block_size
    with torch.no_grad(): hf_ppl = math.exp(hf(ids, labels=ids).loss.item())
    ours = evaluate_text(model, tok, text)
    assert ours.n_tokens == ids.shape[1] - 1
    assert ours.perplexity == pytest.approx(hf_ppl, rel=1e-5)


@pytest.mark.parametrize("stride", [1, 7, 32, 63])
def test_sliding_window_equals_hf_documented_loop(model, tok, docs, stride):
    hf = model.to_hf_gpt2().eval()
    text = "\n\n".join(docs.valid[:3])[:1500]
    ids = torch.tensor(tok.encode(text, add_bos=True))[None]
    # our window of W inputs scores W labels: HF's loop reads W + 1 tokens (its last logit is unused)
    hf_ppl, hf_n = hf_documented_loop(hf, ids, max_length=64, stride=stride)
    ours = evaluate_text(model, tok, text, window=63, stride=stride)
    assert ours.n_tokens == hf_n == ids.shape[1] - 1
    assert ours.perplexity == pytest.approx(hf_ppl, rel=1e-5)


# ---------------------------------------------------------------- reports
def test_report_metrics_and_counts(model, tok, docs):
    text = "\n\n".join(docs.valid[:5])
    r = evaluate_text(model, tok, text, window=32, stride=16)
    assert (r.window, r.stride, r.bos, r.n_sequences) == (32, 16, True, 1)
    assert r.n_tokens == len(tok.encode(text)) and r.n_bytes == len(text.encode()) and r.n_words == len(text.split()) + (text[0].isspace() or text[-1].isspace())
    assert r.perplexity == pytest.approx(math.exp(r.nll / r.n_tokens))
    assert r.bits_per_byte == pytest.approx(math.log2(r.byte_perplexity))
    assert r.word_perplexity == pytest.approx(r.perplexity ** (r.n_tokens / r.n_words))
    md = r._repr_markdown_()
    assert f"{r.n_tokens:,}" in md and "bits per byte" in md and "| bos | True |" in md and "per-sequence" not in md
    no_bos = evaluate_text(model, tok, text, window=32, stride=16, bos=False)
    assert no_bos.n_tokens == r.n_tokens - 1 and not no_bos.bos
    default = evaluate_text(model, tok, text)
    assert (default.window, default.stride) == (64, 32)


def test_bad_input_errors_name_the_value(model, tok):
    with pytest.raises(ValueError, match="text 0 is empty"): evaluate_text(model, tok, "")
    with pytest.raises(ValueError, match="fewer than 2 tokens"): evaluate_text(model, tok, "a", bos=False)
    with pytest.raises(ValueError, match=r"stride=40 must be an int in \[1, window=32\]"): evaluate_text(model, tok, "some text", 32, 40)
    with pytest.raises(ValueError, match=r"window=65 must be an int in \[1, block_size=64\]"): evaluate_text(model, tok, "some text", 65)
    with pytest.raises(ValueError, match="non-empty list"): evaluate_dataset(model, tok, "a string")
    with pytest.raises(ValueError, match="text 1 is empty"): evaluate_dataset(model, tok, ["ok", ""])
    with pytest.raises(ValueError, match="more than block_size \\+ 1"): token_table(model, tok, "word " * 200)
    with pytest.raises(ValueError, match="text is empty"): attention_maps(model, tok, "")
    with pytest.raises(ValueError, match="more than block_size=64"): attention_maps(model, tok, "word " * 200)
    with pytest.raises(ValueError, match="no context"): next_token_topk(model, tok, "", bos=False)


def test_evaluate_dataset_table_and_summary(model, tok, docs):
    texts = docs.valid[:30]
    df, rep = evaluate_dataset(model, tok, texts, window=32, stride=8, progress=True)
    assert list(df.columns) == ["n_tokens", "n_bytes", "n_words", "nll", "perplexity", "bits_per_byte"] and len(df) == 30
    assert isinstance(rep, PerplexityReport) and rep.n_sequences == 30
    assert rep.nll == pytest.approx(df.nll.sum()) and rep.n_tokens == df.n_tokens.sum() and rep.n_bytes == df.n_bytes.sum()
    assert rep.mean_sequence_perplexity == pytest.approx(df.perplexity.mean())
    assert "not the standard" in rep._repr_markdown_()
    for i in (0, 7, 29):
        assert df.nll[i] == pytest.approx(evaluate_text(model, tok, texts[i], 32, 8).nll, rel=1e-4)


def test_perplexity_vs_stride(model, tok, docs):
    text = "\n\n".join(docs.valid[:4])[:2000]
    df = perplexity_vs_stride(model, tok, text, [4, 16], window=16)
    assert list(df.stride) == [4, 16] and (df.window == 16).all()
    n = len(tok.encode(text, add_bos=True))
    assert list(df.passes) == [len(window_spans(n, 16, s)) for s in (4, 16)]
    assert df.perplexity[1] == pytest.approx(evaluate_text(model, tok, text, 16, 16).perplexity)
    assert plot_stride_curve(df).get_xscale() == "log"


# ---------------------------------------------------------------- token probabilities
def test_token_table_predictable_and_gltr(model, tok, docs):
    text = docs.valid[6][:80]
    tt = token_table(model, tok, text)
    assert len(tt) == len(tok.encode(text))
    assert math.exp(tt.nll.mean()) == pytest.approx(evaluate_text(model, tok, text).perplexity, rel=1e-4)
    assert (tt["rank"] >= 1).all() and ((tt["rank"] == 1) == (tt.token == tt.top_guess)).all()
    most, least = predictable_tokens(tt, k=3)
    assert len(most) == len(least) == 3 and most.prob.min() >= least.prob.max()
    assert [rank_bucket(r) for r in (1, 10, 11, 100, 101, 1000, 1001)] == ["top 10"] * 2 + ["top 100"] * 2 + ["top 1000"] * 2 + ["rest"]
    b = gltr_buckets(tt)
    assert list(b.index) == [*GLTR_BUCKETS, "rest"] and b.tokens.sum() == len(tt) and b.fraction.sum() == pytest.approx(1)


def test_probability_html_escapes_and_saves(model, tok, tmp_path):
    tt = token_table(model, tok, "if a < b and c > d: <script>")
    for by in ("prob", "rank"):
        h = probability_html(tt, by=by)
        assert h.count("<span") == len(tt) and "<script>" not in h and "&lt;" in h
    page = save_token_html(tt, tmp_path / "t.html", title="A & B").read_text()
    assert page.startswith("<!DOCTYPE html>") and "A &amp; B" in page
    with pytest.raises(ValueError, match="by must be 'prob' or 'rank', got 'x'"): probability_html(tt, by="x")


def test_next_token_topk_and_plot(model, tok):
    top = next_token_topk(model, tok, "The value", k=5)
    assert len(top) == 5 and top.prob.is_monotonic_decreasing and top.prob.sum() <= 1
    with torch.no_grad():
        probs = model(torch.tensor([tok.encode("The value", add_bos=True)]))[0, -1].softmax(-1)
    assert top.prob[0] == pytest.approx(probs.max().item(), rel=1e-5)
    assert len(next_token_topk(model, tok, "", k=3)) == 3  # bos alone is a context
    assert len(plot_topk(top).patches) == 5


def test_histograms(model, tok, docs):
    df, _ = evaluate_dataset(model, tok, docs.valid[:20], progress=False)
    ax = plot_perplexity_hist(df, label="m")
    assert "token-weighted" in ax.get_legend().get_texts()[0].get_text()
    ax = plot_perplexity_comparison({"a": df, "b": df.assign(perplexity=df.perplexity * 2)})
    assert len(ax.get_legend().get_texts()) == 2


# ---------------------------------------------------------------- attention
def test_attention_maps_bertviz_format(model, tok):
    att, tokens = attention_maps(model, tok, "def f(x): return x")
    T = len(tokens)
    assert tokens[0] == "<|bos|>" and len(att) == model.config.n_layer
    for a in att:
        assert a.shape == (1, model.config.n_head, T, T)
        assert torch.allclose(a.sum(-1), torch.ones(1, model.config.n_head, T), atol=1e-5) and (a[0].triu(1) == 0).all()
    att2, tokens2 = attention_maps(model, tok, "def f(x): return x", bos=False)
    assert len(tokens2) == T - 1 and att2[0].shape[-1] == T - 1


def test_attention_plots_and_widget(model, tok):
    att, tokens = attention_maps(model, tok, "a = b + c")
    assert plot_head(att, tokens, 1, 1).get_title() == "layer 1, head 1"
    with pytest.raises(ValueError, match="layer=2, head=0 out of range"): plot_head(att, tokens, 2, 0)
    fig = plot_all_heads(att, tokens)
    assert len(fig.axes) == model.config.n_layer * model.config.n_head
    w = attention_explorer(model, tok, "x = 1")
    img = w.children[-1].value
    assert img.startswith("<img")
    w.children[1].children[1].value = 1  # head slider
    assert w.children[-1].value.startswith("<img") and w.children[-1].value != img
    w.children[0].value = ""  # an empty text shows the error instead of failing
    assert "text is empty" in w.children[-1].value


def test_import_is_light():
    code = ("import sys, mie_lm.evaluation; bad = [m for m in ('matplotlib', 'seaborn', 'ipywidgets', 'pandas') "
            "if m in sys.modules]; assert not bad, bad")
    subprocess.run([sys.executable, "-c", code], check=True)


# ---------------------------------------------------------------- one stream, one bits per byte
def test_evaluate_file_scores_the_file_as_one_stream(model, tok, docs, tmp_path):
    from mie_lm.evaluation import evaluate_file
    text = "\n\n".join(docs.valid[:6]) + "\r\n\ttrailing  \n\n"
    f = tmp_path / "v.txt"; f.write_bytes(text.encode("utf-8"))
    r = evaluate_file(model, tok, f, window=32, stride=16)
    direct = evaluate_text(model, tok, text, window=32, stride=16)
    assert (r.nll, r.n_tokens, r.n_bytes, r.n_words) == (direct.nll, direct.n_tokens, len(f.read_bytes()), direct.n_words)
    assert r.n_tokens == len(tok.encode(text))  # every token of the file, blank lines included
    f.write_bytes(b"ok \xff"); 
    with pytest.raises(ValueError, match="not UTF-8 text: byte 3"): evaluate_file(model, tok, f)
    f.write_bytes(b"")
    with pytest.raises(ValueError, match="is empty"): evaluate_file(model, tok, f)
    with pytest.raises(FileNotFoundError, match="no file at"): evaluate_file(model, tok, tmp_path / "missing.txt")


def test_last_window_reads_a_full_window(model):
    seq = torch.randint(0, model.config.vocab_size, (50,))
    b, e, k = window_spans(50, 16, 16)[-1]
    assert (b, e, k) == (33, 49, 1)  # disjoint windows; the last one still reads 16 tokens
    with torch.no_grad(): want = token_nll(model(seq[None, b:e]), seq[None, b + 1:e + 1])[0, -k:]
    assert torch.allclose(score_sequences(model, [seq], 16, 16)[0][-k:], want, atol=1e-5)


def test_report_bits_per_byte_is_the_trainers(model, tok, docs):
    from mie_lm.training import LMScore, Trainer, TrainingConfig, bits_per_byte, token_byte_lengths
    from mie_lm.data import LMDataset
    texts = [t for t in docs.valid if 2 < len(tok.encode(t)) < model.config.block_size][:40]  # each fits one window
    _, rep = evaluate_dataset(model, tok, texts, window=model.config.block_size, progress=False)
    assert isinstance(rep, LMScore) and rep.bits_per_byte == bits_per_byte(rep.nll, rep.n_bytes)
    ds = LMDataset(texts, tok, model.config.block_size, add_eos=False, progress=False)
    trainer = Trainer(model, TrainingConfig(batch_size=8, max_steps=1, threads=1), ds, ds, token_byte_lengths(tok, model.config.vocab_size))
    ev = trainer.evaluate()
    assert ev["valid_bpb"] == pytest.approx(rep.bits_per_byte, rel=1e-3)
    assert ev["valid_loss"] == pytest.approx(rep.loss, rel=1e-3)
    assert not model.training


def lm_eval_rolling(tokens, prefix, L):
    "lm-evaluation-harness's rolling windows (context_len 1): disjoint, the first after `prefix`, the last slid back."
    first = min(L, len(tokens))
    windows, done = [([prefix] + tokens[:first - 1], tokens[:first])], first
    while done < len(tokens):
        k = min(len(tokens) - done, L); end = done + k
        windows.append((tokens[end - L - 1:end - 1], tokens[end - k:end])); done = end
    return windows


def test_disjoint_windows_equal_lm_eval_rolling_loglikelihood(model, tok, docs):
    hf = model.to_hf_gpt2().eval()
    text = "\n\n".join(docs.valid[:8])[:3000] + "\n"
    L = model.config.block_size
    ll = 0.0
    for inp, pred in lm_eval_rolling(tok.encode(text), tok.bos_id, L):
        assert len(inp) <= L
        with torch.no_grad(): logp = hf(torch.tensor([inp])).logits[0, -len(pred):].float().log_softmax(-1)
        ll += logp.gather(-1, torch.tensor(pred)[:, None]).sum().item()
    ours = evaluate_text(model, tok, text, window=L, stride=L, bos=True)
    assert -ll == pytest.approx(ours.nll, rel=1e-5)
    import re
    words, n_bytes = len(re.split(r"\s+", text)), len(text.encode("utf-8"))  # lm-eval's counts
    assert ours.word_perplexity == pytest.approx(math.exp(-ll / words), rel=1e-5)
    assert ours.bits_per_byte == pytest.approx(-ll / n_bytes / math.log(2), rel=1e-5)

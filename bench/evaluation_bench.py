#!/usr/bin/env python
"""Evaluation benchmark for `mie_lm.evaluation` (issue 7): dataset perplexity throughput against HF's loop. Not a test.

Usage: python bench/evaluation_bench.py [--repeats 3] [--threads 1] [--chars 60000] [--no-write]

The `small` preset (random weights) and a 4,096-token BPE tokenizer trained on `python_docs`; the
validation split joined into one text (its first `--chars` characters) with `<|bos|>` first. Both sides
see the same token ids and the same weights (`GPT.to_hf_gpt2`), fp32, `no_grad`/`inference_mode`:

* ours: `score_sequences(model, [ids], window=255, stride=128, batch_size=8)`: batched windows,
  `lm_head` only on scored positions.
* HF: the sliding-window loop of the transformers documentation (*Perplexity of fixed-length models*)
  with `max_length=256` and `stride=128` on `GPT2LMHeadModel`: one window per forward, `labels=` loss.
  Our window of W inputs is graded on W labels, so it reads the same tokens as HF's window of W + 1 (whose
  last logit the internal shift drops): same windows, same contexts, same scored tokens.

The documented loop counts `num_valid_tokens - 1` tokens per window; for every window after the first,
whose first label is already -100, that is one token too few, so its weighted mean is slightly off.
One change to the loop: a short last window starts further back so that it reads `max_length`
tokens, as mie_lm's `window_spans` and lm-evaluation-harness do (same passes, more context). We
time the loop verbatim, report its value, and compare our value with the loop's own losses re-weighted
by the labels its loss really averages over (`(target_ids[:, 1:] != -100).sum()`). Throughput = tokens
scored per second; the two sides alternate within each repeat; medians of `--repeats`.
Writes its section of bench/RESULTS.md (replacing the previous run's) unless --no-write.
"""
import argparse
import math
import statistics
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from mie_lm.corpora import python_docs  # noqa: E402
from mie_lm.evaluation import score_sequences  # noqa: E402
from mie_lm.model import GPT, GPTConfig  # noqa: E402
from mie_lm.tokenizer import BPETokenizer  # noqa: E402
sys.path.insert(0, str(Path(__file__).parent))
from _common import machine, write_section  # noqa: E402


def hf_loop(hf, ids, max_length, stride):
    "HF's documented loop, verbatim accounting; also returns the per-window losses and true label counts."
    nll_sum, n_tokens, prev_end_loc, seq_len, windows = 0.0, 0, 0, ids.size(1), []
    for begin_loc in range(0, seq_len, stride):
        end_loc = min(begin_loc + max_length, seq_len)
        trg_len = end_loc - prev_end_loc
        input_ids = ids[:, max(end_loc - max_length, 0):end_loc]  # a short last window slid back, as in mie_lm and lm-eval
        target_ids = input_ids.clone()
        target_ids[:, :-trg_len] = -100
        with torch.no_grad():
            neg_log_likelihood = hf(input_ids, labels=target_ids).loss
        num_loss_tokens = (target_ids != -100).sum().item() - target_ids.size(0)  # as documented
        nll_sum += neg_log_likelihood * num_loss_tokens
        n_tokens += num_loss_tokens
        windows.append((neg_log_likelihood.item(), (target_ids[:, 1:] != -100).sum().item()))
        prev_end_loc = end_loc
        if end_loc == seq_len: break
    return math.exp(nll_sum / n_tokens), windows


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=3, help="timed repeats (median reported)")
    ap.add_argument("--threads", type=int, default=1, help="torch CPU threads (1: stable on shared machines)")
    ap.add_argument("--chars", type=int, default=60_000, help="characters of the validation text to score")
    ap.add_argument("--no-write", action="store_true", help="print only; do not write bench/RESULTS.md")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    import transformers
    t0, info = time.time(), machine(transformers)
    docs = python_docs()
    tok = BPETokenizer.train(docs.train, vocab_size=4096)
    torch.manual_seed(0)
    model = GPT(GPTConfig.from_preset("small", vocab_size=tok.vocab_size)).eval()
    hf = model.to_hf_gpt2().eval()
    text = "\n\n".join(docs.valid)[:a.chars]
    ids = torch.tensor(tok.encode(text, add_bos=True))
    W, S = model.config.block_size - 1, model.config.block_size // 2
    n_scored = len(ids) - 1
    t_ours, t_hf = [], []
    for _ in range(a.repeats):
        t = time.perf_counter(); nll = score_sequences(model, [ids], W, S, batch_size=8)[0]; t_ours.append(time.perf_counter() - t)
        t = time.perf_counter(); hf_doc_ppl, windows = hf_loop(hf, ids[None], W + 1, S); t_hf.append(time.perf_counter() - t)
    ours_ppl = math.exp(nll.sum().item() / len(nll))
    hf_fixed_ppl = math.exp(sum(l * n for l, n in windows) / sum(n for _, n in windows))
    hf_count = sum(n for _, n in windows)
    tps_ours, tps_hf = n_scored / statistics.median(t_ours), n_scored / statistics.median(t_hf)
    lines = [f"## Evaluation (issue 7): `bench/evaluation_bench.py`, {time.strftime('%Y-%m-%d')}", "", info, "",
             f"**Dataset perplexity throughput, `small` (random weights) vs HF's documented sliding-window loop** "
             f"on the same weights (`to_hf_gpt2`): `python_docs` validation text, {len(text):,} characters, "
             f"{len(ids):,} tokens with `<|bos|>`, window {W} inputs (HF `max_length` {W + 1}), stride {S}, "
             f"fp32, median of {a.repeats} interleaved repeats:", "",
             "| method | tokens scored | tokens/s | seconds min..max | perplexity |", "|---|---|---|---|---|",
             f"| mie_lm `score_sequences` (batch 8 windows, `lm_head` on scored rows) | {len(nll):,} | {tps_ours:,.0f} | "
             f"{min(t_ours):.2f}..{max(t_ours):.2f} | {ours_ppl:.6f} |",
             f"| HF documented loop, its count fixed (labels the loss averages) | {hf_count:,} | {tps_hf:,.0f} | "
             f"{min(t_hf):.2f}..{max(t_hf):.2f} | {hf_fixed_ppl:.6f} |",
             f"| HF documented loop, verbatim accounting | | | | {hf_doc_ppl:.6f} |",
             f"| **ratio ours / HF** | | **{tps_ours / tps_hf:.2f}x** | | |", "",
             f"Relative perplexity difference ours vs HF (fixed count): {abs(ours_ppl - hf_fixed_ppl) / hf_fixed_ppl:.1e}; "
             f"the verbatim documented accounting differs from both by {abs(hf_doc_ppl - hf_fixed_ppl) / hf_fixed_ppl:.1e} "
             f"(it under-counts each overlapping window by one token).", "",
             f"Total bench time {time.time() - t0:.0f} s.", ""]
    report = "\n".join(lines)
    print(report)
    if not a.no_write:
        write_section("evaluation", report)


if __name__ == "__main__":
    main()

#!/usr/bin/env python
"""Model benchmark for `mie_lm.model` (issue 4): training throughput against Hugging Face, and memory. Not a test.

Usage: python bench/model_bench.py [--repeats 5] [--threads 1] [--no-write]
1. Throughput, side by side: forward + backward tokens/s of the `small` preset against Hugging Face's
   `GPT2LMHeadModel` of the same shape with the same weights (`GPT.to_hf_gpt2`), same batch, same loss
   (`lm_loss` on the logits), plain loop. The two models alternate within each repeat so that drift in
   the machine's load hits both; we report the median of `--repeats` and the ratio.
2. Every preset's training tokens/s (forward + backward, batch 4 x 128) and decoding tokens/s with the
   KV cache (batch 1, 64 new tokens after a 64-token prompt): the numbers quoted in nbs/03_model.ipynb.
3. Memory of one full training-mode forward of `small` at block_size 1024 (batch 2 x 1024 tokens):
   the bytes autograd saves for the backward pass (unique storages seen by `saved_tensors_hooks`,
   parameters excluded) next to the analytical estimate below, for ours and for Hugging Face's model;
   plus the growth of peak RSS (Linux VmHWM, reset through /proc/self/clear_refs) in a fresh process.
Writes its section of bench/RESULTS.md (replacing the previous run's) unless --no-write.

Analytical estimate (fp32, per token, Korthikanti et al. 2022 adapted to this model: fused attention,
no dropout). Each block keeps its input to ln_1 (C), ln_1's output for c_attn (C), q, k, v (3C, one
storage), the attention output (C; the fused kernel writes it already in (B, T, n_head, head_dim)
order, so the transpose back to (B, T, C) for c_proj costs no copy), ln_2's input and output (2C), the
MLP's hidden layer before and after GELU (8C): 16C, plus LayerNorm statistics and the attention
log-sum-exp (4 + n_head). After the blocks: ln_f's input and output (2C + 2) and the logits (V).
(For comparison, Korthikanti et al. count 34C + 5 n_head T bytes per token and layer for fp16 with
unfused attention and dropout masks.)
"""
import argparse
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from mie_lm.model import GPT, GPTConfig, PRESETS, lm_loss  # noqa: E402
sys.path.insert(0, str(Path(__file__).parent))
from _common import machine, write_section  # noqa: E402

MiB = 2**20


def train_step_time(model, x, y, forward):
    "Seconds for one forward + backward pass of `model` on batch `x` with labels `y`."
    model.zero_grad(set_to_none=True)
    t0 = time.perf_counter()
    lm_loss(forward(model, x), y).backward()
    return time.perf_counter() - t0


def ours_fwd(m, x): return m(x)
def hf_fwd(m, x): return m(input_ids=x).logits


def compare_with_hf(repeats):
    "Median fwd+bwd tokens/s of `small` and of HF GPT-2 with the same shape and weights, interleaved."
    torch.manual_seed(0)
    ours = GPT(GPTConfig.from_preset("small")).train()
    hf = ours.to_hf_gpt2().train()
    B, T = 8, ours.config.block_size
    x = torch.randint(0, ours.config.vocab_size, (B, T)); y = torch.roll(x, -1, 1)
    with torch.no_grad(): err = (ours.eval()(x[:2]) - hf.eval()(input_ids=x[:2]).logits).abs().max().item()
    ours.train(); hf.train()
    for _ in range(2): train_step_time(ours, x, y, ours_fwd); train_step_time(hf, x, y, hf_fwd)  # warm up
    t_ours, t_hf = [], []
    for _ in range(repeats):
        t_ours.append(train_step_time(ours, x, y, ours_fwd)); t_hf.append(train_step_time(hf, x, y, hf_fwd))
    ours_tps, hf_tps = B * T / statistics.median(t_ours), B * T / statistics.median(t_hf)
    return dict(B=B, T=T, ours=ours_tps, hf=hf_tps, ratio=ours_tps / hf_tps, err=err,
                hf_attn=hf.config._attn_implementation, spread_ours=(min(t_ours), max(t_ours)), spread_hf=(min(t_hf), max(t_hf)))


def preset_speeds(repeats):
    "Per preset: parameters, fwd+bwd tokens/s at 4 x 128, decode tokens/s with the KV cache at batch 1."
    rows = []
    for name in ["tiny", "small", "medium", "large"]:
        torch.manual_seed(0)
        model = GPT(GPTConfig.from_preset(name)).train()
        x = torch.randint(0, model.config.vocab_size, (4, 128)); y = torch.roll(x, -1, 1)
        train_step_time(model, x, y, ours_fwd)
        train_tps = 4 * 128 / statistics.median(train_step_time(model, x, y, ours_fwd) for _ in range(repeats))
        model.eval().setup_cache(1, 128)
        with torch.no_grad():
            model(x[:1, :64], cache_pos=0)
            t0 = time.perf_counter()
            for t in range(64, 128): model(x[:1, t:t + 1], cache_pos=t)
            decode_tps = 64 / (time.perf_counter() - t0)
        rows.append((name, model.config.num_params, train_tps, decode_tps))
    return rows


def saved_bytes(model, x, forward):
    "Bytes of the unique non-parameter storages autograd saves in one forward (plus the logits), and the logits."
    params = {p.untyped_storage().data_ptr() for p in model.parameters()}
    seen = {}
    def pack(t):
        s = t.untyped_storage()
        if s.data_ptr() not in params: seen[s.data_ptr()] = s.nbytes()
        return t
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        logits = forward(model, x)
    seen.setdefault(logits.untyped_storage().data_ptr(), logits.untyped_storage().nbytes())
    return sum(seen.values())


def estimate_bytes(c: GPTConfig, B, T, bytes_per_el=4):
    "Analytical activation bytes of one training-mode forward (module docstring)."
    per_token = c.n_layer * (16 * c.n_embd + 4 + c.n_head) + 2 * c.n_embd + 2 + c.vocab_size
    return B * T * per_token * bytes_per_el


def _vm(field):
    "A `/proc/self/status` field (VmRSS, VmHWM) in bytes."
    for line in open("/proc/self/status"):
        if line.startswith(field + ":"): return int(line.split()[1]) * 1024


def rss_child(grad: bool):
    "In this (fresh) process: peak RSS growth of one forward of `small` at 2 x 1024."
    torch.manual_seed(0)
    model = GPT(GPTConfig.from_preset("small", block_size=1024)).train()
    x = torch.randint(0, 4096, (2, 1024))
    with torch.no_grad(): model(x[:, :8])  # load kernels before the baseline
    with open("/proc/self/clear_refs", "w") as f: f.write("5")  # reset VmHWM to the current RSS
    base = _vm("VmRSS")
    with torch.set_grad_enabled(grad): logits = model(x)
    print((_vm("VmHWM") - base) / MiB)


def memory():
    "Saved-activation bytes of ours and HF's `small` at 2 x 1024, the estimate, and peak RSS growth."
    torch.manual_seed(0)
    cfg = GPTConfig.from_preset("small", block_size=1024)
    ours = GPT(cfg).train()
    hf = ours.to_hf_gpt2().train()
    x = torch.randint(0, cfg.vocab_size, (2, 1024))
    out = dict(B=2, T=1024, estimate=estimate_bytes(cfg, 2, 1024) / MiB,
               ours=saved_bytes(ours, x, ours_fwd) / MiB, hf=saved_bytes(hf, x, hf_fwd) / MiB)
    for grad in (True, False):
        try:
            r = subprocess.run([sys.executable, __file__, "--rss-child", str(int(grad))], capture_output=True, text=True, check=True)
            out[f"rss_grad{int(grad)}"] = float(r.stdout.strip().splitlines()[-1])
        except (subprocess.CalledProcessError, ValueError, IndexError, OSError) as e:
            out[f"rss_grad{int(grad)}"] = f"n/a ({type(e).__name__})"
    return out


def fmt_mib(v): return f"{v:.1f} MiB" if isinstance(v, float) else v


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=5, help="timed repeats per measurement (median reported)")
    ap.add_argument("--threads", type=int, default=1, help="torch CPU threads (1: stable on shared machines)")
    ap.add_argument("--no-write", action="store_true", help="print only; do not write bench/RESULTS.md")
    ap.add_argument("--rss-child", type=int, default=None, help=argparse.SUPPRESS)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    if a.rss_child is not None: return rss_child(bool(a.rss_child))
    t0 = time.time()
    import transformers
    info = machine(transformers)
    hf = compare_with_hf(a.repeats)
    presets = preset_speeds(max(3, a.repeats // 2))
    mem = memory()
    lines = [f"## Model (issue 4): `bench/model_bench.py`, {time.strftime('%Y-%m-%d')}", "", info, "",
             f"**Training throughput, `small` vs Hugging Face `GPT2LMHeadModel`** (same shape and weights, "
             f"batch {hf['B']} x {hf['T']}, fp32, forward + backward, median of {a.repeats} interleaved repeats; "
             f"HF attention `{hf['hf_attn']}`; logits max abs difference {hf['err']:.1e}):", "",
             "| model | tokens/s | step time min..max (s) |", "|---|---|---|",
             f"| mie_lm `GPT` | {hf['ours']:,.0f} | {hf['spread_ours'][0]:.3f}..{hf['spread_ours'][1]:.3f} |",
             f"| HF `GPT2LMHeadModel` | {hf['hf']:,.0f} | {hf['spread_hf'][0]:.3f}..{hf['spread_hf'][1]:.3f} |",
             f"| **ratio ours / HF** | **{hf['ratio']:.2f}x** | |", "",
             "**Presets** (fp32; training = forward + backward at batch 4 x 128; decoding = KV-cached, batch 1, "
             "64 tokens after a 64-token prompt):", "",
             "| preset | parameters | train tokens/s | decode tokens/s |", "|---|---|---|---|",
             *[f"| {n} | {p:,} | {tr:,.0f} | {de:,.0f} |" for n, p, tr, de in presets], "",
             f"**Memory of one full training-mode forward of `small` at block_size 1024** "
             f"(batch {mem['B']} x {mem['T']}, fp32):", "",
             "| quantity | value |", "|---|---|",
             f"| analytical activation estimate (docstring of `bench/model_bench.py`) | {mem['estimate']:.1f} MiB |",
             f"| measured: tensors saved for backward + logits, mie_lm `GPT` | {mem['ours']:.1f} MiB |",
             f"| measured: same, HF `GPT2LMHeadModel` | {mem['hf']:.1f} MiB |",
             f"| peak RSS growth, training-mode forward (fresh process) | {fmt_mib(mem['rss_grad1'])} |",
             f"| peak RSS growth, `no_grad` forward (fresh process) | {fmt_mib(mem['rss_grad0'])} |", "",
             f"Total bench time {time.time() - t0:.0f} s.", ""]
    report = "\n".join(lines)
    print(report)
    if not a.no_write:
        write_section("model", report)


if __name__ == "__main__":
    main()

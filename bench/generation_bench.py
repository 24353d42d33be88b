#!/usr/bin/env python
"""Generation benchmark for `mie_lm.generation`: `generate` against Hugging Face `generate()`. Not a test.

Usage: python bench/generation_bench.py [--repeats 3] [--threads 1] [--no-compile] [--no-write]
Same weights on both sides (`GPT.to_hf_gpt2`), fp32, CPU, greedy, a 16-token prompt, EOS off so every run
produces the same number of tokens; the sides alternate within each repeat, in an order rotated from repeat to repeat (on this machine the run right
after an HF `generate` measured slower, whichever model it was), and we report the median.
1. Batch 1, 256 new tokens: a 4-layer 128-wide model (vocab 4096), the `small` preset, and the 124M shape
   (12 layers, 768 wide, vocab 8192; 128 new tokens and 2 repeats there, to keep the run short). For
   the small models also a bare loop calling `GPT.forward` with the KV cache and an int `cache_pos` (no sampling,
   no stop checks: what is left of `generate` is the same forward path plus the loop's bookkeeping).
   At the 124M shape: the fraction of the memory-bandwidth floor, i.e. (weight bytes read per token /
   read bandwidth measured in this run) / measured seconds per token.
2. Batch 8: tokens/s (8 rows), the ratio to batch 1, and compiled (where the summed products of `apply_linear` serve all 8 rows).
3. KV cache on vs off at 512 new tokens (one run each; at the 124M shape the uncached run, about 10 minutes,
   is estimated from full forwards timed at 5 lengths between 16 and 527 tokens, integrated over the 512 steps).
4. With `generate(..., compile=True)` (the decode step compiled by `torch.compile`, `compiled_decode_step`) at batch 1:
   tokens/s, the first call's compile time from a cold compile cache (a fresh TORCHINDUCTOR_CACHE_DIR), and the
   break-even: the number of new tokens after which compiling has paid for itself.
Writes its section of bench/RESULTS.md (replacing the previous run's) unless --no-write.
"""
import argparse
import os
import statistics
import tempfile
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from mie_lm.generation import generate  # noqa: E402
from mie_lm.model import GPT, GPTConfig  # noqa: E402
sys.path.insert(0, str(Path(__file__).parent))
from _common import machine, write_section  # noqa: E402

SHAPES = {"4x128 (V 4096)": dict(n_layer=4, n_head=4, n_embd=128, block_size=1024, vocab_size=4096),
          "small (4x256, V 4096)": dict(n_layer=4, n_head=4, n_embd=256, block_size=1024, vocab_size=4096),
          "124M shape (12x768, V 8192)": dict(n_layer=12, n_head=12, n_embd=768, block_size=1024, vocab_size=8192)}
PROMPT = 16


def timed(f):
    t0 = time.perf_counter(); f(); return time.perf_counter() - t0


def ours(m, x, n, **kw): return lambda: generate(m, x, max_new_tokens=n, **kw)


def hf_gen(hf, x, n):
    def run():
        with torch.no_grad():
            return hf.generate(x, attention_mask=torch.ones_like(x), max_new_tokens=n, min_new_tokens=n, do_sample=False, pad_token_id=0)
    return run


def forward_loop(m, x, n):
    "Greedy decoding calling `GPT.forward` with the KV cache each step (what a first version would do)."
    def run():
        with torch.no_grad():
            m.setup_cache(x.shape[0], x.shape[1] + n)
            logits = m(x, cache_pos=0)[:, -1]
            for i in range(n - 1):
                logits = m(logits.argmax(-1, keepdim=True), cache_pos=x.shape[1] + i)[:, -1]
    return run


def no_cache_estimate(m, n, points=5):
    "Seconds of `n` uncached steps: one full forward per step, timed at `points` lengths and interpolated (trapezoid)."
    lengths = torch.linspace(PROMPT, PROMPT + n - 1, points).round().long().tolist()
    with torch.no_grad():
        secs = [timed(lambda: m(torch.randint(3, m.config.vocab_size, (1, L)))) for L in lengths]
    return sum((secs[i] + secs[i + 1]) / 2 * (lengths[i + 1] - lengths[i]) for i in range(points - 1)) + (secs[0] + secs[-1]) / 2


def read_bandwidth(nbytes=512 * 2**20, repeats=5):
    "Bytes/s of summing a fp32 tensor much larger than the caches (best of `repeats`)."
    a = torch.ones(nbytes // 4)
    a.sum()
    return nbytes / min(timed(a.sum) for _ in range(repeats))


def threads_table(m, weight_bytes, base_threads, n=64, repeats=3):
    "124M shape at 1 and 2 threads: eager, compiled and HF tokens/s, and the floor at the bandwidth of that many threads."
    hf = m.to_hf_gpt2().eval()
    x = torch.randint(3, m.config.vocab_size, (1, PROMPT))
    out = ["**124M shape, batch 1, by thread count** (64 new tokens, median of 3 interleaved repeats; the floor uses the read "
           "bandwidth measured with the same number of threads):", "",
           "| threads | read GB/s | floor tokens/s | eager tokens/s | compiled tokens/s | HF tokens/s | eager / HF | compiled / HF | compiled % of floor |",
           "|---|---|---|---|---|---|---|---|---|"]
    for th in (1, 2):
        torch.set_num_threads(th)
        runs = {"ours": ours(m, x, n), "compiled": ours(m, x, n, compile=True), "hf": hf_gen(hf, x, n)}
        for f in runs.values(): f()  # warm-up (a new thread count recompiles the compiled step)
        t = {k: [] for k in runs}
        keys = list(runs)
        for r in range(repeats):
            for k in keys[r % 3:] + keys[:r % 3]: t[k].append(timed(runs[k]))
        tps = {k: n / statistics.median(v) for k, v in t.items()}
        bw = read_bandwidth()
        floor_tps = bw / weight_bytes
        out.append(f"| {th} | {bw / 1e9:.1f} | {floor_tps:.1f} | {tps['ours']:.1f} | {tps['compiled']:.1f} | {tps['hf']:.1f} | "
                   f"{tps['ours'] / tps['hf']:.2f}x | **{tps['compiled'] / tps['hf']:.2f}x** | **{tps['compiled'] / floor_tps:.0%}** |")
    torch.set_num_threads(base_threads)
    return out + [""]


def compare(name, repeats, n, B=1, loop=False, compiled=False):
    torch.manual_seed(0)
    m = GPT(GPTConfig(**SHAPES[name])).eval(); hf = m.to_hf_gpt2().eval()
    x = torch.randint(3, m.config.vocab_size, (B, PROMPT))
    ref = hf_gen(hf, x, 16)()
    same = torch.equal(generate(m, x, max_new_tokens=16), ref)  # also warms up both
    extra = {}
    if compiled:  # the first call compiles (cold cache): its time beyond an eager call of the same length
        eager_s = timed(lambda: generate(m, x, max_new_tokens=16))
        first_s = timed(lambda: extra.setdefault("out", generate(m, x, max_new_tokens=16, compile=True)))
        extra = dict(compile_s=first_s - eager_s, same_compiled=torch.equal(extra["out"], ref))
    runs = {"ours": ours(m, x, n), "hf": hf_gen(hf, x, n)} | ({"loop": forward_loop(m, x, n)} if loop else {}) | (
        {"compiled": ours(m, x, n, compile=True)} if compiled else {})
    t = {k: [] for k in runs}
    keys = list(runs)
    for r in range(repeats):  # rotate the order: whatever runs right after HF's generate measured slower here
        for k in keys[r % len(keys):] + keys[:r % len(keys)]: t[k].append(timed(runs[k]))
    tps = {k: B * n / statistics.median(v) for k, v in t.items()}
    return dict(model=m, tps=tps, same=same, n=n, B=B, spread={k: (min(v), max(v)) for k, v in t.items()}, **extra)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeats", type=int, default=3); ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--no-write", action="store_true"); ap.add_argument("--no-compile", action="store_true")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    os.environ["TORCHINDUCTOR_CACHE_DIR"] = tempfile.mkdtemp(prefix="inductor_cold_")  # cold compiles, as on a fresh machine
    comp = not args.no_compile
    import transformers
    t_start, info = time.time(), machine(transformers)
    lines = []
    big = "124M shape (12x768, V 8192)"
    rows = {name: compare(name, args.repeats, 256, loop=True, compiled=comp) for name in list(SHAPES)[:2]}
    rows[big] = compare(big, 2, 128, compiled=comp)
    bw = read_bandwidth()
    m = rows[big]["model"]
    weight_bytes = sum(p.numel() * p.element_size() for n, p in m.named_parameters() if "wpe" not in n)  # one wpe row only
    floor_s = weight_bytes / bw
    lines += ["**Batch 1, greedy** (fp32, 16-token prompt; median of interleaved repeats; identical tokens checked on 16 tokens):", "",
              "| model | new tokens | mie_lm tokens/s | HF tokens/s | **ratio** | bare `GPT.forward` loop tokens/s | same tokens as HF |",
              "|---|---|---|---|---|---|---|"]
    for name, r in rows.items():
        loop = f"{r['tps']['loop']:,.0f}" if "loop" in r["tps"] else "-"
        lines.append(f"| {name} | {r['n']} | {r['tps']['ours']:,.0f} | {r['tps']['hf']:,.0f} | **{r['tps']['ours'] / r['tps']['hf']:.2f}x** | {loop} | {r['same']} |")
    frac = floor_s * rows[big]["tps"]["ours"]
    compiled_frac = f", compiled **{floor_s * rows[big]['tps']['compiled']:.0%}**" if comp else ""
    lines += ["", f"124M shape: {weight_bytes / 2**20:,.0f} MiB of weights read per token; read bandwidth measured now "
              f"{bw / 1e9:.1f} GB/s (sum over 512 MiB, one thread) -> floor {floor_s * 1e3:.1f} ms/token = {1 / floor_s:.1f} tokens/s; "
              f"mie_lm reaches **{frac:.0%}** of the floor{compiled_frac}, HF {floor_s * rows[big]['tps']['hf']:.0%}.", ""]
    if comp:
        lines += ["**Batch 1, greedy, compiled decode step** (`generate(..., compile=True)`; same runs as above, interleaved with them; "
                  "compile time = first call minus an eager call, cold compile cache):", "",
                  "| model | compiled tokens/s | **ratio to HF** | ratio to eager `generate` | same tokens as HF | compile s | break-even (new tokens) |",
                  "|---|---|---|---|---|---|---|"]
        for name, r in rows.items():
            c, e = r["tps"]["compiled"], r["tps"]["ours"]
            gain = 1 / e - 1 / c  # seconds saved per token
            be = f"{r['compile_s'] / gain:,.0f}" if gain > 0 else "never"
            lines.append(f"| {name} | {c:,.0f} | **{c / r['tps']['hf']:.2f}x** | {c / e:.2f}x | {r['same_compiled']} | {r['compile_s']:.1f} | {be} |")
        lines.append("")
        lines += threads_table(rows[big]["model"], weight_bytes, args.threads)
    b8 = {name: compare(name, 2 if name == big else args.repeats, 128 if name == big else 256, B=8, compiled=comp) for name in (list(SHAPES)[0], big)}
    lines += ["**Batch 8, greedy** (tokens/s counts all 8 rows):", "",
              "| model | mie_lm tokens/s | ratio to batch 1 | HF tokens/s | ratio to HF | compiled tokens/s | **compiled ratio to HF** | compiled same tokens as HF |",
              "|---|---|---|---|---|---|---|---|"]
    for name, r in b8.items():
        c = (f"{r['tps']['compiled']:,.0f} | **{r['tps']['compiled'] / r['tps']['hf']:.2f}x** | {r['same_compiled']}" if comp else "- | - | -")
        lines.append(f"| {name} | {r['tps']['ours']:,.0f} | {r['tps']['ours'] / rows[name]['tps']['ours']:.1f}x | {r['tps']['hf']:,.0f} | {r['tps']['ours'] / r['tps']['hf']:.2f}x | {c} |")
    lines += ["", "**KV cache on vs off, 512 new tokens, batch 1** (one run each):", "",
              "| model | cache on tokens/s | cache off tokens/s | ratio |", "|---|---|---|---|"]
    for name in (list(SHAPES)[0], big):
        torch.manual_seed(0); m = GPT(GPTConfig(**SHAPES[name])).eval()
        x = torch.randint(3, m.config.vocab_size, (1, PROMPT))
        on = timed(ours(m, x, 512))
        off = timed(ours(m, x, 512, use_cache=False)) if name != big else no_cache_estimate(m, 512)
        lines.append(f"| {name}{' (cache off estimated)' if name == big else ''} | {512 / on:,.1f} | {512 / off:,.1f} | **{off / on:.1f}x** |")
    lines += ["", f"Total bench time {time.time() - t_start:.0f} s."]
    head = [f"## Generation: `bench/generation_bench.py`, {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}", "", info, ""]
    text = "\n".join(head + lines) + "\n"
    print(text)
    if not args.no_write:
        write_section("generation", text)


if __name__ == "__main__":
    main()

"""Compression benchmark (issue 8): int8 / half / pruned variants against fp32.

Speed: GPT-2 124M shape (random weights: speed does not depend on their values), greedy decode with the
KV cache, batch 1 and 8, median of interleaved repeats, one CPU thread (the machine is shared).
Quality: the `small` preset trained briefly on the built-in Python docs corpus; perplexity and bits per
byte on its whole validation split.
Floors: the same 124M shape at batch 1, eager and with the compiled decode step (`generate(..., compile=True)`), each
against its bandwidth floor (bytes of the weights read per token / read bandwidth measured in the same run).
Usage: python bench/compression_bench.py [--steps 300] [--new-tokens 32] [--repeats 3] [--part all|speed|quality|floors] [--no-write]
Writes its section of bench/RESULTS.md (replacing the previous run's) unless --no-write.
"""
import argparse
import sys
import time
from pathlib import Path

import torch

from mie_lm.compression import (_decode_speeds, _param_counts, checkpoint_size_mb, compression_report,
                                magnitude_prune, prune_heads, quantize, to_half)
from mie_lm.corpora import python_docs
from mie_lm.data import PackedDataset, packed_tokens
from mie_lm.model import GPT, GPTConfig
from mie_lm.tokenizer import BPETokenizer
from mie_lm.training import Trainer, TrainingConfig

sys.path.insert(0, str(Path(__file__).parent))
from _common import machine, write_section  # noqa: E402


def speed_124m(new_tokens: int, repeats: int):
    "Size, parameters and decode tokens/s of fp32 / int8 / int8-dynamic at the GPT-2 124M shape."
    import pandas as pd
    torch.manual_seed(0)
    fp32 = GPT(GPTConfig.from_preset("gpt2")).eval()
    variants = {"fp32": fp32, "int8-dynamic": quantize(fp32, "int8-dynamic"), "int8": quantize(fp32, "int8")}
    prompts = torch.randint(0, fp32.config.vocab_size, (8, 16))
    rows = {n: dict(size_mb=checkpoint_size_mb(m), params=_param_counts(m)[0]) for n, m in variants.items()}
    for b in (1, 8):
        for n, v in _decode_speeds(variants, prompts[:b], new_tokens, repeats).items(): rows[n][f"tok_s_b{b}"] = v
    df = pd.DataFrame(rows).T
    df.insert(1, "size_ratio", df.size_mb / df.size_mb["fp32"])
    for b in (1, 8): df[f"speedup_b{b}"] = df[f"tok_s_b{b}"] / df[f"tok_s_b{b}"]["fp32"]
    return df


def floors_124m(new_tokens: int, repeats: int) -> list[str]:
    "Batch-1 tokens/s of fp32 / int8-dynamic / weight-only int8, eager and compiled, and the fraction of each one's floor."
    import statistics
    from mie_lm.generation import generate
    torch.manual_seed(0)
    fp32 = GPT(GPTConfig.from_preset("gpt2")).eval()
    models = {"fp32": fp32, "int8-dynamic": quantize(fp32, "int8-dynamic"), "int8": quantize(fp32, "int8")}
    x = torch.randint(0, fp32.config.vocab_size, (1, 16))
    runs = {"fp32": ("fp32", False), "fp32 compiled": ("fp32", True), "int8-dynamic": ("int8-dynamic", False),
            "int8 compiled (weight-only)": ("int8", True)}
    compile_s = {}
    for name, (m, comp) in runs.items():  # warm-up; the compiled ones compile here
        t0 = time.perf_counter(); generate(models[m], x, max_new_tokens=4, compile=comp); compile_s[name] = time.perf_counter() - t0
    times = {name: [] for name in runs}
    for r in range(repeats):
        order = list(runs)[r % len(runs):] + list(runs)[:r % len(runs)]
        for name in order:
            m, comp = runs[name]
            t0 = time.perf_counter(); generate(models[m], x, max_new_tokens=new_tokens, compile=comp); times[name].append(time.perf_counter() - t0)
    a = torch.ones(2**27); a.sum()
    ts = []
    for _ in range(5):
        t0 = time.perf_counter(); a.sum(); ts.append(time.perf_counter() - t0)
    bw = a.nbytes / min(ts)
    wpe = fp32.transformer.wpe.weight.numel() * 4  # one row of it is read per token, not the table
    out = [f"**Bandwidth floors at the GPT-2 124M shape, batch 1** ({new_tokens} new tokens after a 16-token prompt, median of "
           f"{repeats} interleaved repeats; read bandwidth {bw / 1e9:.1f} GB/s, one thread; weight bytes = checkpoint size "
           "without the position table; the compiled step's first call, compile included, in the last column):", "",
           "| variant | weight MB read per token | floor tokens/s | tokens/s | **% of floor** | ratio to fp32 eager | first call s |",
           "|---|---|---|---|---|---|---|"]
    base = new_tokens / statistics.median(times["fp32"])
    for name, (m, comp) in runs.items():
        nbytes = checkpoint_size_mb(models[m]) * 1e6 - wpe
        floor, tps = bw / nbytes, new_tokens / statistics.median(times[name])
        out.append(f"| {name} | {nbytes / 1e6:.0f} | {floor:.0f} | {tps:.1f} | **{tps / floor:.0%}** | {tps / base:.2f}x | {compile_s[name]:.1f} |")
    return out + [""]


def quality_small(steps: int):
    "`compression_report` of the `small` preset trained for `steps` steps on python_docs."
    docs = python_docs()
    tok = BPETokenizer.train(docs.train, vocab_size=4096)
    stream = packed_tokens(docs, tok, "train", progress=False)
    torch.manual_seed(0)
    model = GPT(GPTConfig.from_preset("small", vocab_size=tok.vocab_size, block_size=128))
    ds = PackedDataset(stream, 128, mode="random", n_samples=steps * 16, seed=0)
    cfg = TrainingConfig(max_steps=steps, batch_size=16, lr=3e-3, warmup_steps=steps // 10, eval_every=0,
                         device="cpu", progress=False, precision="fp32")
    Trainer(model, cfg, ds).fit(); model.eval()
    variants = {"fp32": model, "fp16": to_half(model, "fp16"), "bf16": to_half(model, "bf16"),
                "int8": quantize(model, "int8"), "int8-dynamic": quantize(model, "int8-dynamic"),
                "50% sparse (global)": magnitude_prune(model, 0.5), "heads 4→2 per layer": prune_heads(model, {l: [2, 3] for l in range(4)})}
    encs = [e for e in tok.encode_batch(docs.valid, add_bos=True) if len(e) >= 8][:8]
    prompts = torch.tensor([e[:8] for e in encs])  # (8, 8) real prompts
    return compression_report(variants, tok, docs.valid, prompts, new_tokens=32, repeats=3)


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0]); p.add_argument("--steps", type=int, default=300)
    p.add_argument("--new-tokens", type=int, default=32); p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--part", choices=["all", "speed", "quality", "floors"], default="all")
    p.add_argument("--no-write", action="store_true", help="print only; do not write bench/RESULTS.md")
    a = p.parse_args()
    torch.set_num_threads(1)
    import pandas as pd
    pd.set_option("display.width", 200); pd.set_option("display.max_columns", 20)
    lines = [f"## Compression (issue 8): `bench/compression_bench.py --part {a.part}`, {time.strftime('%Y-%m-%d')}", "",
             machine(pd) + f", quantized engine {torch.backends.quantized.engine}", ""]
    print("\n".join(lines), flush=True)
    t0 = time.time()
    if a.part in ("all", "floors"):
        lines += floors_124m(a.new_tokens, a.repeats)
        print("\n".join(lines[-8:]), flush=True)
    if a.part in ("all", "speed"):
        lines += [f"**Speed at the GPT-2 124M shape** (random weights), greedy `generate` with the KV cache, {a.new_tokens} new "
                  f"tokens after a 16-token prompt, median of {a.repeats} interleaved repeats:", "",
                  speed_124m(a.new_tokens, a.repeats).round(3).to_markdown(), ""]
        print("\n".join(lines[-4:]), flush=True)
    if a.part in ("all", "quality"):
        lines += [f"**Quality on a trained model**: `small` preset (block_size 128) trained {a.steps} steps on `python_docs`, "
                  f"scored on its whole validation split; decode {a.new_tokens} new tokens, batch 1 and 8:", "",
                  quality_small(a.steps).round(4).to_markdown(), ""]
        print("\n".join(lines[-4:]), flush=True)
    lines.append(f"Total bench time {time.time() - t0:.0f} s.")
    print(lines[-1])
    if not a.no_write:
        write_section("compression-floors" if a.part == "floors" else "compression", "\n".join(lines))


if __name__ == "__main__":
    main()

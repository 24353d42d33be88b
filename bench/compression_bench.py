"""Compression benchmark (issue 8): int8 / half / pruned variants against fp32.

Speed: GPT-2 124M shape (random weights: speed does not depend on their values), greedy decode with the
KV cache, batch 1 and 8, median of interleaved repeats, one CPU thread (the machine is shared).
Quality: the `small` preset trained briefly on the built-in Python docs corpus; perplexity and bits per
byte on its whole validation split. Usage: python bench/compression_bench.py [--steps 300]
"""
import argparse
import platform
import time

import torch

from mie_lm.compression import (_decode_speeds, _param_counts, checkpoint_size_mb, compression_report,
                                magnitude_prune, prune_heads, quantize, to_half)
from mie_lm.corpora import python_docs
from mie_lm.data import PackedDataset, packed_tokens
from mie_lm.model import GPT, GPTConfig
from mie_lm.tokenizer import BPETokenizer
from mie_lm.training import Trainer, TrainingConfig


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


if __name__ == "__main__":
    p = argparse.ArgumentParser(); p.add_argument("--steps", type=int, default=300)
    p.add_argument("--new-tokens", type=int, default=32); p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--part", choices=["all", "speed", "quality"], default="all")
    a = p.parse_args()
    torch.set_num_threads(1)
    import pandas as pd
    pd.set_option("display.width", 200); pd.set_option("display.max_columns", 20)
    print(f"python {platform.python_version()}, torch {torch.__version__}, threads {torch.get_num_threads()}, "
          f"quantized engine {torch.backends.quantized.engine}")
    t0 = time.time()
    if a.part != "quality":
        print(f"\n## GPT-2 124M shape: {a.new_tokens} new tokens after a 16-token prompt, median of {a.repeats}\n")
        print(speed_124m(a.new_tokens, a.repeats).round(3).to_markdown())
    if a.part != "speed":
        print(f"\n## small preset trained {a.steps} steps (block_size 128): validation split of python_docs\n")
        print(quality_small(a.steps).round(4).to_markdown())
    print(f"\nbench time {time.time() - t0:.0f}s")

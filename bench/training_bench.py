#!/usr/bin/env python
"""Training benchmark for `mie_lm.training` (issue 6): Trainer throughput against a plain loop over Hugging Face, and quality. Not a test.

Usage: python bench/training_bench.py [--steps 5] [--repeats 3] [--threads 1] [--budgets 60,120] [--throughput-only] [--no-write]
1. Throughput, side by side: optimizer steps of the `small` preset (batch 8 x 256, AdamW, clipping) run
   by `Trainer` against a plain PyTorch loop over `GPT2LMHeadModel` of identical shape and weights
   (`GPT.to_hf_gpt2`; `model(input_ids, labels=input_ids)`, `AdamW`, `clip_grad_norm_`), in fp32 and with
   bf16 autocast. Each runner runs in its own fresh Python process (`--worker`), because the Trainer
   changes a process-wide setting (`keep_freed_memory`, glibc's malloc thresholds) that would otherwise
   carry over to the peer. A third runner, the same HF loop given the Trainer's two speed settings
   (fused AdamW and `keep_freed_memory`), shows how much of the difference those settings are.
   Tokens/s = tokens per step / step wall time (the Trainer's own timing includes loading the batch; the
   loop's does not); median over `--repeats` x `--steps` steps, the first 2 steps of each run discarded as
   warm-up; the runners' order rotates from repeat to repeat. Tokens per CPU-second (the process's CPU time
   per step) is less sensitive to other programs on a shared machine than wall time. Minor page faults per step are counted too.
2. Quality on the synthetic corpus: the notebook's demo budget (300 steps of 16 documents, `tiny`), the same
   steps with batches of 32, and a 3x longer run at 32, against the entropy floor and against the true source scored on the same validation
   documents (a finite sample cannot reach the floor exactly).
3. Real text (`python_docs`): validation bits/byte after each wall-clock budget in `--budgets` (seconds),
   `tiny` and `small` (each with a BPE tokenizer of its preset's vocabulary) for the first budget, then the
   better preset for the longer ones.
Writes its section of bench/RESULTS.md (replacing the previous run's) unless --no-write.
"""
import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from mie_lm.corpora import python_docs, synthetic  # noqa: E402
from mie_lm.data import LMDataset, PackedDataset  # noqa: E402
from mie_lm.model import GPT, GPTConfig  # noqa: E402
from mie_lm.tokenizer import BPETokenizer  # noqa: E402
from mie_lm.training import Callback, Trainer, TrainingConfig, keep_freed_memory, param_groups, token_byte_lengths  # noqa: E402
sys.path.insert(0, str(Path(__file__).parent))
from _common import machine, write_section  # noqa: E402


def _minflt() -> int: return resource.getrusage(resource.RUSAGE_SELF).ru_minflt


class _Marks(Callback):
    "Minor page faults and CPU time of the process at the end of each optimizer step."
    def __init__(self): self.marks = []
    def on_step_end(self, trainer, metrics): self.marks.append((_minflt(), time.process_time(), metrics["tokens"]))


def trainer_tokens_per_s(model, data, precision, steps):
    "Tokens/s of `Trainer` steps (its own per-step timing), tokens per CPU-second and page faults per step, after 2 warm-up steps."
    cfg = TrainingConfig(max_steps=steps + 2, warmup_steps=1, batch_size=8, lr=1e-4, eval_every=0, log_every=1,
                         precision=precision, device="cpu", progress=False, restore_best=False, threads=torch.get_num_threads())
    m = _Marks(); t = Trainer(model, cfg, data, callbacks=[m])
    t.fit()
    pairs = list(zip(m.marks[1:], m.marks[2:]))  # step i's share: from the end of step i - 1 to the end of step i
    return ([h["tokens_per_s"] for h in t.history[2:]], [(b[2] - a[2]) / (b[1] - a[1]) for a, b in pairs], [b[0] - a[0] for a, b in pairs])


def hf_tokens_per_s(hf, data, precision, steps, tuned=False):
    "Tokens/s, tokens per CPU-second and page faults per step of a plain PyTorch loop over a Hugging Face `GPT2LMHeadModel` (`tuned`: fused AdamW)."
    groups = param_groups(hf, 0.1) if tuned else hf.parameters()  # param_groups: the fused optimizer's groups, as the Trainer's
    opt = torch.optim.AdamW(groups, lr=1e-4, betas=(0.9, 0.95), weight_decay=0.1, fused=True if tuned else None)
    loader = torch.utils.data.DataLoader(data, batch_size=8, shuffle=True, drop_last=True)
    out, cpu, faults, it = [], [], [], iter(loader)
    for i in range(steps + 2):
        x = next(it)["input_ids"]
        f0, c0, t0 = _minflt(), time.process_time(), time.perf_counter()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision == "bf16"):
            loss = hf(input_ids=x, labels=x).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(hf.parameters(), 1.0)
        opt.step(); opt.zero_grad(set_to_none=True)
        if i >= 2: out.append(x.numel() / (time.perf_counter() - t0)); cpu.append(x.numel() / (time.process_time() - c0)); faults.append(_minflt() - f0)
    return out, cpu, faults


RUNNERS = {"trainer": "mie_lm Trainer", "hf": "HF GPT2LMHeadModel, plain loop",
           "hf_tuned": "HF plain loop + fused AdamW + keep_freed_memory"}


def worker(runner, precisions, steps):
    "One runner in this (fresh) process: {precision: (tokens/s, tokens per CPU-second, faults) lists} as JSON on stdout."
    if runner == "hf_tuned": keep_freed_memory()
    data = PackedDataset((np.arange(200_000) * 7919 % 4093).astype(np.int64), 256)
    out = {}
    for precision in precisions:
        torch.manual_seed(0); ours = GPT(GPTConfig.from_preset("small"))
        if runner == "trainer": out[precision] = trainer_tokens_per_s(ours, data, precision, steps)
        else:
            hf = ours.to_hf_gpt2().train(); hf.config._attn_implementation = "sdpa"
            out[precision] = hf_tokens_per_s(hf, data, precision, steps, tuned=runner == "hf_tuned")
    print(json.dumps(out))


def throughput(steps, repeats, threads):
    "{(runner, precision): medians of (tokens/s, tokens per CPU-second, page faults per step)} for `small`, each runner in a fresh process."
    res = {}
    for r in range(repeats):
        names = list(RUNNERS)[r % 3:] + list(RUNNERS)[:r % 3]  # rotate who goes first
        precisions = ("fp32", "bf16") if r % 2 == 0 else ("bf16", "fp32")
        for name in names:
            cmd = [sys.executable, __file__, "--worker", name, "--precisions", ",".join(precisions), "--steps", str(steps), "--threads", str(threads)]
            p = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": str(threads)})
            if p.returncode: raise RuntimeError(f"worker {name} failed:\n{p.stderr[-2000:]}")
            for prec, lists in json.loads(p.stdout.strip().splitlines()[-1]).items():
                for acc, v in zip(res.setdefault((RUNNERS[name], prec), ([], [], [])), lists): acc.extend(v)
            print(f"repeat {r + 1}/{repeats}: {name} done", file=sys.stderr, flush=True)
    return {k: tuple(statistics.median(v) for v in lists) for k, lists in res.items()}


def compile_check(steps):
    "Cold compile time (an empty Inductor cache) and eager/compiled fwd+bwd time of `small` (batch 8 x 256) with `torch.compile` on the CPU."
    import tempfile
    from mie_lm.model import lm_loss
    os.environ["TORCHINDUCTOR_CACHE_DIR"] = tempfile.mkdtemp(prefix="inductor-cold-")  # read at compile time: nothing cached yet
    torch.manual_seed(0); m = GPT(GPTConfig.from_preset("small")); x = torch.randint(0, m.config.vocab_size, (8, 257))
    def step(f):
        t0 = time.perf_counter(); lm_loss(f(x[:, :-1]), x[:, 1:]).backward(); m.zero_grad(set_to_none=True); return time.perf_counter() - t0
    t0 = time.perf_counter(); cm = torch.compile(m); step(cm); step(cm); compile_s = time.perf_counter() - t0
    eager, compiled = [], []
    for _ in range(steps): eager.append(step(m)); compiled.append(step(cm))
    return compile_s, statistics.median(eager), statistics.median(compiled)


def source_bpb(corpus, docs):
    "Bits per byte of the synthetic corpus's true order-1 source on `docs`."
    src = corpus.meta["source"]; idx = {w: i for i, w in enumerate(src.words)}
    bits = n_bytes = 0
    for d in docs:
        w = np.array([idx[x] for x in d.split()])
        bits -= np.log2(src.pi[w[0]]) + np.log2(src.P[w[:-1], w[1:]]).sum()
        n_bytes += len(d.encode())
    return bits / n_bytes


def synthetic_quality(steps, batch_size):
    "Validation bits/byte of `tiny` on the synthetic corpus after `steps` steps of `batch_size` documents (the notebook's settings otherwise)."
    syn = synthetic(); tok = BPETokenizer.train(syn.train, vocab_size=1024)
    tr, va = LMDataset(syn.train, tok, 128, progress=False), LMDataset(syn.valid, tok, 128, progress=False)
    torch.manual_seed(0)
    cfg = TrainingConfig(max_steps=steps, warmup_steps=steps // 10, batch_size=batch_size, lr=1e-2, weight_decay=0.0, eval_every=0,
                         progress=False, device="cpu")
    r = Trainer(GPT(GPTConfig.from_preset("tiny", vocab_size=tok.vocab_size)), cfg, tr, va, token_byte_lengths(tok)).fit()
    return r["last_valid"]["valid_bpb"], r["elapsed"], syn.entropy_floor_bpb, source_bpb(syn, syn.valid)


REAL = {"tiny": dict(lr=3e-3, batch_size=16), "small": dict(lr=1e-3, batch_size=16)}

def real_quality(preset, seconds):
    "Validation bits/byte on `python_docs` after `seconds` of training `preset` (block 128, cosine schedule)."
    docs = python_docs(); vocab = GPTConfig.from_preset(preset).vocab_size
    tok = BPETokenizer.train(docs.train, vocab_size=vocab)
    tr, va = (PackedDataset.from_corpus(docs, tok, 128, split=s) for s in ("train", "valid"))
    torch.manual_seed(0)
    cfg = TrainingConfig(max_steps=None, max_time=float(seconds), warmup_steps=30, schedule="cosine", min_lr=REAL[preset]["lr"] / 10,
                         eval_every=0, progress=False, device="cpu", **REAL[preset])
    t = Trainer(GPT(GPTConfig.from_preset(preset, block_size=128, vocab_size=tok.vocab_size)), cfg, tr, va, token_byte_lengths(tok))
    r = t.fit()
    return r["last_valid"]["valid_bpb"], r["steps"], r["tokens"]


def _previous_quality() -> list[str]:
    "The quality part of the `training` section now in RESULTS.md (kept by a --throughput-only run), as lines."
    from _common import RESULTS
    text = RESULTS.read_text(encoding="utf-8") if RESULTS.exists() else ""
    sec = text[text.find("<!-- bench:training -->"):text.find("<!-- /bench:training -->")] if "<!-- bench:training -->" in text else ""
    if "**Synthetic corpus" not in sec: return []
    kept = sec[sec.index("**Synthetic corpus"):].strip()
    return ["", "Quality rows below: from the last full run of this script (a `--throughput-only` run keeps them).", "", kept]


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--steps", type=int, default=5); p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--budgets", default="60,120"); p.add_argument("--threads", type=int, default=1)
    p.add_argument("--no-write", action="store_true"); p.add_argument("--throughput-only", action="store_true")
    p.add_argument("--compile", action="store_true", help="also time torch.compile (minutes of compilation on a CPU)")
    p.add_argument("--worker", choices=list(RUNNERS), help=argparse.SUPPRESS); p.add_argument("--precisions", default="fp32,bf16", help=argparse.SUPPRESS)
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    if a.worker: return worker(a.worker, a.precisions.split(","), a.steps)
    import transformers
    t_start, lines = time.time(), [f"## Training (issue 6): `bench/training_bench.py`, {time.strftime('%Y-%m-%d')}", "", machine(transformers), ""]
    load0 = os.getloadavg()
    tp = throughput(a.steps, a.repeats, a.threads)
    lines += ["**Training throughput, `small`** (batch 8 x 256, AdamW + clipping, one optimizer step = forward + backward + update; "
              f"median of {a.repeats} x {a.steps} steps; each runner in its own process, order rotated):", "",
              "| runner | precision | tokens/s | tokens per CPU-second | page faults / step |", "|---|---|---|---|---|"]
    lines += [f"| {r} | {prec} | {v:,.0f} | {c:,.0f} | {f:,.0f} |" for (r, prec), (v, c, f) in sorted(tp.items(), key=lambda kv: (kv[0][1], list(RUNNERS.values()).index(kv[0][0])))]
    ours, hf, tuned = RUNNERS["trainer"], RUNNERS["hf"], RUNNERS["hf_tuned"]
    for prec in ("fp32", "bf16"):
        lines.append(f"| **ratio Trainer / HF loop** | {prec} | **{tp[(ours, prec)][0] / tp[(hf, prec)][0]:.2f}x** | "
                     f"**{tp[(ours, prec)][1] / tp[(hf, prec)][1]:.2f}x** | |")
    for prec in ("fp32", "bf16"):
        lines.append(f"| ratio Trainer / HF loop with the same two settings | {prec} | {tp[(ours, prec)][0] / tp[(tuned, prec)][0]:.2f}x | "
                     f"{tp[(ours, prec)][1] / tp[(tuned, prec)][1]:.2f}x | |")
    lines.append(f"\nThreads: {a.threads} (set with --threads; the Trainer is given the same count). Load average (1/5/15 min) at the start "
                 f"{' / '.join(f'{x:.1f}' for x in load0)}, at the end {' / '.join(f'{x:.1f}' for x in os.getloadavg())} on {os.cpu_count()} cores.")
    if a.compile:
        cs, e, c = compile_check(a.steps)
        gain = e / c
        verdict = (f"at that rate the compile pays after {round(cs / (e - c))} steps ({cs / (e - c) * c / 60:.0f} minutes of training)"
                   if gain > 1 else "it never pays")
        lines.append(f"\n`torch.compile` on this CPU (`small`, fwd+bwd, cold Inductor cache): compile {cs:.0f} s, eager {e:.2f} s/step, "
                     f"compiled {c:.2f} s/step ({gain:.2f}x); {verdict}. The matrix products, most of a step, are the same BLAS calls "
                     f"compiled or not, so the Trainer does not compile (a gain under 5% is within this machine's run-to-run noise).")
    print("\n".join(lines), flush=True)
    if a.throughput_only:
        if not a.no_write: write_section("training", "\n".join(lines + _previous_quality()))
        return
    rows = []
    for steps, batch in ((300, 16), (300, 32), (900, 32)):
        bpb, secs, floor, src = synthetic_quality(steps, batch)
        rows.append(f"| {steps} x {batch} docs{' (notebook demo)' if (steps, batch) == (300, 16) else ''} | {secs:.0f} s | {bpb:.4f} | {bpb / floor - 1:+.1%} | {bpb / src - 1:+.1%} |")
        print(rows[-1], flush=True)
    lines += ["", f"**Synthetic corpus, `tiny`** (entropy floor {floor:.4f} bits/byte; the true source scores {src:.4f} on the 200 validation documents):", "",
              "| budget | training time | valid bits/byte | vs floor | vs source on same docs |", "|---|---|---|---|---|", *rows]
    budgets = [int(x) for x in a.budgets.split(",")]
    real = [(pre, budgets[0], *real_quality(pre, budgets[0])) for pre in ("tiny", "small")]
    best = min(real, key=lambda r: r[2])[0]
    real += [(best, b, *real_quality(best, b)) for b in budgets[1:]]
    lines += ["", "**`python_docs`, validation bits/byte after a wall-clock budget** (block 128, batch 16, cosine; each preset with a BPE of its vocabulary size):", "",
              "| preset | budget | steps | tokens | valid bits/byte |", "|---|---|---|---|---|"]
    lines += [f"| {pre} | {b} s | {s} | {n:,} | {bpb:.3f} |" for pre, b, bpb, s, n in real]
    lines += ["", f"Total bench time {time.time() - t_start:.0f} s."]
    text = "\n".join(lines)
    print(text)
    if not a.no_write:
        write_section("training", text)


if __name__ == "__main__":
    main()

#!/usr/bin/env python
"""Packing benchmark for `mie_lm.data` (issue 3): throughput and peak memory. Not a test.

Usage: python bench/data_bench.py [--mb 10] [--repeats 3] [--cap-mb 10] [--no-write]
       python bench/data_bench.py --single-line-mb 50 [--no-write]   (part 3 only)
1. Throughput: pack ~10 MB of text (the built-in `python_docs` corpus repeated) with a 4k-vocab tokenizer,
   in memory and to a memory-mapped file; report MB/s of UTF-8 text, the median of `--repeats` runs, next to
   the raw `tokenizers` `encode_batch` rate (the ceiling: tokenizing is the whole cost), and MB per CPU-second
   (all threads), which is steadier than wall-clock time when other jobs share the cores.
2. Peak memory: in fresh subprocesses, pack a corpus 4x the in-memory cap (`--cap-mb`) streamed from a
   generator, once to a memmap file and once in memory; report the tracemalloc peak (Python and NumPy
   allocations) and the growth of the peak RSS over the RSS after imports (Linux VmHWM, reset through
   /proc/self/clear_refs; includes the Rust tokenizer's memory).
3. A single-line file (`--single-line-mb`, default 50 MB: `python_docs` text with every run of whitespace
   made one space, repeated, and no newline anywhere), in a fresh process: `text_files` reads it, a
   BPE tokenizer (`--vocab-single`, default 2048 like `mie_lm train`) is trained on `corpus.train`, and
   both splits are packed; report the peak RSS of the whole process (`ru_maxrss`, imports included) and
   the seconds of each stage. Target: at most 1.5 GB.
Writes its sections of bench/RESULTS.md (replacing the previous run's) unless --no-write.
"""
import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).parent))
from _common import machine, write_section  # noqa: E402
MB = 1e6


def repeated_docs(target_bytes: int):
    "Paragraphs of `python_docs` (train then valid), cycled until `target_bytes` of UTF-8 text; a generator."
    from mie_lm.corpora import python_docs
    c, n = python_docs(), 0
    while True:
        for d in c.train + c.valid:
            if n >= target_bytes: return
            n += len(d.encode("utf-8")); yield d


def throughput(tok, mb: float, repeats: int) -> dict:
    "Median MB/s of raw `encode_batch`, in-memory `pack_tokens` and memmap `pack_tokens` over `mb` MB of text."
    from mie_lm.data import pack_tokens
    docs = list(repeated_docs(int(mb * MB)))
    n_bytes = sum(len(d.encode("utf-8")) for d in docs)
    tmp = Path(tempfile.mkdtemp())
    runs = {"encode_batch (raw, one call)": lambda: tok.tk.encode_batch(docs, add_special_tokens=False),
            "pack_tokens in memory": lambda: pack_tokens(docs, tok, progress=False),
            "pack_tokens to memmap file": lambda: pack_tokens(docs, tok, path=tmp / "bench.bin", progress=False)}
    out = {"text_mb": n_bytes / MB, "docs": len(docs)}
    for name, fn in runs.items():
        times, cpu = [], []
        for _ in range(repeats):
            t0, c0 = time.perf_counter(), time.process_time()  # process time sums all tokenizer threads
            fn()
            times.append(time.perf_counter() - t0); cpu.append(time.process_time() - c0)
        out[name] = {"mb_s": n_bytes / MB / statistics.median(times), "mb_cpu_s": n_bytes / MB / statistics.median(cpu),
                     "times_s": [round(t, 2) for t in times]}
    out["tokens"] = int(len(pack_tokens(docs, tok, progress=False)))
    return out


_CHILD = r"""
import json, sys, tempfile, tracemalloc, time
from pathlib import Path
sys.path.insert(0, {bench!r})
from data_bench import repeated_docs
from mie_lm.data import pack_tokens
from mie_lm.tokenizer import BPETokenizer
tok = BPETokenizer.load({tok_path!r})
tok.encode_batch(["warm up the tokenizer threads"])
def status(key):  # a /proc/self/status field in bytes (Linux)
    return next(int(l.split()[1]) * 1024 for l in open("/proc/self/status") if l.startswith(key + ":"))
base = status("VmRSS")
Path("/proc/self/clear_refs").write_text("5")  # reset the peak RSS (VmHWM) to the current RSS
tracemalloc.start()
t0 = time.perf_counter()
path = None if {mode!r} == "memory" else Path(tempfile.mkdtemp()) / "big.bin"
s = pack_tokens(repeated_docs({n_bytes}), tok, path=path, progress=False)
secs = time.perf_counter() - t0
_, peak = tracemalloc.get_traced_memory()
rss = status("VmHWM")
print(json.dumps(dict(mode={mode!r}, tokens=int(len(s)), stream_mb=s.nbytes / 1e6, secs=secs,
                      tracemalloc_peak_mb=peak / 1e6, base_rss_mb=base / 1e6, peak_rss_growth_mb=(rss - base) / 1e6)))
"""


def peak_memory(tok_path: Path, cap_mb: float) -> list[dict]:
    "Peak memory of packing 4x `cap_mb` MB of streamed text, to memmap and in memory, each in a fresh process."
    res = []
    for mode in ("memmap", "memory"):
        code = _CHILD.format(bench=str(Path(__file__).parent), tok_path=str(tok_path), mode=mode, n_bytes=int(4 * cap_mb * MB))
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT).stdout
        res.append(json.loads(out.strip().splitlines()[-1]))
    return res


_SINGLE = r"""
import json, resource, sys, time
t = {{}}
t0 = time.perf_counter()
from mie_lm.corpora import text_files
from mie_lm.data import packed_tokens
from mie_lm.tokenizer import BPETokenizer
def peak_mb(): return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB -> MiB
t["import"] = (time.perf_counter() - t0, peak_mb()); t0 = time.perf_counter()
c = text_files({path!r})
t["text_files"] = (time.perf_counter() - t0, peak_mb()); t0 = time.perf_counter()
tok = BPETokenizer.train(c.train, vocab_size={vocab})
t["tokenizer training"] = (time.perf_counter() - t0, peak_mb()); t0 = time.perf_counter()
n = {{s: int(len(packed_tokens(c, tok, split=s, progress=False))) for s in ("train", "valid")}}
t["packing"] = (time.perf_counter() - t0, peak_mb())
print(json.dumps(dict(stages=t, tokens=n, pieces=[len(c.train), len(c.valid)], docs=[sum(c.ends("train")), sum(c.ends("valid"))])))
"""


def single_line(mb: float, vocab: int) -> dict:
    "Peak RSS of `text_files` + tokenizer training + packing of an `mb` MB single-line file, in a fresh process."
    import re
    flat = re.sub(r"\s+", " ", " ".join(repeated_docs(int(2 * MB))))  # 2 MB of prose, one line
    path = Path(tempfile.mkdtemp()) / "single_line.txt"
    with open(path, "w", encoding="utf-8") as f:
        for _ in range(-(-int(mb * MB) // len(flat.encode()))): f.write(flat + " ")  # ceil: at least mb MB
    out = subprocess.run([sys.executable, "-c", _SINGLE.format(path=str(path), vocab=vocab)], capture_output=True, text=True,
                         check=True, cwd=ROOT).stdout
    res = json.loads(out.strip().splitlines()[-1])
    res.update(file_mb=path.stat().st_size / MB, newlines=0, vocab=vocab)
    path.unlink()
    return res


def report_single(r: dict, info: str) -> str:
    peak = max(mb for _, mb in r["stages"].values())
    lines = [f"## Data: a single-line file (`bench/data_bench.py --single-line-mb`, {time.strftime('%Y-%m-%d')})", "", info, "",
             f"A {r['file_mb']:.1f} MB file with no newline (`python_docs` prose, whitespace collapsed, repeated) read by "
             f"`text_files` ({r['docs'][0]} + {r['docs'][1]} documents stored in {r['pieces'][0]} + {r['pieces'][1]} pieces), "
             f"a {r['vocab']}-token BPE trained on it, both splits packed ({r['tokens']['train']:,} + {r['tokens']['valid']:,} tokens), "
             f"in one fresh process. **Peak RSS {peak / 1024:.2f} GiB**.", "", "Target: a peak RSS of at most 1.5 GB.", "",
             "| stage | seconds | peak RSS after it (MiB) |", "|---|---|---|"]
    lines += [f"| {k} | {s:.1f} | {mb:.0f} |" for k, (s, mb) in r["stages"].items()]
    return "\n".join(lines) + "\n"


def report(tp: dict, mem: list[dict], cap_mb: float, vocab: int, info: str) -> str:
    lines = [f"## Data: packing throughput and memory (`bench/data_bench.py`, {time.strftime('%Y-%m-%d')})", "",
             info, "",
             f"Throughput: {tp['text_mb']:.1f} MB of `python_docs` text ({tp['docs']:,} paragraphs, repeated), "
             f"{vocab}-token BPE, {tp['tokens']:,} tokens; median of repeats.", "",
             "| path | MB/s (median, wall clock) | MB per CPU-second (median) | wall times (s) |", "|---|---|---|---|"]
    lines += [f"| {k} | {v['mb_s']:.2f} | {v['mb_cpu_s']:.2f} | {v['times_s']} |" for k, v in tp.items() if isinstance(v, dict)]
    lines += ["", f"Peak memory packing {4 * cap_mb:.0f} MB of text streamed from a generator (4x an in-memory cap of "
                  f"{cap_mb:.0f} MB), each in a fresh process:", "",
              "| mode | tokens | stream size (MB) | seconds | tracemalloc peak (MB) | peak RSS growth (MB) | base RSS (MB) |",
              "|---|---|---|---|---|---|---|"]
    lines += [f"| {m['mode']} | {m['tokens']:,} | {m['stream_mb']:.1f} | {m['secs']:.1f} | {m['tracemalloc_peak_mb']:.1f} | "
              f"{m['peak_rss_growth_mb']:.1f} | {m['base_rss_mb']:.0f} |" for m in mem]
    return "\n".join(lines) + "\n"


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--mb", type=float, default=10.0, help="MB of text for the throughput runs")
    p.add_argument("--repeats", type=int, default=3, help="runs per measurement (the median is reported)")
    p.add_argument("--cap-mb", type=float, default=10.0, help="in-memory cap; the memory run packs 4x this")
    p.add_argument("--vocab", type=int, default=4096, help="tokenizer vocabulary size")
    p.add_argument("--no-write", action="store_true", help="print only; do not write bench/RESULTS.md")
    p.add_argument("--single-line-mb", type=float, default=0, help="run only part 3, on a single-line file of this many MB")
    p.add_argument("--vocab-single", type=int, default=2048, help="tokenizer vocabulary size for part 3")
    a = p.parse_args()
    if a.single_line_mb:
        import tokenizers
        text = report_single(single_line(a.single_line_mb, a.vocab_single), machine(tokenizers, np))
        print(text)
        if not a.no_write: write_section("data_single_line", text)
        return
    from mie_lm.corpora import python_docs
    from mie_lm.tokenizer import BPETokenizer
    import tokenizers
    info = machine(tokenizers, np)
    tok = BPETokenizer.train(python_docs().train, vocab_size=a.vocab)
    tok_path = tok.save(Path(tempfile.mkdtemp()) / "tokenizer.json")
    tp = throughput(tok, a.mb, a.repeats)
    mem = peak_memory(tok_path, a.cap_mb)
    text = report(tp, mem, a.cap_mb, a.vocab, info)
    print(text)
    if not a.no_write:
        write_section("data", text)


if __name__ == "__main__":
    main()

#!/usr/bin/env python
"""How good a model of your own text do you get in the time you give it? mie_lm against a char-level peer.

Corpus: Vim's user manual and a few of its reference chapters, plain text that the Debian package
`vim-runtime` installs under /usr/share/vim/vim*/doc (about 1.0 MB of prose with a strong layout: headings,
tables, indented examples, blank lines). Nothing is downloaded and nothing is committed: the files are
concatenated into a temporary file at run time. The first 90% (cut at a line break) is the training file;
the last 10% is held out and scored afterwards as one raw stream, in bits per byte of UTF-8.

For each budget T (`--budgets`, default 60 and 300 seconds) two processes run at the same time, each
pinned to its own core with `taskset`:
- mie_lm as a user runs it: `mie_lm train --dataset text_files --data-path TRAIN --max-time T` (all
  other settings default), then the run's model scores the held-out text;
- the peer, `bench/char_baseline.py`: a char-level GPT with the published nanoGPT CPU recipe, trained
  for the same T.
Both are scored by the same sliding-window scorer (`char_baseline.stream_nats`: windows of the model's
context, half-window stride, every token scored once with at least half a window of context).
Reports bits per byte of each and their ratio (target: mie_lm at most 0.88x the peer), model sizes,
steps and tokens seen. Writes the `quality` section of bench/RESULTS.md unless --no-write.

Usage: python bench/quality_bench.py [--budgets 60 300] [--cores 0 1] [--no-write]
"""
from __future__ import annotations

import argparse
import glob
import json
import math
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))
from _common import machine, write_section  # noqa: E402

VIM_FILES = ["usr_*.txt", "intro.txt", "editing.txt", "starting.txt", "windows.txt", "change.txt", "motion.txt"]
HELD_OUT = 0.1


def vim_corpus(folder: Path) -> tuple[Path, Path, str]:
    "Write the training file and the held-out file of the Vim manual corpus into `folder`; return them and the source."
    docs = sorted(glob.glob("/usr/share/vim/vim*/doc"))
    if not docs: raise SystemExit("no /usr/share/vim/vim*/doc: install the Debian package vim-runtime")
    doc = Path(docs[-1])
    files = [f for pat in VIM_FILES for f in sorted(doc.glob(pat))]
    data = b"".join(f.read_bytes() for f in files)
    cut = data.index(b"\n", int(len(data) * (1 - HELD_OUT))) + 1  # the held-out tail starts on a new line
    train, held = folder / "vim_manual_train.txt", folder / "vim_manual_heldout.txt"
    train.write_bytes(data[:cut]); held.write_bytes(data[cut:])
    return train, held, f"{doc}/{{{', '.join(VIM_FILES)}}} ({len(files)} files, {len(data):,} bytes)"


_SCORE = r"""
import json, math, sys, time
import torch
sys.path.insert(0, {bench!r})
from char_baseline import stream_nats
torch.set_num_threads(1)
try:
    from mie_lm.runs import load_run
    model, tok = load_run({run!r}, "cpu")
except Exception as e:  # the run folder's own checks failed: load the two files directly, and say so
    from pathlib import Path
    from mie_lm.model import GPT
    from mie_lm.tokenizer import BPETokenizer
    print(f"load_run failed ({{type(e).__name__}}: {{e}}); loading model/ and tokenizer.json directly", file=sys.stderr)
    model, tok = GPT.from_pretrained(Path({run!r}) / "model"), BPETokenizer.load(Path({run!r}) / "tokenizer.json")
model.eval()
text = open({held!r}, encoding="utf-8", newline="").read()
ids = [tok.bos_id] + tok.encode(text)
t0 = time.perf_counter()
nats, n = stream_nats(model, ids, model.config.block_size)
out = dict(bits_per_byte=nats / math.log(2) / len(text.encode("utf-8")), tokens=n, score_seconds=time.perf_counter() - t0,
           params=sum(p.numel() for p in model.parameters()))
try:  # the library's own one-stream evaluation, when this version has it
    from mie_lm.evaluation import evaluate_file
    rep = evaluate_file(model, tok, {held!r})
    out["library_evaluate_file"] = {{k: getattr(rep, k) for k in ("bits_per_byte", "bpb", "perplexity") if hasattr(rep, k)}} or str(rep)
except Exception as e:
    out["library_evaluate_file"] = f"unavailable: {{type(e).__name__}}: {{e}}"[:200]
print(json.dumps(out))
"""


def start_mie_lm(train: Path, run: Path, budget: float, core: int) -> subprocess.Popen:
    "Start `mie_lm train` with its defaults and `--max-time budget`, pinned to `core`."
    cmd = ["taskset", "-c", str(core), str(ROOT / ".venv/bin/mie_lm"), "train", "--dataset", "text_files",
           "--data-path", str(train), "--max-time", str(budget), "--out", str(run), "--no-progress"]
    return subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def start_peer(train: Path, held: Path, out: Path, budget: float, core: int) -> subprocess.Popen:
    "Start the char-level nanoGPT-recipe peer for `budget` seconds, pinned to `core`."
    cmd = ["taskset", "-c", str(core), sys.executable, str(BENCH / "char_baseline.py"), "--train", str(train),
           "--valid", str(held), "--max-time", str(budget), "--out", str(out)]
    return subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def one_budget(train: Path, held: Path, budget: float, cores: tuple[int, int], work: Path) -> dict:
    "Train both for `budget` seconds at the same time, one core each, then score mie_lm's model on its core."
    run, peer_out = work / f"mie_lm_{budget:g}s", work / f"peer_{budget:g}s.json"
    t0 = time.perf_counter()
    procs = {"mie_lm": start_mie_lm(train, run, budget, cores[0]), "peer": start_peer(train, held, peer_out, budget, cores[1])}
    logs = {}
    for name, p in procs.items():
        logs[name] = p.communicate()[0]
        if p.returncode: raise SystemExit(f"{name} failed ({p.returncode}):\n{logs[name][-3000:]}")
    mie_wall = time.perf_counter() - t0  # both processes, including the peer's scoring; mie_lm's own wall is in run.json
    score = subprocess.run(["taskset", "-c", str(cores[0]), sys.executable, "-c",
                            _SCORE.format(bench=str(BENCH), run=str(run), held=str(held))],
                           cwd=ROOT, capture_output=True, text=True)
    if score.returncode: raise SystemExit(f"scoring failed:\n{score.stderr[-3000:]}")
    mie = json.loads(score.stdout.strip().splitlines()[-1])
    runinfo = json.loads((run / "run.json").read_text())
    res = runinfo["result"]
    mie.update(steps=res["steps"], tokens_seen=res.get("tokens"), train_seconds=res.get("elapsed"), threads=res.get("threads"),
               stop=res.get("stop_reason"), preset=runinfo.get("preset"), vocab_size=runinfo.get("vocab_size"),
               model=runinfo.get("model"), training={k: runinfo["training"].get(k) for k in
                                                     ("batch_size", "lr", "min_lr", "schedule", "warmup_steps", "max_steps")},
               library_valid_bpb=(res.get("last_valid") or {}).get("valid_bpb"))
    peer = json.loads(peer_out.read_text())
    return dict(budget=budget, mie_lm=mie, peer=peer, ratio=mie["bits_per_byte"] / peer["bits_per_byte"], pair_wall=mie_wall)


def report(results: list[dict], source: str, train: Path, held: Path, info: str, cores) -> str:
    lines = [f"## Quality: a model of your own text in a time budget (`bench/quality_bench.py`, {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())})", "",
             info, "",
             f"Corpus: {source}; training file {train.stat().st_size:,} bytes, held-out tail {held.stat().st_size:,} bytes "
             f"scored as one stream. mie_lm: `mie_lm train --dataset text_files --data-path TRAIN --max-time T` (defaults "
             f"otherwise) on core {cores[0]}; peer: `bench/char_baseline.py` (char-level, nanoGPT CPU recipe: 4L/4H/128, "
             f"block 64, batch 12, AdamW 1e-3, 100 warmup steps, cosine to 1e-4 over the budget) on core {cores[1]}, "
             "both at the same time. Same scorer for both (sliding windows, half-window stride). "
             "**The machine was shared with other jobs during the run, so steps per second (and so the results) are noisy; "
             "one run per budget, not a median.**", "",
             "| budget (s) | mie_lm bits/byte | peer bits/byte | ratio (target <= 0.88) | mie_lm model | mie_lm steps / tokens seen (steps/s) | peer steps / chars seen (steps/s) | mie_lm threads |",
             "|---|---|---|---|---|---|---|---|"]
    for r in results:
        m, p = r["mie_lm"], r["peer"]
        shape = m.get("model") or {}
        lines.append(f"| {r['budget']:g} | {m['bits_per_byte']:.3f} | {p['bits_per_byte']:.3f} | **{r['ratio']:.3f}** | "
                     f"{m.get('preset')} {shape.get('n_layer')}L/{shape.get('n_head')}H/{shape.get('n_embd')}, block {shape.get('block_size')}, "
                     f"vocab {m.get('vocab_size')}, {m['params'] / 1e6:.2f} M params | {m['steps']:,} / {m.get('tokens_seen') or 0:,} "
                     f"({m['steps'] / max(m.get('train_seconds') or r['budget'], 1e-9):.1f}) | {p['steps']:,} / {p['tokens_seen']:,} "
                     f"({p['steps'] / p['train_seconds']:.1f}; {p['params'] / 1e6:.2f} M params) | {m.get('threads')} |")
    lines += ["", "Both processes were pinned to their own core, but other jobs ran on the same two cores, so each got a "
              "fraction of its core: the steps per second above are far below a quiet core's. Treat the ratios as "
              "indicative, not as quiet-machine figures.",
              "", "Details per budget (mie_lm's training settings as the run recorded them, its own validation bits/byte on "
              "its 10% split of the training file, and the library's one-stream evaluation when present):", ""]
    for r in results:
        m = r["mie_lm"]
        lines.append(f"- {r['budget']:g} s: training {m.get('training')}; stop: {m.get('stop')}; trainer valid bpb "
                     f"{m.get('library_valid_bpb')}; `evaluate_file`: {m.get('library_evaluate_file')}")
    return "\n".join(lines) + "\n"


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--budgets", type=float, nargs="+", default=[60, 300], help="training budgets in seconds")
    p.add_argument("--cores", type=int, nargs=2, default=[0, 1], help="core for mie_lm, core for the peer")
    p.add_argument("--no-write", action="store_true", help="print only; do not write bench/RESULTS.md")
    a = p.parse_args()
    import numpy, tokenizers
    info = machine(tokenizers, numpy)
    work = Path(tempfile.mkdtemp(prefix="quality_bench_"))
    train, held, source = vim_corpus(work)
    results = []
    for b in a.budgets:
        results.append(one_budget(train, held, b, tuple(a.cores), work))
        print(json.dumps(results[-1], default=str), flush=True)
    (work / "results.json").write_text(json.dumps(dict(results=results, source=source, info=info), default=str))
    text = report(results, source, train, held, info, a.cores)
    print(text)
    if not a.no_write: write_section("quality", text)


if __name__ == "__main__":
    main()

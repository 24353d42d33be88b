#!/usr/bin/env python
"""`mie_lm demo` on an idle machine and next to a competing busy core: the automatic thread choice at work. Not a test.

Usage: python bench/demo_load_bench.py [--minutes 2.0] [--busy-core 0] [--no-write]

Four runs of `mie_lm demo --minutes M` (default M = 2.0, the command's own default; about 70% of it trains),
each in a fresh process with `OMP_NUM_THREADS` unset, first without and then with an added load:
1. automatic threads, no added load (run it on an otherwise idle machine: the table states the load average);
2. 2 threads forced, no added load;
3. automatic threads, while a Python busy loop runs pinned to core `--busy-core` (`taskset`);
4. 2 threads forced, under the same busy loop.
"Forced" uses `mie_lm demo --threads 2` where the command has that flag; otherwise the same command through
`mie_lm.cli.main` with the demo's `TrainingConfig` given `threads=2` (everything else unchanged).
Each row: threads used (the run's `run.json`), optimizer steps and tokens in the training budget, median
training tokens/s (`metrics.jsonl`), validation bits per byte as the demo prints it, wall time of the
whole command, load average when the run started. The script prints how long the full run will take
before it starts. Writes the `demo_load` section of bench/RESULTS.md unless --no-write.
"""
import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).parent))
from _common import machine, write_section  # noqa: E402

MIE_LM = Path(sys.executable).parent / "mie_lm"
OVERHEAD_S = 20  # per demo run beyond its training budget on this CPU: start-up, evaluation, sampling, report (measured 14-39 s under load)
BUSY = "while True: pass"
FORCED = """
import sys
from dataclasses import replace
from mie_lm import cli, runs
config = runs._demo_config
runs._demo_config = lambda *a, **k: replace(config(*a, **k), threads={threads})
sys.exit(cli.main(sys.argv[1:]))
"""


def has_threads_flag() -> bool:
    "Whether `mie_lm demo` takes `--threads`."
    return "--threads" in subprocess.run([str(MIE_LM), "demo", "--help"], capture_output=True, text=True).stdout


def demo_command(out: Path, minutes: float, threads: int | None) -> list[str]:
    "The command line of one demo run (`threads=None`: the automatic choice)."
    args = ["demo", "--out", str(out), "--minutes", str(minutes)]
    if threads is None: return [str(MIE_LM), *args]
    if has_threads_flag(): return [str(MIE_LM), *args, "--threads", str(threads)]
    return [sys.executable, "-c", FORCED.format(threads=threads), *args]


def run_demo(out: Path, minutes: float, threads: int | None) -> dict:
    "Run one demo; its threads, steps, tokens, tokens/s, validation bits per byte and wall time."
    env = {k: v for k, v in os.environ.items() if k != "OMP_NUM_THREADS"}  # let the run choose
    load, t0 = os.getloadavg()[0], time.perf_counter()
    p = subprocess.run(demo_command(out, minutes, threads), capture_output=True, text=True, env=env, cwd=ROOT)
    wall = time.perf_counter() - t0
    if p.returncode: raise RuntimeError(f"demo failed ({p.returncode}):\n{p.stderr[-2000:]}")
    res = json.loads((out / "run" / "run.json").read_text())["result"]
    tps = [r["tokens_per_s"] for r in map(json.loads, (out / "run" / "metrics.jsonl").read_text().splitlines()) if "tokens_per_s" in r]
    bpb = re.search(r"valid_bits_per_byte:\s*([0-9.]+)", p.stdout)
    return dict(threads=res["threads"], steps=res["steps"], tokens=res["tokens"], train_s=res["elapsed"],
                tokens_per_s=statistics.median(tps) if tps else float("nan"),
                bpb=float(bpb.group(1)) if bpb else res["last_valid"]["valid_bpb"], wall=wall, load=load)


def busy_loop(core: int) -> subprocess.Popen:
    "A Python busy loop pinned to `core`: one core taken by another program."
    return subprocess.Popen(["taskset", "-c", str(core), sys.executable, "-c", BUSY])


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--minutes", type=float, default=2.0, help="each demo's budget, as `mie_lm demo --minutes` (default: %(default)s, the demo's default)")
    p.add_argument("--busy-core", type=int, default=0, help="core that the competing busy loop is pinned to (default: %(default)s)")
    p.add_argument("--no-write", action="store_true")
    a = p.parse_args()
    plan = [("no added load", None), ("no added load", 2), ("one busy core", None), ("one busy core", 2)]
    estimate = len(plan) * (a.minutes * 60 + OVERHEAD_S)
    print(f"{len(plan)} demo runs of --minutes {a.minutes:g}: about {estimate / 60:.1f} minutes in all", flush=True)
    import torch
    header = machine()
    forced_how = "`mie_lm demo --threads 2`" if has_threads_flag() else \
        "`mie_lm demo` through `mie_lm.cli.main` with the demo's `TrainingConfig(threads=2)` (the command has no `--threads` flag)"
    rows, t_start = [], time.time()
    with tempfile.TemporaryDirectory() as d:
        for i, (load, threads) in enumerate(plan):
            busy = busy_loop(a.busy_core) if load != "no added load" else None
            try:
                if busy: time.sleep(2)  # let it take its core
                r = run_demo(Path(d) / f"run{i}", a.minutes, threads)
            finally:
                if busy: busy.kill(); busy.wait()
            rows.append((load, "automatic" if threads is None else f"forced {threads}", r))
            print(f"{load:14s} {rows[-1][1]:10s} threads {r['threads']} steps {r['steps']} tok/s {r['tokens_per_s']:,.0f} "
                  f"bpb {r['bpb']:.4f} wall {r['wall']:.0f} s load {r['load']:.1f}", flush=True)
    total = time.time() - t_start
    lines = [f"## Demo under load: `bench/demo_load_bench.py --minutes {a.minutes:g}`, {time.strftime('%Y-%m-%d')}", "", header, "",
             f"**`mie_lm demo --minutes {a.minutes:g}`** ({a.minutes * 0.7 * 60:.0f} s of training, `tiny` preset, each run a fresh process, "
             f"`OMP_NUM_THREADS` unset) on {os.cpu_count()} cores, without and with a Python busy loop pinned to core {a.busy_core} "
             f"(`taskset`). Threads: what the run used (`run.json`); forced runs: {forced_how}.", "",
             "| machine | threads | used | steps | tokens | train tokens/s (median) | valid bits/byte | wall s | load avg at start |",
             "|---|---|---|---|---|---|---|---|---|"]
    lines += [f"| {load} | {how} | {r['threads']} | {r['steps']} | {r['tokens']:,} | {r['tokens_per_s']:,.0f} | {r['bpb']:.4f} | "
              f"{r['wall']:.0f} | {r['load']:.1f} |" for load, how, r in rows]
    by = {(load, how): r for load, how, r in rows}
    for load in ("no added load", "one busy core"):
        auto, forced = by[(load, "automatic")], by[(load, "forced 2")]
        lines.append(f"\n{load.capitalize()}: the automatic choice made {auto['steps'] / forced['steps']:.2f}x the steps of 2 forced threads "
                     f"({auto['steps']} vs {forced['steps']}), validation bits/byte {auto['bpb']:.4f} vs {forced['bpb']:.4f}.")
    lines.append(f"\nTotal bench time {total:.0f} s (estimate was {estimate:.0f} s). Torch {torch.__version__}. The load average includes the "
                 "busy loop itself (about 1.0) and anything else running on this shared machine.")
    text = "\n".join(lines)
    print(text)
    if not a.no_write: write_section("demo_load", text)


if __name__ == "__main__":
    main()

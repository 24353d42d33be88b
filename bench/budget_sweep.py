#!/usr/bin/env python
"""Which settings give the best model of a user's text file in a given time? A small measured sweep.

For each budget T (`--budgets`) it trains `mie_lm train --dataset text_files --data-path TRAIN --max-time T
--threads 1` with each candidate setting of model size, batch, learning rate and vocabulary size (a
small and a byte-level vocabulary among them), two runs at a time, one core each (`taskset`), and scores
the held-out tail of the file as one stream (the corpus and scorer of `bench/quality_bench.py`: Vim's
manual from the Debian package vim-runtime, 1.0 MB, last 10% held out).

It writes bench/budget_table.json: every run, and per budget the best setting found. The library can
read `best` as its defaults when only `--max-time` is given: take the row with the largest `max_time`
not above the given budget (the first row when the budget is below all of them); any setting the user
gives on the command line wins. Results are merged with the table already there, so budgets can be run
separately (`--budgets 60`, then `--budgets 300 --configs ...`). Writes the `budget_sweep` section of
bench/RESULTS.md unless --no-write.

Usage: python bench/budget_sweep.py [--budgets 60 300] [--configs NAME ...] [--cores 0 1] [--no-write]
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
sys.path.insert(0, str(BENCH))
from _common import machine, write_section  # noqa: E402
from quality_bench import _SCORE, vim_corpus  # noqa: E402

TABLE = BENCH / "budget_table.json"
W128 = dict(n_layer=4, n_head=4, n_embd=128)  # the char-level peer's shape
CONFIGS = {  # name -> `mie_lm train` settings (flag names with underscores); {} = the library's defaults
    "default": {},
    "tiny-v2048-lr3e-3": dict(preset="tiny", vocab_size=2048, lr=3e-3),
    "tiny-v2048-lr6e-3": dict(preset="tiny", vocab_size=2048, lr=6e-3),
    "tiny-v4096-lr3e-3": dict(preset="tiny", vocab_size=4096, lr=3e-3),
    "tiny-v512-lr3e-3": dict(preset="tiny", vocab_size=512, lr=3e-3),
    "tiny-v512-lr3e-3-b32": dict(preset="tiny", vocab_size=512, lr=3e-3, batch_size=32),
    "tiny-bytes-lr3e-3": dict(preset="tiny", vocab_size=259, lr=3e-3),
    "4L128-v512-lr3e-3": dict(preset="tiny", **W128, vocab_size=512, lr=3e-3),
    "4L128-v1024-lr2e-3": dict(preset="tiny", **W128, vocab_size=1024, lr=2e-3),
    "4L128-v2048-lr2e-3": dict(preset="tiny", **W128, vocab_size=2048, lr=2e-3),
    "4L128-v1024-lr2e-3-b32": dict(preset="tiny", **W128, vocab_size=1024, lr=2e-3, batch_size=32),
    "small-v2048-lr1e-3": dict(preset="small", vocab_size=2048, lr=1e-3),
}
PLAN = {60: ["default", "tiny-v2048-lr3e-3", "tiny-v512-lr3e-3", "tiny-v512-lr3e-3-b32", "tiny-bytes-lr3e-3",
             "4L128-v512-lr3e-3", "4L128-v1024-lr2e-3", "4L128-v2048-lr2e-3", "tiny-v2048-lr6e-3", "tiny-v4096-lr3e-3"],
        300: ["default", "tiny-v2048-lr3e-3", "tiny-v4096-lr3e-3", "4L128-v2048-lr2e-3"]}


def run_one(train: Path, held: Path, budget: float, name: str, core: int, work: Path, reuse: bool = False) -> dict:
    "Train setting `name` for `budget` seconds on `core` (unless `reuse` finds the run), score the held-out file there."
    out = work / f"{name}_{budget:g}s"
    if reuse and (out / "run.json").is_file(): return score_run(out, held, budget, name, core, None)
    flags = [f"--{k.replace('_', '-')}={v}" for k, v in CONFIGS[name].items()]
    cmd = ["taskset", "-c", str(core), str(ROOT / ".venv/bin/mie_lm"), "train", "--dataset", "text_files", "--data-path", str(train),
           "--max-time", str(budget), "--threads", "1", "--out", str(out), "--no-progress", *flags]
    t0 = time.perf_counter()
    p = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    if p.returncode: return dict(budget=budget, name=name, settings=CONFIGS[name], error=(p.stdout + p.stderr)[-500:])
    return score_run(out, held, budget, name, core, time.perf_counter() - t0)


def score_run(out: Path, held: Path, budget: float, name: str, core: int, wall: float | None) -> dict:
    "The table row of the finished run folder `out`: its held-out bits per byte (scored on `core`) and its facts."
    s = subprocess.run(["taskset", "-c", str(core), sys.executable, "-c", _SCORE.format(bench=str(BENCH), run=str(out), held=str(held))],
                       cwd=ROOT, capture_output=True, text=True)
    if s.returncode: return dict(budget=budget, name=name, settings=CONFIGS[name], error=s.stderr[-500:])
    score = json.loads(s.stdout.strip().splitlines()[-1])
    run = json.loads((out / "run.json").read_text())
    res, tr = run["result"], run["training"]
    return dict(budget=budget, name=name, settings=CONFIGS[name], bits_per_byte=round(score["bits_per_byte"], 4),
                params=score["params"], steps=res["steps"], tokens_seen=res.get("tokens"), train_seconds=res.get("elapsed"),
                process_seconds=wall and round(wall, 1), resolved=dict(preset=run.get("preset"), vocab_size=run.get("vocab_size"),
                **{k: run["model"][k] for k in ("n_layer", "n_head", "n_embd", "block_size")},
                **{k: tr.get(k) for k in ("batch_size", "lr", "min_lr", "schedule")}))


def best_rows(runs: list[dict]) -> list[dict]:
    "Per budget, the settings (as resolved by the run) of the lowest held-out bits per byte."
    out = []
    for b in sorted({r["budget"] for r in runs}):
        ok = [r for r in runs if r["budget"] == b and "bits_per_byte" in r]
        if not ok: continue
        r = min(ok, key=lambda r: r["bits_per_byte"])
        out.append(dict(max_time=b, **{k: v for k, v in r["resolved"].items() if k not in ("min_lr", "schedule")},
                        bits_per_byte=r["bits_per_byte"], name=r["name"]))
    return out


def report(table: dict) -> str:
    lines = [f"## Best settings per time budget (`bench/budget_sweep.py`, {table['updated']})", "", table["machine"], "",
             f"Corpus: {table['corpus']}; held-out tail scored as one stream. Each run: `mie_lm train --dataset text_files "
             "--max-time T --threads 1` plus the settings shown, pinned to one core, two runs at a time. **The machine was "
             "shared with other jobs, so step rates and results are noisy; one run per cell.** Best per budget -> "
             "`bench/budget_table.json` (`best`).", "",
             "| budget (s) | setting | held-out bits/byte | params (M) | steps | tokens seen |", "|---|---|---|---|---|---|"]
    for r in sorted(table["runs"], key=lambda r: (r["budget"], r.get("bits_per_byte", 99))):
        if "error" in r: lines.append(f"| {r['budget']:g} | {r['name']} | failed: {r['error'][-80:]!r} | | | |"); continue
        lines.append(f"| {r['budget']:g} | {r['name']} | {r['bits_per_byte']:.3f} | {r['params'] / 1e6:.2f} | {r['steps']:,} | {r['tokens_seen'] or 0:,} |")
    lines += ["", "Best per budget: " + "; ".join(f"{b['max_time']:g} s: `{b['name']}` ({b['bits_per_byte']:.3f})" for b in table["best"])]
    return "\n".join(lines) + "\n"


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--budgets", type=float, nargs="+", default=sorted(PLAN), help="budgets in seconds")
    p.add_argument("--configs", nargs="+", choices=sorted(CONFIGS), help="settings to run (default: PLAN for each budget)")
    p.add_argument("--cores", type=int, nargs="+", default=[0, 1], help="cores to use, one run on each")
    p.add_argument("--no-write", action="store_true", help="do not write bench/RESULTS.md (the table is always written)")
    p.add_argument("--work", help="folder for the corpus and the run folders (default: a new temporary folder)")
    p.add_argument("--reuse", action="store_true", help="score run folders already in --work instead of training them again")
    a = p.parse_args()
    import numpy, tokenizers
    work = Path(a.work) if a.work else Path(tempfile.mkdtemp(prefix="budget_sweep_"))
    train, held, source = vim_corpus(work)
    jobs = [(b, n) for b in a.budgets for n in (a.configs or PLAN.get(int(b), PLAN[min(PLAN, key=lambda k: abs(k - b))]))]
    free = list(a.cores)
    def job(bn):
        core = free.pop()
        try: return run_one(train, held, bn[0], bn[1], core, work, a.reuse)
        finally: free.append(core)
    with ThreadPoolExecutor(len(a.cores)) as ex:
        new = []
        for r in ex.map(job, jobs):
            new.append(r); print(json.dumps(r), flush=True)
    old = json.loads(TABLE.read_text())["runs"] if TABLE.exists() else []
    keep = [r for r in old if (r["budget"], r["name"]) not in {(n["budget"], n["name"]) for n in new}]
    runs = keep + new
    table = dict(updated=time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), corpus=source, machine=machine(tokenizers, numpy),
                 rule="defaults for --max-time T: the `best` row with the largest max_time <= T (else the first row); "
                      "settings the user gives win",
                 best=best_rows(runs), runs=runs)
    TABLE.write_text(json.dumps(table, indent=1) + "\n")
    text = report(table)
    print(text)
    if not a.no_write: write_section("budget_sweep", text)


if __name__ == "__main__":
    main()

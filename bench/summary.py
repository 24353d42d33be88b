#!/usr/bin/env python
"""Summary of bench/RESULTS.md: each target from the issues against what the latest run measured. Not a test.

Usage: python bench/summary.py [--no-write]
Reads the sections the six benchmarks wrote (`<!-- bench:NAME -->`), picks the numbers each target is about
out of their markdown tables, and writes the `summary` section (replacing the previous one) unless --no-write.
Run it after the benchmarks; a target whose section is missing reads "not measured".
"""
import argparse
import re
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from _common import RESULTS, write_section  # noqa: E402


def sections(text: str) -> dict[str, str]:
    "The text of every `<!-- bench:NAME -->` section of RESULTS.md, by name."
    return dict(re.findall(r"<!-- bench:([\w-]+) -->\n(.*?)<!-- /bench:\1 -->", text, re.S))


def tables(text: str) -> list[list[dict]]:
    "Every markdown table in `text` as a list of rows, each a dict from (asterisk-free) header to cell."
    out = []
    for block in re.findall(r"(?:^\|.*\|[ \t]*\n?)+", text, re.M):
        rows = [[c.strip().strip("*").strip() for c in line.strip().strip("|").split("|")] for line in block.strip().splitlines()]
        out.append([dict(zip(rows[0], r)) for r in rows[2:]])  # rows[1] is the |---| rule
    return out


def cell(text: str, column: str, first: str) -> str:
    "The `column` cell of the first row, in a table with that column, whose first cell starts with `first`."
    for t in tables(text):
        for row in t:
            key = next(iter(row.values()))
            if column in row and key.startswith(first): return row[column]
    raise KeyError(f"no row {first!r} with column {column!r}")


def num(s: str) -> float:
    "A float from a cell such as `1.13x`, `2,223`, `+4.9%`."
    return float(re.sub(r"[^\d.eE+-]", "", s))


def cache_ratio(t: str, name: str) -> str:
    "The cache on / off ratio of model `name` (the table with `cache on tokens/s`)."
    return next(row["ratio"] for tb in tables(t) for row in tb if "cache on tokens/s" in row and row["model"].startswith(name))


def ratio_row(target: str, measured: str, ok: bool) -> str:
    "A summary table row: the `target`, the `measured` value, met or not."
    return f"| {target} | {measured} | {'met' if ok else '**not met**'} |"


def model_rows(t: str) -> list[str]:
    r = num(cell(t, "tokens/s", "ratio ours / HF"))
    return [ratio_row("Model (issue 4): `small` fwd+bwd tokens/s ≥ 1.2x HF `GPT2LMHeadModel`", f"{r:.2f}x", r >= 1.2)]


def generation_rows(t: str) -> list[str]:
    eager = {n: num(cell(t, "ratio", n)) for n in ("4x128", "small", "124M")}
    comp = {n: num(cell(t, "ratio to HF", n)) for n in ("4x128", "small", "124M")}
    floor = re.search(r"of the floor, compiled \*\*(\d+)%", t)
    by_threads = [(row["threads"], num(row["compiled / HF"]), num(row["compiled % of floor"]), num(row["compiled tokens/s"]))
                  for tb in tables(t) for row in tb if "compiled % of floor" in row]
    best = max(by_threads, key=lambda r: r[3]) if by_threads else None  # the fastest thread count
    b8 = [(n, max(num(row["compiled ratio to HF"]), num(row["ratio to HF"]))) for n in ("4x128", "124M")
          for tb in tables(t) for row in tb if "compiled ratio to HF" in row and row["model"].startswith(n)]
    cache = [(n, num(cache_ratio(t, n))) for n in ("4x128", "124M")]
    return [ratio_row("Generation: eager `generate`, batch 1 greedy, ≥ 2.5x HF at 4x128 and ≥ 1.0x at the 124M shape",
                      f"{eager['4x128']:.2f}x (4x128), {eager['small']:.2f}x (small), {eager['124M']:.2f}x (124M)",
                      eager["4x128"] >= 2.5 and eager["124M"] >= 1.0),
            ratio_row("Generation: compiled decode step, batch 1 greedy, ≥ 5x HF at 4x128, identical tokens",
                      f"{comp['4x128']:.2f}x (4x128), {comp['small']:.2f}x (small)", comp["4x128"] >= 5),
            ratio_row("Generation: 124M shape fp32, batch 1, ≥ 1.1x HF and ≥ 60% of the bandwidth floor",
                      f"{comp['124M']:.2f}x HF compiled, {floor.group(1) if floor else '?'}% of the floor (1 thread)"
                      + (f"; fastest thread count {best[0]}: {best[3]:.0f} tokens/s, {best[1]:.2f}x HF, {best[2]:.0f}% of its floor" if best else ""),
                      comp["124M"] >= 1.1 and best is not None and best[2] >= 60),
            ratio_row("Generation: batch 8 ≥ 1.5x HF at both shapes (the faster of eager and compiled)", ", ".join(f"{v:.2f}x ({n})" for n, v in b8),
                      all(v >= 1.5 for _, v in b8)),
            ratio_row("Generation: KV cache on / off, 512 tokens, ≥ 10x",
                      ", ".join(f"{v:.1f}x ({n})" for n, v in cache), all(v >= 10 for _, v in cache))]


def training_rows(t: str) -> list[str]:
    r = {p: num(next(row["tokens/s"] for tb in tables(t) for row in tb
                     if row.get("runner", "").startswith("ratio Trainer") and row.get("precision") == p)) for p in ("fp32", "bf16")}
    demo = next(row for tb in tables(t) for row in tb if "notebook demo" in row.get("budget", ""))
    floor = num(demo["vs floor"])
    return [ratio_row("Training (issue 6): `Trainer` tokens/s ≥ 1.2x a plain loop over HF (`small`)",
                      f"{r['fp32']:.2f}x fp32, {r['bf16']:.2f}x bf16", r["fp32"] >= 1.2),
            ratio_row("Training (issue 6): synthetic corpus, notebook demo budget, within 3% of the entropy floor",
                      f"{floor:+.1f}% ({demo['budget'].replace(' (notebook demo)', '')})", floor <= 3)]


def evaluation_rows(t: str) -> list[str]:
    r = num(cell(t, "tokens/s", "ratio ours / HF"))
    diff = float(re.search(r"\(fixed count\): ([\d.e+-]+);", t).group(1))
    return [ratio_row("Evaluation (issue 7): dataset perplexity ≥ 1.2x HF sliding-window loop, values equal to 1e-4",
                      f"{r:.2f}x, relative difference {diff:.0e}", r >= 1.2 and diff <= 1e-4)]


def compression_rows(t: str) -> list[str]:
    b1, b8 = (num(cell(t, f"speedup_b{b}", "int8-dynamic")) for b in (1, 8))
    size, ppl = num(cell(t, "size_ratio", "int8-dynamic")), num(cell(t, "ppl_change", "int8-dynamic"))
    return [ratio_row("Compression (issue 8): int8 decode ≥ 1.5x fp32 tokens/s (124M shape)",
                      f"{b1:.2f}x batch 1, {b8:.2f}x batch 8 (int8-dynamic)", min(b1, b8) >= 1.5),
            ratio_row("Compression (issue 8): int8 perplexity change ≤ 2% (trained `small`)", f"{ppl:+.2%} (int8-dynamic)", abs(ppl) <= 0.02),
            ratio_row("Compression (issue 8): int8 size ≤ 30% of fp32", f"{size:.1%}", size <= 0.30)]


def floors_rows(t: str) -> list[str]:
    "Issue 18's int8 target, from the bandwidth-floor table at GPT-2's own 124M shape (vocabulary 50,257)."
    dyn, comp = (num(cell(t, "% of floor", v)) for v in ("int8-dynamic", "fp32 compiled"))
    wo = num(cell(t, "% of floor", "int8 compiled"))
    return [ratio_row("Generation (issue 18): GPT-2 124M `int8-dynamic`, batch 1, ≥ 60% of the int8 bandwidth floor",
                      f"{dyn:.0f}% (int8-dynamic); weight-only int8 compiled {wo:.0f}%; fp32 compiled {comp:.0f}% of the fp32 floor", dyn >= 60)]


def data_rows(t: str) -> list[str]:
    col = "MB/s (median, wall clock)"
    mem, mm = num(cell(t, col, "pack_tokens in memory")), num(cell(t, col, "pack_tokens to memmap"))
    return [ratio_row("Data (issue 3): packing throughput ≥ 5 MB/s of text", f"{mem:.2f} MB/s in memory, {mm:.2f} MB/s to memmap",
                      min(mem, mm) >= 5)]


TARGETS = {"model": model_rows, "generation": generation_rows, "training": training_rows, "evaluation": evaluation_rows,
           "compression": compression_rows, "compression-floors": floors_rows, "data": data_rows}  # section name -> its rows, in the summary's order


def rows(s: dict[str, str]) -> list[str]:
    "One table row per target: what it asks, the measured value, met or not."
    out = []
    for name, fn in TARGETS.items():
        try: out.extend(fn(s[name]))
        except (KeyError, StopIteration, AttributeError, ValueError):  # section or table row missing
            out.append(f"| `{name}` section: not found or incomplete | not measured | - |")
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--no-write", action="store_true", help="print only; do not write bench/RESULTS.md")
    a = ap.parse_args()
    s = sections(RESULTS.read_text(encoding="utf-8"))
    text = "\n".join(["## Summary: targets against this run (`bench/summary.py`)", "",
                      "Ratios are medians measured side by side against the peer in the same process; the sections below "
                      "give the machine, the settings and every number.", "",
                      "| target (issue) | measured | |", "|---|---|---|", *rows(s), ""])
    print(text)
    if not a.no_write: write_section("summary", text)


if __name__ == "__main__":
    main()

#!/usr/bin/env python
"""Interpretability benchmark for `mie_lm.interpret`: what `run_with_cache` costs over a plain forward. Not a test.

Usage: python bench/interpret_bench.py [--repeats 7] [--threads 1] [--batch 4] [--no-write]
The `small` preset (random weights, eval mode, no gradients) runs a batch of `--batch` x block_size tokens
these ways, interleaved within each repeat (in alternating order) so that drift in the machine's load hits all of them:
1. a plain forward, `model(ids)` (fused attention);
2. `run_with_cache(model, ids)` keeping every activation (`CACHE_NAMES`): the hooks, the per-head
   outputs `(B, T, n_head, C)` and the attention patterns, which the model then computes explicitly;
3. `run_with_cache(model, ids, names=("resid_pre", "resid_post"))`: the residual streams only, what
   the logit lens and residual patching need;
and, to show where the cost goes, the model's own forward with `output_attentions=True` (the attention
weights materialised instead of the fused kernel) and the cache without the per-head outputs.
Times are the process's CPU time (`time.process_time`, one torch thread), not wall time: on a machine shared
with other sessions, wall time mostly measures the wait for a core. We report the median seconds of each, the ratio of medians, and the median over repeats of each repeat's
ratio to the plain forward (paired, so load drift between repeats cancels; target: at most 1.3x for the full cache). Writes its section of bench/RESULTS.md (replacing the previous run's) unless --no-write.
"""
import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from mie_lm.interpret import CACHE_NAMES, run_with_cache  # noqa: E402
from mie_lm.model import GPT, GPTConfig  # noqa: E402
sys.path.insert(0, str(Path(__file__).parent))
from _common import machine, write_section  # noqa: E402

TARGET = 1.3  # run_with_cache (every activation) may cost at most this many plain forwards


def timed(fn):
    "CPU seconds this process spends in one call of `fn` (on a shared machine wall time mostly measures the wait for a core)."
    t0 = time.process_time(); fn(); return time.process_time() - t0


def measure(repeats: int, batch: int) -> dict:
    "Per way (module docstring): median, min and max seconds, and the median ratio to the plain forward of the same repeat."
    torch.manual_seed(0)
    model = GPT(GPTConfig.from_preset("small")).eval()
    ids = torch.randint(0, model.config.vocab_size, (batch, model.config.block_size))
    ways = {"plain forward": lambda: model(ids),
            "run_with_cache, every activation": lambda: run_with_cache(model, ids),
            "run_with_cache, residual streams only": lambda: run_with_cache(model, ids, names=("resid_pre", "resid_post")),
            "(for reference) plain forward with output_attentions=True": lambda: model(ids, output_attentions=True),
            "(for reference) run_with_cache, all but head_out": lambda: run_with_cache(model, ids, names=[n for n in CACHE_NAMES if n != "head_out"])}
    times = {k: [] for k in ways}
    with torch.no_grad():
        for fn in ways.values(): fn()  # warm up
        for r in range(repeats):  # the order flips every repeat, so no way always runs first
            for k, fn in (list(ways.items()) if r % 2 == 0 else list(ways.items())[::-1]):
                fn()  # one untimed call first: the allocator settles into this way's tensor sizes, as in a loop of them
                times[k].append(timed(fn))
    plain = times["plain forward"]
    return {k: (statistics.median(v), min(v), max(v), statistics.median(t / p for t, p in zip(v, plain))) for k, v in times.items()}


def report(res: dict, args) -> str:
    "The RESULTS.md section: a table of medians and ratios, with the machine."
    base = res["plain forward"][0]
    rows = "\n".join(f"| {k} | {m * 1e3:.1f} | {lo * 1e3:.1f}–{hi * 1e3:.1f} | {m / base:.2f}x | {r:.2f}x |"
                     for k, (m, lo, hi, r) in res.items())
    full = res["run_with_cache, every activation"][3]
    verdict = "met" if full <= TARGET else "NOT met"
    return (f"## Interpretability: cost of `run_with_cache` (bench/interpret_bench.py)\n\n"
            f"`small` preset, batch {args.batch} x {GPTConfig.from_preset('small').block_size} tokens, eval mode, no gradients; "
            f"CPU time of the process, median of {args.repeats} interleaved repeats, {args.threads} thread(s).\n\n"
            f"| way | median CPU ms | range ms | ratio of medians | median of paired ratios |\n|---|---|---|---|---|\n{rows}\n\n"
            f"A paired ratio divides each repeat's time by the plain forward's time in the same repeat, so load that changes "
            f"between repeats cancels; it is the number compared with the target.\n\n"
            f"Target: every activation cached at most {TARGET}x a plain forward: **{full:.2f}x, {verdict}**.\n\n"
            f"Machine (shared with other sessions while this ran, so absolute times are noisy; the ratio is what counts):\n{machine()}\n")


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--repeats", type=int, default=7); p.add_argument("--threads", type=int, default=1)
    p.add_argument("--batch", type=int, default=4); p.add_argument("--no-write", action="store_true")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    text = report(measure(args.repeats, args.batch), args)
    print(text)
    if not args.no_write: write_section("interpret", text)


if __name__ == "__main__":
    main()

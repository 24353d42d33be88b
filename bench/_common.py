"""Shared by the benchmarks: machine facts for the report, and writing a section of bench/RESULTS.md.

Each benchmark owns one section of RESULTS.md, fenced by `<!-- bench:NAME -->` markers; a rerun
replaces its own section in place, so the file always holds the latest run of every benchmark.
"""
from __future__ import annotations

import os
import platform
import re
import subprocess
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "RESULTS.md"
HEADER = "# Benchmark results\n\nEach section is written by its script in `bench/` (rerun it to refresh the section).\n"


def machine(*modules) -> str:
    "CPU (`lscpu` head), Python and library versions, torch threads and load average, as markdown."
    import torch
    lscpu = subprocess.run(["lscpu"], capture_output=True, text=True).stdout.splitlines()[:10]
    versions = ", ".join(f"{m.__name__} {m.__version__}" for m in (torch, *modules))
    load = " / ".join(f"{x:.2f}" for x in os.getloadavg())
    return ("```\n" + "\n".join(lscpu) + f"\n```\nPython {platform.python_version()}, {versions}, "
            f"torch threads {torch.get_num_threads()}, load average at start {load}")


def write_section(name: str, text: str, path: Path = RESULTS) -> Path:
    "Put `text` in the `name` section of RESULTS.md, replacing that section's previous run."
    block = f"<!-- bench:{name} -->\n{text.strip()}\n<!-- /bench:{name} -->\n"
    old = path.read_text(encoding="utf-8") if path.exists() else HEADER
    pattern = re.compile(rf"<!-- bench:{re.escape(name)} -->.*?<!-- /bench:{re.escape(name)} -->\n?", re.S)
    new = pattern.sub(lambda _: block, old) if pattern.search(old) else old.rstrip("\n") + "\n\n" + block
    path.write_text(new, encoding="utf-8")
    return path

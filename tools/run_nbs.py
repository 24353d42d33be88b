#!/usr/bin/env python
"""Execute notebooks in place so their committed outputs (plots, tables, widget state) are current.

Usage: python tools/run_nbs.py [nbs/00_tokenizer.ipynb ...]   (default: every notebook in nbs/)
Runs each notebook top to bottom in its own kernel from the nbs/ folder, stores widget state, then
leaves the notebook for `nbdev_clean` to tidy. Fails (exit 1) on the first error.
"""
import sys
import time
from pathlib import Path

import nbformat
from nbclient import NotebookClient

root = Path(__file__).resolve().parents[1]
paths = [Path(p).resolve() for p in sys.argv[1:]] or sorted((root / "nbs").glob("*.ipynb"))
for p in paths:
    nb = nbformat.read(p, as_version=4)
    t0 = time.time()
    NotebookClient(nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(p.parent)}},
                   store_widget_state=True).execute()
    nbformat.write(nb, p)
    print(f"{p.name}: executed in {time.time() - t0:.1f}s")

#!/usr/bin/env python
"""Write README.md from nbs/index.ipynb (what `nbdev_readme` does, without Quarto).

Markdown cells are copied as they are; code cells become ```python blocks followed by their text
output; cells with nbdev directives such as `#| hide` are left out.
Usage: python tools/make_readme.py [--check]   (--check: exit 1 if README.md is out of date)
"""
import re
import sys
from pathlib import Path

import nbformat

ROOT = Path(__file__).resolve().parents[1]
HEADER = "<!-- Generated from nbs/index.ipynb by tools/make_readme.py: edit the notebook, not this file. -->\n\n"


def cell_text(cell) -> str:
    "Markdown for one notebook cell ('' for hidden cells)."
    if cell.cell_type == "markdown": return cell.source.strip()
    if cell.cell_type != "code" or re.match(r"\s*#\|", cell.source): return ""
    out = [f"```python\n{cell.source.strip()}\n```"]
    text = "".join(o.get("text", "") if o.output_type == "stream" else o.get("data", {}).get("text/plain", "")
                   for o in cell.get("outputs", []) if o.output_type in ("stream", "execute_result"))
    if text.strip(): out.append(f"```\n{text.rstrip()}\n```")
    return "\n\n".join(out)


def readme() -> str:
    nb = nbformat.read(ROOT / "nbs" / "index.ipynb", as_version=4)
    text = "\n\n".join(t for t in map(cell_text, nb.cells) if t)
    text = re.sub(r"\]\((\d\w*)\.ipynb\)", r"](nbs/\1.ipynb)", text)  # notebook links work from the repo root
    return HEADER + text + "\n"


if __name__ == "__main__":
    path, new = ROOT / "README.md", readme()
    if "--check" in sys.argv[1:]:
        if not path.exists() or path.read_text(encoding="utf-8") != new:
            sys.exit("README.md is out of date: run `python tools/make_readme.py`")
    else:
        path.write_text(new, encoding="utf-8")

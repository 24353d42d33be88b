#!/usr/bin/env python
"""Build the offline docs site from the notebooks with Jupyter Book 1 (Sphinx + myst-nb).

Quarto (what `nbdev_docs` uses) cannot be installed offline, so this script renders the same
notebooks with Jupyter Book instead. Steps:

1. Copy `nbs/*.ipynb` to `_docs/src/`, mapping nbdev directives to myst-nb cell tags
   (`hide`/`default_exp` -> remove-cell, `eval: false` -> skip-execution, `echo: false` ->
   remove-input) and stripping the `#|` lines. Cells calling `nbdev_export` are neither shown nor run: the build
   never rewrites the package (a parallel test run may be reading it). Exported cells (`export`, `exports`, `exporti`) keep
   their source visible: the code is the lesson. After every exported cell, insert its compact API
   entries (`tools/apidoc.py`: signature, docstring, parameter table; no headings).
2. Write `_toc.yml` (index first, then the numbered notebooks) and copy `docs/_config.yml`.
3. Serve the ipywidgets embed manager and MathJax from the site itself (npm packages listed in
   `docs/package.json`, installed here if missing) instead of a CDN.
4. `jupyter-book config sphinx` turns `_config.yml` into a Sphinx `conf.py`, minus the extensions
   that load code from outside addresses (thebe, comments); `sphinx-build -W --keep-going` then
   executes the notebooks and fails on any warning or failing cell. The site lands in `_docs/_build/html/`.
"""
from __future__ import annotations

import argparse
import ast
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import nbformat

ROOT = Path(__file__).resolve().parents[1]
NBS, DOCS, OUT = ROOT / "nbs", ROOT / "docs", ROOT / "_docs"
SRC, HTML = OUT / "src", OUT / "_build" / "html"
DIRECTIVE = re.compile(r"^\s*#\|\s*(.*?)\s*$")

SETUP_CELL = f"""
import sys
sys.path.insert(0, {str(ROOT / "tools")!r})
from apidoc import show_api as _show_api, show_const as _show_const
"""


def directives(cell) -> tuple[dict[str, str], str]:
    "The nbdev directives of a code `cell` (`{'export': '', 'eval': 'false'}`) and its source without them."
    found, body = {}, []
    for line in cell.source.splitlines():
        m = DIRECTIVE.match(line)
        if m and not body:  # directives sit at the top of a cell
            key, _, val = m.group(1).partition(":") if ":" in m.group(1) else m.group(1).partition(" ")
            found[key.strip()] = val.strip()
        else:
            body.append(line)
    return found, "\n".join(body).strip("\n")


def api_entries(source: str, public: set[str], module: str | None = None) -> list[str]:
    "Code displaying API entries for an exported cell: public defs/classes and their methods, `@patch`ed methods, constants."
    return [f"_show_api({n}, name={n!r}, module={module!r})" for n in api_names(source, public)] + [
        f"_show_const({n!r}, {n}, {line!r})" for n, line in api_constants(source, public)]


def api_constants(source: str, public: set[str]) -> list[tuple[str, str]]:
    "Exported constants assigned at the top level of `source`, with the first line of their assignment."
    lines, found = source.splitlines(), []
    for node in ast.parse(source).body:
        if isinstance(node, (ast.Assign, ast.AnnAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            line = lines[node.lineno - 1]  # its trailing comment documents the constant (read by `apidoc.line_comment`)
            names = [n for t in targets for n in ([t] if isinstance(t, ast.Name) else getattr(t, "elts", []))]
            found += [(n.id, line) for n in names if isinstance(n, ast.Name) and n.id in public]
    return found


def api_names(source: str, public: set[str]) -> list[str]:
    "Public top-level defs/classes of `source`, their public methods, and `@patch`ed methods."
    names = []
    for node in ast.parse(source).body:
        if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)): continue
        decos = [d.func.id if isinstance(d, ast.Call) and isinstance(d.func, ast.Name) else getattr(d, "id", "")
                 for d in node.decorator_list]
        if "patch" in decos and node.args.args and node.args.args[0].annotation is not None:
            cls = ast.unparse(node.args.args[0].annotation).strip("'\"")
            if not node.name.startswith("_"): names.append(f"{cls}.{node.name}")
        elif node.name in public:
            names.append(node.name)
            if isinstance(node, ast.ClassDef):
                names += [f"{node.name}.{m.name}" for m in node.body
                          if isinstance(m, (ast.FunctionDef, ast.AsyncFunctionDef)) and not m.name.startswith("_")
                          and not any(getattr(d, "id", "") == "property" for d in m.decorator_list)]
    return names


def module_public_names(nb) -> tuple[str | None, set[str]]:
    "The module a notebook exports to and its `__all__` (None and empty if it exports nothing)."
    for cell in nb.cells:
        if cell.cell_type != "code": continue
        d, _ = directives(cell)
        if "default_exp" in d:
            name = f"mie_lm.{d['default_exp']}"
            return name, set(getattr(__import__(name, fromlist=["__all__"]), "__all__", []))
    return None, set()


def tagged(cell, *tags):
    cell.metadata.setdefault("tags", [])
    cell.metadata["tags"] += [t for t in tags if t not in cell.metadata["tags"]]
    return cell


def preprocess(nb):
    "Map nbdev directives to myst-nb tags and add API entries after exported cells."
    (module, public), cells = module_public_names(nb), [tagged(nbformat.v4.new_code_cell(SETUP_CELL), "remove-cell")]
    for cell in nb.cells:
        cells.append(cell)
        if cell.cell_type != "code": continue
        d, cell.source = directives(cell)
        if {"hide", "default_exp", "include"} & set(d) or "nbdev_export" in cell.source:
            tagged(cell, "remove-cell")
        if d.get("eval") == "false": tagged(cell, "skip-execution")
        if "nbdev_export" in cell.source: tagged(cell, "skip-execution")  # run from _docs/src it would rewrite mie_lm/
        if d.get("echo") == "false": tagged(cell, "remove-input")
        if d.get("output") == "false": tagged(cell, "remove-output")
        if {"export", "exports"} & set(d):
            cells += [tagged(nbformat.v4.new_code_cell(code), "remove-input") for code in api_entries(cell.source, public, module)]
    nb.cells = cells
    for c in nb.cells: c.pop("id", None)
    nb.nbformat_minor = 4  # ids dropped above: they are optional before 4.5
    return nb


def write_sources(names: list[str] | None = None) -> list[str]:
    "Preprocess notebooks into `_docs/src` and write the table of contents; return the page names."
    SRC.mkdir(parents=True, exist_ok=True)
    nbs = sorted(NBS.glob("*.ipynb"), key=lambda p: (p.stem != "index", p.stem))
    if names: nbs = [p for p in nbs if p.stem in names or p.stem == "index"]
    for old in SRC.glob("*.ipynb"):
        if old.stem not in {p.stem for p in nbs}: old.unlink()
    for p in nbs:
        nb = preprocess(nbformat.read(p, as_version=4))
        text = nbformat.writes(nb)
        dest = SRC / p.name
        if not dest.exists() or dest.read_text(encoding="utf-8") != text: dest.write_text(text, encoding="utf-8")
    toc = "format: jb-book\nroot: index\nchapters:\n" + "".join(f"- file: {p.stem}\n" for p in nbs if p.stem != "index")
    (SRC / "_toc.yml").write_text(toc)
    for f in ("_config.yml", "favicon.svg"): shutil.copy(DOCS / f, SRC / f)
    shutil.copytree(DOCS / "_static", SRC / "_static", dirs_exist_ok=True)  # loaded on every page
    return [p.stem for p in nbs]


def install_assets():
    "Copy the widget manager and MathJax into `_assets` (npm-installing them first if needed)."
    mods = DOCS / "node_modules"
    if not (mods / "@jupyter-widgets" / "html-manager").exists() or not (mods / "mathjax").exists():
        if shutil.which("npm") is None:
            sys.exit("npm is needed once, to install the widget manager and MathJax into docs/node_modules: "
                     "install Node.js (Debian/Ubuntu: apt-get install npm; macOS: brew install node), or run `make test-setup`")
        subprocess.run(["npm", "install", "--no-audit", "--no-fund", "--loglevel=error"], cwd=DOCS, check=True)
    assets = SRC / "_assets"  # copied to the site root by `html_extra_path`
    widgets, mathjax = assets / "widgets", assets / "mathjax"
    if not widgets.exists():
        shutil.copytree(mods / "@jupyter-widgets" / "html-manager" / "dist", widgets,
                        ignore=shutil.ignore_patterns("*.map", "*amd*", "*.txt"))
    if not mathjax.exists():
        shutil.copytree(mods / "mathjax" / "es5", mathjax, ignore=shutil.ignore_patterns("sre", "*-full*", "*speech*"))


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("names", nargs="*", help="only these notebooks (stems), plus index; default all")
    args = ap.parse_args()
    pages = write_sources(args.names)
    install_assets()
    bin_dir = Path(sys.executable).parent
    subprocess.run([str(bin_dir / "jupyter-book"), "config", "sphinx", str(SRC)], check=True, stdout=subprocess.DEVNULL)
    conf = SRC / "conf.py"
    conf.write_text(conf.read_text().replace("'sphinx_thebe', ", "").replace("'sphinx_comments', ", ""))
    # A partial build (some notebooks) links to pages it leaves out: only the full build treats warnings as errors.
    cmd = [str(bin_dir / "sphinx-build"), *([] if args.names else ["-W"]), "--keep-going", "-q", "-b", "html", str(SRC), str(HTML)]
    shutil.rmtree(HTML / "reports", ignore_errors=True)  # reports of failed cells from an earlier build
    print("building", len(pages), "pages:", " ".join(cmd), flush=True)
    res = subprocess.run(cmd, cwd=ROOT, env={**os.environ, "PYTHONWARNINGS": "ignore"})
    if res.returncode != 0:
        reports = sorted((HTML / "reports").glob("*.err.log")) if HTML.exists() else []
        for r in reports: print(f"--- {r.name}\n{r.read_text()[-3000:]}")
        sys.exit(f"docs build failed (exit {res.returncode})")
    print(f"docs site: {HTML / 'index.html'}")


if __name__ == "__main__":
    main()

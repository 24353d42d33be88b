r"""Site check: the offline docs site built by tools/build_docs.py is complete, teaches, and loads cleanly.

Builds the site (once per session, executing every notebook). Static checks parse every page's HTML: exported code is
shown (not folded), every exported name has a compact API entry whose parameter table describes each parameter, and no
page leaks `__main__.`, `VAR_KEYWORD` or project words. The browser checks load each page in headless Chromium (Debian's
`chromium`, driven by Playwright) over a local HTTP server: no console errors, nothing fetched from outside, math
without literal `\_`, widget labels not cut off, and the kernel-free explorers of `04a_explorers` agree with the
Python filters when their sliders move. Screenshots of every page land in `_docs/screenshots/`.
"""
from __future__ import annotations

import functools
import http.server
import importlib
import os
import re
import shutil
import subprocess
import sys
import threading
from pathlib import Path
from urllib.parse import urlparse

import nbformat
import pytest
from bs4 import BeautifulSoup

ROOT = Path(__file__).resolve().parents[1]
HTML = ROOT / "_docs" / "_build" / "html"
NOTEBOOKS = sorted((ROOT / "nbs").glob("*.ipynb"))
sys.path.insert(0, str(Path(__file__).parent))
from find_browser import find_browser  # noqa: E402

CHROMIUM = find_browser()
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]


_BUILD = {}  # the one docs build of this session: its exit status and output


@pytest.fixture(scope="session")
def site() -> Path:
    "Build the site once per session (notebooks execute at build time); every page test fails fast if it failed."
    if os.environ.get("MIE_LM_SITE_BUILT") == "1" and (HTML / "index.html").exists():  # checking a site built just before
        _BUILD.update(code=0, log="")
    if not _BUILD:
        res = subprocess.run([sys.executable, str(ROOT / "tools" / "build_docs.py")], cwd=ROOT, capture_output=True, text=True)
        _BUILD.update(code=res.returncode, log=(res.stdout + res.stderr)[-8000:])
    if _BUILD["code"] != 0: pytest.fail(f"docs build failed:\n{_BUILD['log']}", pytrace=False)
    return HTML


def test_docs_build(site):
    assert (site / "index.html").is_file()


def page(site: Path, nb: Path) -> BeautifulSoup:
    return BeautifulSoup((site / f"{nb.stem}.html").read_text(encoding="utf-8"), "html.parser")


def main_text(soup: BeautifulSoup) -> str:
    "Text of the page's article (the notebook), not the navigation."
    return (soup.find("article") or soup).get_text()


def exported_module(nb: Path) -> str | None:
    for cell in nbformat.read(nb, as_version=4).cells:
        m = re.search(r"^#\|\s*default_exp\s+(\S+)", cell.source, re.M) if cell.cell_type == "code" else None
        if m: return f"mie_lm.{m.group(1)}"
    return None


def output_kinds(nb: Path) -> set[str]:
    "'figure' if the committed notebook shows an image, 'table' if it shows an HTML table."
    kinds = set()
    for cell in nbformat.read(nb, as_version=4).cells:
        for out in cell.get("outputs", []):
            data = out.get("data", {})
            if "image/png" in data or "image/svg+xml" in data: kinds.add("figure")
            if "<table" in str(data.get("text/html", "")): kinds.add("table")
    return kinds


@pytest.mark.parametrize("nb", NOTEBOOKS, ids=lambda p: p.stem)
def test_page_has_no_raw_directives(site, nb):
    text = main_text(page(site, nb))
    assert "#|" not in text, f"{nb.stem}: raw nbdev directive on the page"
    assert "nbdev_export(" not in text, f"{nb.stem}: nbdev_export call on the page"


@pytest.mark.parametrize("nb", NOTEBOOKS, ids=lambda p: p.stem)
def test_page_loads_nothing_from_outside(site, nb):
    soup = page(site, nb)
    urls = [s.get("src") for s in soup.find_all("script") if s.get("src")]
    urls += [l.get("href") for l in soup.find_all("link") if "stylesheet" in (l.get("rel") or []) or l.get("as") in ("script", "style")]
    outside = [u for u in urls if urlparse(u).scheme or u.startswith("//")]
    assert not outside, f"{nb.stem} loads {outside}"


@pytest.mark.parametrize("nb", [n for n in NOTEBOOKS if exported_module(n)], ids=lambda p: p.stem)
def test_every_exported_name_has_an_api_entry(site, nb):
    mod = importlib.import_module(exported_module(nb))
    soup = page(site, nb)
    entries = {e["data-api-name"] for e in soup.select(".api-entry[data-api-name]")}
    missing = [n for n in mod.__all__ if n not in entries]
    assert not missing, f"{nb.stem}: no API entry for {missing}"
    in_outputs = [h.get_text(strip=True) for out in soup.select("div.cell_output") for h in out.find_all(re.compile("^h[1-6]$"))]
    assert not in_outputs, f"{nb.stem}: headings inside cell outputs (API entries must not break the page outline): {in_outputs}"


def exported_defs(nb: Path) -> list[str]:
    "Names of the public functions and classes defined in the notebook's exported cells."
    names = []
    for cell in nbformat.read(nb, as_version=4).cells:
        if cell.cell_type == "code" and re.match(r"\s*#\|\s*exports?\b", cell.source):
            names += re.findall(r"^(?:def|class)\s+([A-Za-z]\w*)", cell.source, re.M)
    return names


@pytest.mark.parametrize("nb", [n for n in NOTEBOOKS if exported_module(n)], ids=lambda p: p.stem)
def test_exported_code_is_shown_not_folded(site, nb):
    soup = page(site, nb)
    shown = " ".join(c.get_text() for c in soup.select("div.cell_input") if not c.find_parent("details"))
    folded = [n for n in exported_defs(nb) if not re.search(rf"\b(?:def|class)\s+{n}\b", shown)]
    assert not folded, f"{nb.stem}: exported code not shown on the page: {folded}"


@pytest.mark.parametrize("nb", NOTEBOOKS, ids=lambda p: p.stem)
def test_page_leaks_no_internals_or_project_words(site, nb):
    text = main_text(page(site, nb))
    for bad in ("__main__.", "VAR_KEYWORD", "VAR_POSITIONAL"):
        assert bad not in text, f"{nb.stem}: {bad!r} on the page: ...{text[max(0, text.find(bad) - 80):text.find(bad) + 40]}..."
    found = re.search(r"\bthe issue\b", text, re.I)
    assert not found, f"{nb.stem}: project wording on the page: ...{text[max(0, found.start() - 80):found.end() + 40]}..."


@pytest.mark.parametrize("nb", [n for n in NOTEBOOKS if exported_module(n)], ids=lambda p: p.stem)
def test_api_tables_describe_every_parameter(site, nb):
    undescribed = []
    for entry in page(site, nb).select(".api-entry"):
        for row in entry.select("table.api-params tbody tr"):
            cells = row.find_all("td")
            if not cells[-1].get_text(strip=True): undescribed.append(f"{entry['data-api-name']}({cells[0].get_text(strip=True)})")
    assert not undescribed, f"{nb.stem}: parameters without a description: {undescribed}"


@pytest.mark.parametrize("nb", NOTEBOOKS, ids=lambda p: p.stem)
def test_figures_and_tables_are_rendered(site, nb):
    soup, kinds = page(site, nb), output_kinds(nb)
    article = soup.find("article") or soup
    if "figure" in kinds: assert article.find("img"), f"{nb.stem}: notebook has a figure, page has none"
    if "table" in kinds: assert article.find("table"), f"{nb.stem}: notebook has a table, page has none"


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args): pass


@pytest.fixture(scope="session")
def server(site):
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_QuietHandler, directory=str(site)))
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()


@pytest.fixture(scope="session")
def browser():
    if CHROMIUM is None and sys.platform == "darwin":
        pytest.skip("no Chromium or Google Chrome: browser checks skipped (brew install --cask chromium, or set CHROMIUM)")
    if CHROMIUM is None:
        pytest.fail("chromium is not installed: the test set-up (make test) installs Debian's chromium")
    from playwright.sync_api import sync_playwright
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield b
        b.close()


def has_widgets(nb: Path) -> bool:
    return bool(nbformat.read(nb, as_version=4).metadata.get("widgets"))


@pytest.mark.parametrize("nb", NOTEBOOKS, ids=lambda p: p.stem)
def test_page_loads_in_chromium(site, server, browser, nb):
    pg = browser.new_page(viewport={"width": 1280, "height": 900})
    errors, outside = [], []
    pg.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    pg.on("pageerror", lambda e: errors.append(str(e)))
    pg.on("response", lambda r: errors.append(f"HTTP {r.status} for {r.url}") if r.status >= 400 else None)
    pg.on("request", lambda r: outside.append(r.url) if not r.url.startswith((server, "data:", "blob:")) else None)
    pg.goto(f"{server}/{nb.stem}.html", wait_until="networkidle")
    if has_widgets(nb):
        pg.wait_for_selector(".jupyter-widgets", state="attached", timeout=15_000)  # a closed progress bar is hidden
        assert pg.locator(".jupyter-widgets").count() > 0
    math = pg.evaluate(MATH_SOURCE_JS)
    cut = pg.evaluate(CUT_LABELS_JS)
    shots = site.parent.parent / "screenshots"
    shots.mkdir(exist_ok=True)
    pg.screenshot(path=str(shots / f"{nb.stem}.png"), full_page=True)
    pg.close()
    assert not errors, f"{nb.stem}: console errors {errors}"
    assert not outside, f"{nb.stem}: requests outside the site {outside}"
    literal = [m for m in math if re.search(r"\\[_&%#$]", m)]
    assert not literal, f"{nb.stem}: math rendered with literal backslashes: {literal[:3]}"
    assert not cut, f"{nb.stem}: labels cut off: {cut}"


# After MathJax has typeset the page: the text of every rendered formula (MathML of its internal tree).
MATH_SOURCE_JS = """async () => {
  const mj = window.MathJax;
  if (!mj || !mj.startup || !mj.startup.promise) return [];
  await mj.startup.promise;
  return Array.from(mj.startup.document.math).map(m => mj.startup.toMML(m.root));
}"""

# Labels of widgets and explorers whose text is wider than their box (shown with an ellipsis).
CUT_LABELS_JS = """() => Array.from(document.querySelectorAll(".widget-label, .mie-controls label"))
  .filter(e => e.offsetParent !== null && e.scrollWidth > e.clientWidth + 1).map(e => e.textContent)"""


EXPLORERS = ROOT / "nbs" / "04a_explorers.ipynb"


@pytest.fixture(scope="session")
def explorer_page(site, server, browser):
    pg = browser.new_page(viewport={"width": 1280, "height": 900})
    pg.goto(f"{server}/{EXPLORERS.stem}.html", wait_until="networkidle")
    yield pg
    pg.close()


@pytest.mark.parametrize("knobs", [dict(temperature=0.8, top_k=10), dict(temperature=1.3, top_p=0.6), dict(min_p=0.05),
                                   dict(temperature=0), dict(temperature=2, top_k=40, top_p=0.9, min_p=0.02)], ids=str)
def test_sampling_explorer_matches_python(explorer_page, knobs):
    "Moving the sliders on the static page filters like `process_logits` does on the logits the page carries."
    import json
    import torch
    from mie_lm.explorers import reference_probs
    root = explorer_page.locator(".mie-sampling").first
    data = json.loads(root.locator(".mie-data").text_content())
    for prompt in range(len(data["prompts"])):
        root.locator('[data-knob="prompt"]').select_option(str(prompt))
        settings = {**dict(temperature=1.0, top_k=0, top_p=1.0, min_p=0.0), **knobs}
        for k, v in settings.items(): root.locator(f'[data-knob="{k}"]').fill(str(v))
        ref = reference_probs(data["logits"][prompt], **settings)
        kept = int(root.locator(".kept-count").text_content())
        assert kept == int((ref > 0).sum()), f"prompt {prompt}, {settings}: page keeps {kept}, process_logits {int((ref > 0).sum())}"
        shown = torch.tensor(root.evaluate("r => r.mieState.probs"), dtype=torch.float64)
        assert torch.allclose(shown, ref.double(), atol=1e-6), f"prompt {prompt}, {settings}: probabilities differ"
        bars = root.locator(".mie-bar-row").evaluate_all("rs => rs.map(r => [+r.dataset.id, +r.dataset.p])")
        assert bars and all(abs(p - ref[i].item()) < 1e-6 for i, p in bars), "the bars show other probabilities"


def test_sampling_slider_changes_the_kept_count(explorer_page):
    root = explorer_page.locator(".mie-sampling").first
    for k, v in dict(temperature=1.0, top_k=0, top_p=1.0, min_p=0.0).items(): root.locator(f'[data-knob="{k}"]').fill(str(v))
    before = int(root.locator(".kept-count").text_content())
    root.locator('[data-knob="top_k"]').fill("5")
    after = int(root.locator(".kept-count").text_content())
    assert before > 5 and after == 5, f"top-k 5 should cut {before} kept tokens to 5, the page shows {after}"


def test_attention_explorer_shows_the_chosen_head(explorer_page):
    import json
    root = explorer_page.locator(".mie-attention").first
    data = json.loads(root.locator(".mie-data").text_content())
    n_layer, n_head = len(data["att"]), len(data["att"][0])
    for layer, head in {(0, 0), (n_layer - 1, n_head - 1), (n_layer - 1, 0)}:
        root.locator('[data-knob="layer"]').fill(str(layer))
        root.locator('[data-knob="head"]').fill(str(head))
        cells = root.locator("td").evaluate_all("cs => cs.map(c => +c.dataset.w)")
        assert cells == [w for row in data["att"][layer][head] for w in row], f"layer {layer} head {head}: grid differs from the data"


def test_model_page_shows_attention_code_without_a_click(site, server, browser):
    pg = browser.new_page(viewport={"width": 1280, "height": 900})
    pg.goto(f"{server}/03_model.html", wait_until="networkidle")
    code = pg.locator("div.cell_input pre", has_text=re.compile(r"class CausalSelfAttention\b")).first
    visible = code.is_visible()
    pg.close()
    assert visible, "the source of CausalSelfAttention is not visible on the model page without a click"


def test_api_entries_read_docments_as_written():
    "The API entry renderer: comments on the `)` line, shared-line comments, `**kwargs`, `#` inside strings, no `__main__.`."
    sys.path.insert(0, str(ROOT / "tools"))
    from apidoc import _docs, entry_html, line_comment

    class Config: pass
    Config.__module__ = "__main__"

    def f(cfg: Config, # the settings
          q, k, v, # three tensors
          scale: float) -> int: # the scale
        "Do `f`."
    def g(name: str, # a name
          **overrides): # fields to change
        ...
    def h(x: int, # an int
         ) -> str: # the text
        ...
    test = _docs(f)
    assert (test["scale"], test.get("return")) == ("the scale", None)
    assert _docs(g)["overrides"] == "fields to change"
    assert (_docs(h)["x"], _docs(h)["return"]) == ("an int", "the text")
    html = entry_html(f, "f")
    assert "__main__" not in html and "VAR_" not in html and "<code>q, k, v</code>" in html and "<code>Config</code>" in html
    assert "**overrides" in entry_html(g, "g")
    assert line_comment('COLORS = {"a": "#a6e3a1"}  # colour of each bucket') == "colour of each bucket"
    assert line_comment('COLORS = {"a": "#a6e3a1", "b": "#fff"}') == ""
    assert line_comment("PRESETS = {  # name -> fields") == "name -> fields"
    from apidoc import md_inline
    assert md_inline("`a<b` is $\\frac{8}{3}C$") == '<code>a&lt;b</code> is <span class="math notranslate nohighlight">\\(\\frac{8}{3}C\\)</span>'


"""Site check: the offline docs site built by tools/build_docs.py is complete and loads cleanly.

Builds the site (once per session, executing every notebook). Static checks parse every page's HTML; the browser
checks load each page in headless Chromium (Debian's `chromium`, driven by Playwright) over a local
HTTP server, and save screenshots of two pages under `_docs/screenshots/`.
"""
from __future__ import annotations

import functools
import http.server
import importlib
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
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]


_BUILD = {}  # the one docs build of this session: its exit status and output


@pytest.fixture(scope="session")
def site() -> Path:
    "Build the site once per session (notebooks execute at build time); every page test fails fast if it failed."
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
    headings = {h.get_text(strip=True).rstrip("#¶") for h in page(site, nb).find_all(re.compile("^h[2-6]$"))}
    missing = [n for n in mod.__all__ if n not in headings]
    assert not missing, f"{nb.stem}: no API entry for {missing}"


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
    if nb.stem in ("index", "00_tokenizer"):
        shots = site.parent.parent / "screenshots"
        shots.mkdir(exist_ok=True)
        pg.screenshot(path=str(shots / f"{nb.stem}.png"), full_page=True)
    pg.close()
    assert not errors, f"{nb.stem}: console errors {errors}"
    assert not outside, f"{nb.stem}: requests outside the site {outside}"

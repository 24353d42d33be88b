"""Packaging contracts: light imports, requirement ranges, notebooks import only earlier modules."""
import re
import subprocess
import sys
from configparser import ConfigParser
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parents[1]
MODULE_ORDER = ["tokenizer", "corpora", "data", "model", "hub", "generation", "explorers", "training", "evaluation", "interpret",
                "compression", "runs", "cli"]
MODULES = [p.stem for p in sorted((ROOT / "mie_lm").glob("*.py")) if not p.stem.startswith("_")]


@pytest.mark.parametrize("mod", MODULES)
def test_import_does_not_load_plotting_or_widgets(mod):
    code = (f"import sys, mie_lm.{mod}; bad = [m for m in ('matplotlib', 'seaborn', 'ipywidgets') if m in sys.modules]; "
            "assert not bad, bad")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_runtime_requirements_are_ranges():
    cfg = ConfigParser(delimiters=["="])
    cfg.read(ROOT / "settings.ini")
    reqs = cfg["DEFAULT"]["requirements"].split()
    assert "torch>=2.4" in reqs  # nn.RMSNorm (2.4) and torch.compiler.is_compiling (2.3)
    assert not [r for r in reqs if "==" in r], "runtime requirements must be ranges, not pins"
    for lib in ["tokenizers", "datasets", "safetensors", "matplotlib", "seaborn", "ipywidgets", "tqdm", "numpy"]:
        assert any(re.match(rf"{lib}\b", r) for r in reqs), lib


@pytest.mark.parametrize("mod", MODULES)
def test_modules_import_only_earlier_modules(mod):
    src = (ROOT / "mie_lm" / f"{mod}.py").read_text()
    used = set(re.findall(r"^\s*(?:from|import)\s+(?:mie_lm)?\.?(?:mie_lm\.)?(\w+)", src, re.M)) & set(MODULE_ORDER)
    later = [m for m in used if MODULE_ORDER.index(m) > MODULE_ORDER.index(mod)]
    assert not later, f"mie_lm.{mod} imports later modules {later}"


def test_every_notebook_follows_the_skeleton():
    for nb_path in sorted((ROOT / "nbs").glob("*.ipynb")):
        nb = nbformat.read(nb_path, as_version=4)
        titles = [c.source for c in nb.cells if c.cell_type == "markdown" and c.source.startswith("# ")]
        assert titles, f"{nb_path.name}: no H1 title"
        assert "\n> " in titles[0], f"{nb_path.name}: H1 title without a `>` subtitle"


def test_release_workflow_builds_checks_and_publishes_on_a_tag():
    "A version tag builds the sdist and wheel, checks them with twine, and publishes with PyPI trusted publishing."
    text = (ROOT / ".github" / "workflows" / "release.yaml").read_text()
    assert re.search(r"tags:\s*\[\"v\*\"\]", text), "release.yaml must run on version tags"
    for step in ("python -m build", "twine check --strict", "pypa/gh-action-pypi-publish", "id-token: write"):
        assert step in text, f"release.yaml lacks {step!r}"
    assert "password" not in text and "PYPI_TOKEN" not in text, "trusted publishing needs no stored token"

"""Every notebook's inline tests, run by `nbdev_test` itself (one pytest test per notebook), and its visible cells alone.

`nbdev_test` runs each notebook top to bottom, skipping cells flagged with a `tst_flags` flag
(`#| slow`) unless asked; a failing `test_eq`/`assert` fails the notebook. Running it per notebook
here lets pytest's summary count the notebooks beside the other tests.

A reader sees only the visible cells (the docs site and GitHub hide `#| hide` cells), so those must run on their own:
`test_visible_cells_run_alone` runs each notebook again with its hidden cells skipped. A name defined in a hidden cell
and used by a visible one fails it with a NameError.
"""
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "nbs").glob("*.ipynb"))
NBDEV_TEST = Path(sys.executable).parent / "nbdev_test"


@pytest.mark.parametrize("nb", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook(nb):
    res = subprocess.run([str(NBDEV_TEST), "--path", str(nb), "--do_print"], cwd=ROOT, capture_output=True, text=True,
                         env={**os.environ, "PYTHONWARNINGS": "ignore"})
    assert res.returncode == 0, f"nbdev_test failed on {nb.name}:\n{res.stdout[-6000:]}\n{res.stderr[-6000:]}"


VISIBLE_ONLY = """
import sys
from pathlib import Path
from nbdev.test import test_nb
ok, _ = test_nb(Path(sys.argv[1]), skip_flags=["slow", "hide"])  # `#| hide` cells are skipped like slow ones
sys.exit(0 if ok else 1)
"""


@pytest.mark.parametrize("nb", NOTEBOOKS, ids=lambda p: p.stem)
def test_visible_cells_run_alone(nb):
    res = subprocess.run([sys.executable, "-c", VISIBLE_ONLY, str(nb)], cwd=ROOT, capture_output=True, text=True,
                         env={**os.environ, "PYTHONWARNINGS": "ignore"})
    assert res.returncode == 0, f"{nb.name}: the visible cells fail without the hidden ones:\n{res.stderr[-4000:]}"

"""Every notebook's inline tests, run by `nbdev_test` itself (one pytest test per notebook).

`nbdev_test` runs each notebook top to bottom, skipping cells flagged with a `tst_flags` flag
(`#| slow`) unless asked; a failing `test_eq`/`assert` fails the notebook. Running it per notebook
here lets pytest's summary count the notebooks beside the other tests.
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

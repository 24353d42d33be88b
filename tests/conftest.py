"""Test-run plumbing: keep tests that share files or a session fixture on one pytest-xdist worker.

`make test` runs pytest on two workers (`-n 2 --dist loadgroup`). With `--dist loadgroup`, tests carrying the same
`xdist_group` mark run on one worker, one after another; each group is a unit of work handed to whichever worker is free.
The marks are added here, not in the test files, so the grouping rules sit in one place:

- `tests/test_docs_site.py`: one group. Its session fixture builds the docs site once (into `_docs/`, executing every
  notebook there, with `_docs/src` as the working folder), and every page test reads that build.
- `tests/test_wheel.py`: one group. Its module fixture builds the wheel from the source tree (`build/`, `*.egg-info`).
- `tests/test_notebooks.py`: one group per notebook. `test_notebook[X]` and `test_visible_cells_run_alone[X]` both
  execute `nbs/X.ipynb` with `nbs/` as the working folder, and a notebook may write a fixed run folder there
  (`index` trains into `nbs/runs/quickstart`, under the run lock).
- `tests/test_sync.py` joins the `index` notebook's group: it copies `nbs/` (with `nbs/runs/`) while that notebook could be
  rewriting its run folder.
- Every other module is a group of its own, so its module-scoped fixtures (tokenizers, trained runs) are built once.

xdist hands out the groups with the most tests first; among groups of equal size, collection order decides. Under xdist
the items are reordered so that the long units leave early and short ones fill the end: the docs site (the longest,
~5 min), the wheel, the other modules, then the notebooks from the last to the first (the later ones train models and
take longest; the first ones take seconds). A plain `pytest` keeps file order.
"""
from __future__ import annotations

from pathlib import Path

import pytest

# Modules whose tests form one group, under a fixed name (everything else: one group per module, named after it).
SHARED = {"test_docs_site": "docs-site", "test_wheel": "wheel", "test_sync": "nbs-index"}
FIRST = ["docs-site", "wheel"]  # sent to the workers first under xdist


def group_of(item: pytest.Item) -> str:
    "The `xdist_group` name of a test item."
    module = Path(str(item.fspath)).stem
    if module == "test_notebooks":
        nb = item.callspec.params["nb"]
        return f"nbs-{Path(nb).stem}"
    return SHARED.get(module, module)


def order_key(group: str, first_seen: dict[str, int]) -> tuple:
    if group in FIRST: return (0, FIRST.index(group))
    if group.startswith("nbs-"): return (2, -first_seen[group])  # later notebooks first, the short early ones last
    return (1, first_seen[group])


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "xdist_group(name): run on the same pytest-xdist worker as the group's other tests")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    groups = {}
    for item in items:
        groups[item] = group_of(item)
        item.add_marker(pytest.mark.xdist_group(groups[item]))
    if not hasattr(config, "workerinput"): return  # not an xdist worker: keep the usual order
    first_seen = {}
    for item in items: first_seen.setdefault(groups[item], len(first_seen))
    items.sort(key=lambda it: order_key(groups[it], first_seen))  # stable: tests keep their order within a group

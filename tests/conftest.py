"""Test-run plumbing: keep tests that share files or a session fixture on one pytest-xdist worker.

`make test` runs pytest on two workers (`-n 2 --dist loadgroup`). With `--dist loadgroup`, the tests of one group run on
one worker, one after another; each group is a unit of work handed to whichever worker is free. The groups are set here,
not in the test files, so the rules sit in one place:

- `tests/test_docs_site.py`: one group. Its session fixture builds the docs site once (into `_docs/`, executing every
  notebook there, with `_docs/src` as the working folder), and every page test reads that build. (Split over two
  workers, each worker's session would build the site, both into `_docs/` at once.) The build skips the notebooks'
  `nbdev_export()` cells, so it never rewrites `mie_lm/` while other tests read it.
- `tests/test_wheel.py`: one group. Its module fixture builds the wheel from the source tree (`build/`, `*.egg-info`).
- `tests/test_notebooks.py`: one group per notebook. `test_notebook[X]` and `test_visible_cells_run_alone[X]` both
  execute `nbs/X.ipynb` with `nbs/` as the working folder, and a notebook may write a fixed run folder there
  (`index` trains into `nbs/runs/quickstart`, under the run lock: a second run at the same time is refused).
- Every other module is a group of its own, so its module-scoped fixtures (tokenizers, trained runs) are built once.

Each test also carries its group as an `xdist_group` mark. xdist's own loadgroup scheduler reads those marks through a
`@group` suffix it writes into the node ids, which no longer takes effect with pytest 9.2's structured node ids
(pytest-xdist issue #1386: every test becomes its own unit, silently). So under `--dist loadgroup` the scheduler made
here takes each test's group from its node id: the same groups, whichever pytest.

xdist hands out the groups with the most tests first; among groups of equal size, collection order decides. Under xdist
the items are reordered so that the long units leave early and short ones fill the end: the docs site (the longest,
~5 min), the wheel, the other modules, then the notebooks from the last to the first (the later ones train models and
take longest; the first ones take seconds). A plain `pytest` keeps file order.

Each worker, and what it starts (`nbdev_test`, the docs build's kernels), gets its share of the cores as PyTorch's
default thread count (`OMP_NUM_THREADS`, unless already set), so two workers on two cores do not run four spinning
OpenMP threads (`nbdev_test` of `04a_explorers` beside one other busy process: 20.7 s with one thread, 24.6 s with two).
Code that sets its thread count itself (the Trainer's thread choice, the tests' `torch.set_num_threads(1)`) still does.

Each worker also gets its own `torch.compile` cache folder (`TORCHINDUCTOR_CACHE_DIR`, unless already set). Within a worker
compilations run one after another; across workers they would share Inductor's on-disk cache and its file locks, and a
docs build once spent 652 s waiting in a compile of the generation notebook while the other worker compiled too.
"""
from __future__ import annotations

import os
import re

import pytest

# Modules whose tests form one group, under a fixed name (every other module: one group, named after the module).
SHARED = {"test_docs_site": "docs-site", "test_wheel": "wheel"}
FIRST = ["docs-site", "wheel"]  # sent to the workers first under xdist
NODEID = re.compile(r"(?:.*/)?(?P<module>\w+)\.py::(?P<test>[^@]*?)(?:\[(?P<param>[^\]]*)\])?(?:@.*)?$")


def group_of(nodeid: str) -> str:
    "The group of the test with this node id (`tests/test_notebooks.py::test_notebook[05_training]` -> `nbs-05_training`)."
    m = NODEID.match(nodeid)
    if not m: return nodeid  # not a test function of a module: a unit of its own
    if m["module"] == "test_notebooks": return f"nbs-{m['param']}"
    return SHARED.get(m["module"], m["module"])


def order_key(group: str, first_seen: dict[str, int]) -> tuple:
    if group in FIRST: return (0, FIRST.index(group))
    if group.startswith("nbs-"): return (2, -first_seen[group])  # later notebooks first, the short early ones last
    return (1, first_seen[group])


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "xdist_group(name): run on the same pytest-xdist worker as the group's other tests")
    if hasattr(config, "workerinput"):  # an xdist worker: share the cores with the other workers
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
        os.environ.setdefault("OMP_NUM_THREADS", str(max(1, cores // int(config.workerinput["workercount"]))))
        import tempfile
        worker = config.workerinput["workerid"]
        os.environ.setdefault("TORCHINDUCTOR_CACHE_DIR", os.path.join(tempfile.gettempdir(), f"mie_lm_inductor_{worker}"))


@pytest.hookimpl(tryfirst=True)  # before xdist's own hook, which reads the marks
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    groups = {}
    for item in items:
        groups[item] = group_of(item.nodeid)
        item.add_marker(pytest.mark.xdist_group(groups[item]))
    if not hasattr(config, "workerinput"): return  # not an xdist worker: keep the usual order
    first_seen = {}
    for item in items: first_seen.setdefault(groups[item], len(first_seen))
    items.sort(key=lambda it: order_key(groups[it], first_seen))  # stable: tests keep their order within a group


@pytest.hookimpl(optionalhook=True)  # a hook of pytest-xdist: unused without it
def pytest_xdist_make_scheduler(config: pytest.Config, log):
    "Under `--dist loadgroup`: xdist's loadgroup scheduler, with each test's group read from its node id."
    if config.getvalue("dist") != "loadgroup": return None  # xdist's own choice
    from xdist.scheduler import LoadGroupScheduling

    class NodeIdGroups(LoadGroupScheduling):
        def _split_scope(self, nodeid: str) -> str:
            return group_of(nodeid)

    return NodeIdGroups(config, log)

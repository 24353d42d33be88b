"""The generated files agree with their sources: notebooks -> package, notebooks are clean, index -> README.

Checks run on a copy of the project, so a failing check never rewrites your working tree.
"""
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


def project_copy(tmp_path: Path) -> Path:
    dest = tmp_path / "proj"
    dest.mkdir()
    for f in ("settings.ini", "setup.py", "README.md"): shutil.copy(ROOT / f, dest / f)
    shutil.copytree(ROOT / "nbs", dest / "nbs", ignore=shutil.ignore_patterns(".ipynb_checkpoints", "runs"))  # not nbs/runs/: notebooks write runs there
    shutil.copytree(ROOT / "mie_lm", dest / "mie_lm", ignore=shutil.ignore_patterns("__pycache__"))
    return dest


def snapshot(folder: Path, pattern: str) -> dict:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.glob(pattern))}


def changed(before: dict, after: dict) -> list:
    return sorted(k for k in before.keys() | after.keys() if before.get(k) != after.get(k))


def test_nbdev_export_changes_nothing(tmp_path):
    proj = project_copy(tmp_path)
    before = snapshot(proj / "mie_lm", "*.py")
    subprocess.run([str(BIN / "nbdev_export")], cwd=proj, check=True, capture_output=True)
    diff = changed(before, snapshot(proj / "mie_lm", "*.py"))
    assert not diff, f"mie_lm/ is out of sync with nbs/ (run nbdev_export and commit): {diff}"


def test_nbdev_clean_changes_nothing(tmp_path):
    proj = project_copy(tmp_path)
    before = snapshot(proj / "nbs", "*.ipynb")
    subprocess.run([str(BIN / "nbdev_clean")], cwd=proj, check=True, capture_output=True)
    diff = changed(before, snapshot(proj / "nbs", "*.ipynb"))
    assert not diff, f"notebooks are not clean (run nbdev_clean and commit): {diff}"


def test_readme_is_current():
    res = subprocess.run([sys.executable, str(ROOT / "tools" / "make_readme.py"), "--check"], capture_output=True, text=True)
    assert res.returncode == 0, res.stderr

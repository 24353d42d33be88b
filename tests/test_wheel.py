"""Installed-package check: build the wheel, install it into a fresh virtual environment, and run the
`mie_lm` command from there (not from the source tree): `--help`, a tiny `train`, then `generate`.

The fresh environment gets the tested PyTorch CPU build first (`torch==2.13.0`, as the Makefile
does) so that resolving `torch>=2.2` never pulls a multi-GB CUDA build; everything else comes from
the wheel's own requirements.
"""
import os
import subprocess
import sys
import venv
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
TORCH_PIN = "torch==2.13.0"


def run(cmd, **kw):
    res = subprocess.run([str(c) for c in cmd], capture_output=True, text=True, **kw)
    assert res.returncode == 0, f"{' '.join(map(str, cmd))} failed ({res.returncode}):\n{res.stdout[-3000:]}\n{res.stderr[-3000:]}"
    return res.stdout


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("wheel")
    run([sys.executable, "-m", "build", "--wheel", "--no-isolation", "--outdir", tmp / "dist", ROOT], cwd=tmp)
    wheel = next((tmp / "dist").glob("mie_lm-*.whl"))
    venv.create(tmp / "venv", with_pip=True)
    py = tmp / "venv" / "bin" / "python"
    run([py, "-m", "pip", "install", "-q", TORCH_PIN])
    run([py, "-m", "pip", "install", "-q", wheel])
    return tmp, py


def test_wheel_installs_a_consistent_environment(installed):
    tmp, py = installed
    run([py, "-m", "pip", "check"])
    where = run([py, "-c", "import mie_lm, sys; print(mie_lm.__file__)"], cwd=tmp).strip()
    assert where.startswith(str(tmp / "venv")), f"mie_lm imported from {where}, not from the fresh environment"


def test_cli_from_the_wheel(installed):
    tmp, py = installed
    cli = py.parent / "mie_lm"
    env = {**os.environ, "PYTHONPATH": ""}
    assert "train" in run([cli, "--help"], cwd=tmp, env=env)
    for sub in ("train", "generate", "evaluate", "export", "compare", "sweep", "demo"):
        assert "--help" in run([cli, sub, "--help"], cwd=tmp, env=env)
    assert run([cli, "--version"], cwd=tmp, env=env).startswith("mie_lm ")
    run([cli, "train", "--out", tmp / "run", "--vocab-size", "300", "--max-steps", "3", "--warmup-steps", "1",
         "--batch-size", "2", "--eval-every", "0", "--eval-batches", "1", "--no-progress"], cwd=tmp, env=env)
    out = run([cli, "generate", "--checkpoint", tmp / "run", "--prompt", "The", "--max-new-tokens", "5"], cwd=tmp, env=env)
    assert out.startswith("The")
    run([cli, "export", "--checkpoint", tmp / "run", "--hf", tmp / "hf"], cwd=tmp, env=env)  # no transformers needed to write it
    assert "last_valid_bpb" in run([cli, "compare", tmp / "run", "--plot", tmp / "c.png"], cwd=tmp, env=env)
    bad = subprocess.run([str(cli), "generate", "--checkpoint", str(tmp / "missing"), "--prompt", "x"], capture_output=True, text=True, cwd=tmp, env=env)
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1 and "no checkpoint at" in bad.stderr

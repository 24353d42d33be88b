"""The `mie_lm` command as a user runs it: a real Ctrl-C during training, resume, and one-line errors."""
import json
import signal
import subprocess
import sys
import time
from pathlib import Path

CLI = Path(sys.executable).parent / "mie_lm"
TRAIN = ["train", "--vocab-size", "300", "--batch-size", "2", "--warmup-steps", "1", "--eval-every", "0",
         "--eval-batches", "1", "--log-every", "1", "--no-progress", "--n-layer", "1", "--device", "cpu"]


def test_ctrl_c_leaves_a_resumable_checkpoint(tmp_path):
    out = tmp_path / "run"
    proc = subprocess.Popen([str(CLI), *TRAIN, "--out", str(out), "--max-steps", "100000"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    metrics, deadline = out / "metrics.jsonl", time.time() + 120
    while not (metrics.exists() and metrics.read_text().count("\n") >= 3):
        assert proc.poll() is None and time.time() < deadline, proc.communicate()
        time.sleep(0.2)
    proc.send_signal(signal.SIGINT)
    stdout, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 130, stderr  # the shell's convention for an interrupt
    assert "interrupted by Ctrl-C" in stdout and "Traceback" not in stderr
    assert f"mie_lm {' '.join(TRAIN)} --out {out} --max-steps 100000 --resume" in stdout  # the command that continues it
    state = json.loads((out / "run.json").read_text())
    steps = state["result"]["steps"]
    assert (out / "checkpoints" / "latest").read_text().strip().endswith(f"{steps:06d}")
    # the same command with --resume picks up at that step; a time budget (which may change) ends it
    budget = state["result"]["elapsed"] + 2
    res = subprocess.run([str(CLI), *TRAIN, "--out", str(out), "--max-steps", "100000", "--max-time", str(budget), "--resume"],
                         capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr
    assert json.loads((out / "run.json").read_text())["result"]["steps"] > steps


def test_errors_are_one_line(tmp_path):
    cases = [(["train", "--out", str(tmp_path), "--dataset", "nope"], "invalid choice: 'nope'"),
             (["train", "--out", str(tmp_path), "--dataset", "text_files"], "needs --data-path"),
             (["train", "--out", "/proc/mie_lm_cannot_write_here"], "not writable"),
             (["evaluate", "--checkpoint", str(tmp_path / "none")], "no checkpoint at"),
             (["generate", "--checkpoint", str(tmp_path), "--prompt", "x", "--temperature", "-1"], "")]
    for argv, msg in cases:
        res = subprocess.run([str(CLI), *argv], capture_output=True, text=True, timeout=120)
        assert res.returncode == 2, (argv, res.stderr)
        assert res.stderr.count("\n") == 1 and msg in res.stderr and "Traceback" not in res.stderr, (argv, res.stderr)

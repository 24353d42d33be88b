"""Faults around run folders and checkpoints (`mie_lm.training`): names read from the folder, a failure injected at
every point of the save sequence, SIGKILL during saves, stale temporary folders, a full disk, metrics after a resume,
the run-folder lock between two processes, and fingerprints."""
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
import torch

import mie_lm.training as training
from mie_lm.data import PackedDataset
from mie_lm.model import GPT, GPTConfig
from mie_lm.training import (CHECKPOINTS, LOCK_FILE, METRICS_FILE, STATE_FILE, Callback, RunFolderInUse, StopKind, Trainer,
                             TrainingConfig, run_lock, save_checkpoint)

torch.set_num_threads(1)
TOKENS = (np.arange(6000) * 7919 % 251).astype(np.int64)


def trainer(out, callbacks=(), fingerprints=None, **kw):
    torch.manual_seed(0)
    base = dict(max_steps=4, warmup_steps=1, batch_size=4, log_every=1, precision="fp32", device="cpu", progress=False, threads=1,
                checkpoint_every=2, out_dir=str(out))
    return Trainer(GPT(GPTConfig.from_preset("tiny", vocab_size=256, block_size=16)), TrainingConfig(**{**base, **kw}),
                   PackedDataset(TOKENS, 16, n_samples=40), callbacks=list(callbacks), fingerprints=fingerprints)


def latest(out) -> str: return (Path(out) / CHECKPOINTS / "latest").read_text()
def temps(out) -> list: return sorted(p.name for p in (Path(out) / CHECKPOINTS).glob(".*tmp*"))
def steps(out) -> list: return [json.loads(l)["step"] for l in (Path(out) / METRICS_FILE).read_text().splitlines()]


def assert_resumable(out, step):
    "`latest` names a complete checkpoint of `step`, which a fresh trainer resumes and trains to the end."
    assert latest(out) == f"step-{step:06d}" and (Path(out) / CHECKPOINTS / latest(out) / STATE_FILE).is_file()
    t = trainer(out).resume()
    assert t.step == step and t.fit()["steps"] == 4


# ---- names read from the run folder ------------------------------------------------------------------

@pytest.mark.parametrize("bad", ["", "   ", "/", "..", "../../victim", "step-000002/../../victim", "step-2", "latest"])
def test_latest_must_be_a_checkpoint_name(tmp_path, bad):
    out, victim = tmp_path / "run", tmp_path / "victim"
    victim.mkdir(); (victim / "keep").write_text("x")
    trainer(out).fit()
    kept = sorted(p.name for p in (out / CHECKPOINTS).iterdir())
    (out / CHECKPOINTS / "latest").write_text(bad)
    with pytest.raises(ValueError, match=r"checkpoints/latest should hold a checkpoint name like 'step-000100'") as e:
        trainer(out).resume()
    assert "\n" not in str(e.value)
    with pytest.raises(ValueError, match="should hold a checkpoint name"):
        trainer(out, max_steps=6).fit()  # the first save reads latest before writing or deleting anything
    assert (victim / "keep").is_file() and sorted(p.name for p in (out / CHECKPOINTS).iterdir()) == kept


# ---- a failure at each point of the save sequence ----------------------------------------------------

class Boom(OSError): pass


def fail_on(monkeypatch, target, attr, when=lambda *a, **k: True):
    "Make `target.attr` raise `Boom` when `when(*args)` is true on the second matching call (the save of step 4)."
    real, calls = getattr(target, attr), []
    def wrapper(*a, **k):
        if when(*a, **k):
            calls.append(1)
            if len(calls) == 2: raise Boom(28, "No space left on device")
        return real(*a, **k)
    monkeypatch.setattr(target, attr, wrapper)


def is_state(p, *a, **k): return Path(p).name == STATE_FILE
def is_tmp_move(src, dst): return Path(src).name.startswith(".tmp-step-")
def is_pointer(src, dst): return Path(dst).name == "latest"


@pytest.mark.parametrize("point", ["save_model", "save_file", "state", "move", "fsync", "pointer"])
def test_failure_before_the_commit_keeps_the_previous_checkpoint(tmp_path, monkeypatch, point):
    import safetensors.torch as st
    {"save_model": lambda: fail_on(monkeypatch, st, "save_model"),
     "save_file": lambda: fail_on(monkeypatch, st, "save_file", lambda tensors, path, *a, **k: Path(path).name == "optimizer.safetensors"),
     "state": lambda: fail_on(monkeypatch, Path, "write_text", lambda self, *a, **k: is_state(self)),
     "move": lambda: fail_on(monkeypatch, training.os, "replace", is_tmp_move),
     "fsync": lambda: fail_on(monkeypatch, training.os, "fsync"),
     "pointer": lambda: fail_on(monkeypatch, training.os, "replace", is_pointer)}[point]()
    with pytest.raises(OSError, match=r"could not save checkpoint .*step-000004: .*No space left on device; latest still names step-000002"):
        trainer(tmp_path).fit()
    monkeypatch.undo()
    assert temps(tmp_path) == []  # the failed save cleaned up after itself
    if point == "pointer": assert (tmp_path / CHECKPOINTS / "step-000004" / STATE_FILE).is_file()  # complete, just not committed
    assert_resumable(tmp_path, 2)


def test_failure_after_the_commit_keeps_the_new_checkpoint(tmp_path, monkeypatch):
    real = training.shutil.rmtree
    def crash_on_old(path, *a, **k):
        if Path(path).name == "step-000002": raise KeyboardInterrupt  # killed while deleting the old checkpoint
        return real(path, *a, **k)
    monkeypatch.setattr(training.shutil, "rmtree", crash_on_old)
    with pytest.raises(KeyboardInterrupt): trainer(tmp_path).fit()
    monkeypatch.undo()
    assert latest(tmp_path) == "step-000004" and (tmp_path / CHECKPOINTS / "step-000002").is_dir()  # the old one merely lingers
    t = trainer(tmp_path).resume()
    assert t.step == 4


@pytest.mark.parametrize("point", ["exchange", "pointer"])
def test_resaving_a_step_never_leaves_latest_dangling(tmp_path, monkeypatch, point):
    t = trainer(tmp_path); t.fit()
    assert latest(tmp_path) == "step-000004"
    if point == "exchange": monkeypatch.setattr(training, "_exchange", lambda a, b: (_ for _ in ()).throw(Boom(5, "I/O error")))
    else: fail_on(monkeypatch, training.os, "replace", is_pointer, )
    if point == "pointer": save_checkpoint(t)  # first re-save succeeds (first matching call), the second fails at the pointer
    with pytest.raises(OSError, match="could not save checkpoint"): save_checkpoint(t)
    monkeypatch.undo()
    assert temps(tmp_path) == [] and latest(tmp_path) == "step-000004"
    assert trainer(tmp_path).resume().step == 4


def test_resave_swaps_the_folder_contents(tmp_path):
    t = trainer(tmp_path); t.fit()
    folder = tmp_path / CHECKPOINTS / "step-000004"
    before = json.loads((folder / STATE_FILE).read_text())["elapsed"]
    t.elapsed += 100.0
    assert save_checkpoint(t) == folder and latest(tmp_path) == "step-000004"
    assert json.loads((folder / STATE_FILE).read_text())["elapsed"] == pytest.approx(before + 100.0)
    assert sorted(p.name for p in (tmp_path / CHECKPOINTS).iterdir()) == ["latest", "step-000004"]


def test_full_disk_is_one_line_and_leaves_nothing(tmp_path, monkeypatch):
    import safetensors.torch as st
    def full(*a, **k): raise Exception("Error while serializing: IoError(Os { code: 28, kind: StorageFull, message: \"No space left on device\" })")
    t = trainer(tmp_path); t.fit()
    monkeypatch.setattr(st, "save_file", full)
    t.step += 1
    for _ in range(3):  # retries do not pile up temporary folders
        with pytest.raises(OSError) as e: save_checkpoint(t)
        assert "\n" not in str(e.value) and str(tmp_path / CHECKPOINTS / "step-000005") in str(e.value) and "No space" in str(e.value)
    assert temps(tmp_path) == [] and latest(tmp_path) == "step-000004"


def test_stale_temporary_folders_are_removed_at_start(tmp_path):
    trainer(tmp_path).fit()
    root = tmp_path / CHECKPOINTS
    (root / ".tmp-step-000003-99999").mkdir(); (root / ".tmp-step-000003-99999" / "model.safetensors").write_text("partial")
    (root / ".latest.tmp-99999").write_text("step-000003")
    trainer(tmp_path, max_steps=6).resume().fit()
    assert temps(tmp_path) == [] and latest(tmp_path) == "step-000006"


# ---- SIGKILL during saves ------------------------------------------------------------------------------

KILL_SCRIPT = textwrap.dedent("""
    import sys, numpy as np, torch
    torch.set_num_threads(1)
    from mie_lm.data import PackedDataset
    from mie_lm.model import GPT, GPTConfig
    from mie_lm.training import Trainer, TrainingConfig
    tokens = (np.arange(6000) * 7919 % 251).astype(np.int64)
    torch.manual_seed(0)
    cfg = TrainingConfig(max_steps=100000, warmup_steps=1, batch_size=4, precision="fp32", device="cpu", progress=False, threads=1,
                         checkpoint_every=1, out_dir=sys.argv[1])
    t = Trainer(GPT(GPTConfig.from_preset("tiny", vocab_size=256, block_size=16)), cfg, PackedDataset(tokens, 16, n_samples=40))
    if len(sys.argv) > 2: t.resume()
    print("ready", flush=True)
    t.fit()
""")


def test_sigkill_during_saves_always_leaves_a_resumable_checkpoint(tmp_path):
    script, out = tmp_path / "train.py", tmp_path / "run"
    script.write_text(KILL_SCRIPT)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    for i, delay in enumerate([0.35, 0.5, 0.2]):
        p = subprocess.Popen([sys.executable, str(script), str(out), *(["resume"] if i else [])], stdout=subprocess.PIPE, env=env, text=True)
        assert p.stdout.readline().strip() == "ready"
        first = latest(out) if i else None
        for _ in range(600):  # wait for a new checkpoint (the machine may be busy), then kill during later saves
            if (out / CHECKPOINTS / "latest").is_file() and latest(out) != first: break
            time.sleep(0.1)
        time.sleep(delay)  # a checkpoint every step: the kill lands inside or between saves
        p.send_signal(signal.SIGKILL); p.wait()
        name = latest(out)
        assert (out / CHECKPOINTS / name / STATE_FILE).is_file(), name
    cfg = dict(max_steps=100000, warmup_steps=1, checkpoint_every=1, out_dir=str(out))
    torch.manual_seed(0)
    t = Trainer(GPT(GPTConfig.from_preset("tiny", vocab_size=256, block_size=16)),
                TrainingConfig(batch_size=4, precision="fp32", device="cpu", progress=False, threads=1, **cfg),
                PackedDataset(TOKENS, 16, n_samples=40)).resume()
    assert t.step == int(latest(out)[5:])
    assert steps(out)[-1] <= t.step + 1  # at most the step in flight was logged after the checkpoint


# ---- metrics after a resume, the lock, fingerprints ------------------------------------------------------

class Crash(Callback):
    "Die after step `n` (once it is logged) without the end-of-run save, as a killed process would."
    order = 50
    def __init__(self, n): self.n = n
    def on_step_end(self, trainer, metrics):
        if trainer.step == self.n: raise KeyboardInterrupt


def test_resume_truncates_metrics_to_the_checkpoint(tmp_path):
    with pytest.raises(KeyboardInterrupt): trainer(tmp_path, [Crash(3)]).fit()
    assert steps(tmp_path) == [1, 2, 3] and latest(tmp_path) == "step-000002"
    trainer(tmp_path).resume().fit()
    assert steps(tmp_path) == [1, 2, 3, 4]


LOCK_SCRIPT = textwrap.dedent("""
    import sys, time
    from mie_lm.training import run_lock
    with run_lock(sys.argv[1]):
        print("locked", flush=True); time.sleep(60)
""")


def test_second_writer_is_refused(tmp_path):
    holder = subprocess.Popen([sys.executable, "-c", LOCK_SCRIPT, str(tmp_path)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(RunFolderInUse, match=rf"run folder '{tmp_path}' is in use \(pid {holder.pid}\)"):
            trainer(tmp_path).fit()
        with pytest.raises(RunFolderInUse, match=f"pid {holder.pid}"):
            trainer(tmp_path).resume()
        assert not (tmp_path / METRICS_FILE).exists() and not (tmp_path / CHECKPOINTS).exists()  # nothing written
    finally:
        holder.kill(); holder.wait()
    with run_lock(tmp_path):  # re-entrant: the trainer runs inside a lock its caller holds
        assert trainer(tmp_path).fit()["steps"] == 4
    assert (tmp_path / LOCK_FILE).is_file()


def test_fingerprints_are_checked_on_resume(tmp_path):
    trainer(tmp_path, fingerprints={"tokenizer.json": "a" * 64, "config": "b" * 64}).fit()
    state = json.loads((tmp_path / CHECKPOINTS / latest(tmp_path) / STATE_FILE).read_text())
    assert state["fingerprints"] == {"tokenizer.json": "a" * 64, "config": "b" * 64}
    with pytest.raises(ValueError, match=r"fingerprint 'tokenizer.json' differs \(checkpoint aaaaaaaaaaaa\.\.\., now cccccccccccc\.\.\.\)"):
        trainer(tmp_path, fingerprints={"tokenizer.json": "c" * 64, "config": "b" * 64}).resume()
    assert trainer(tmp_path, fingerprints={"config": "b" * 64}).resume().step == 4  # keys the caller does not give are not checked


def test_corrupt_checkpoint_is_one_line(tmp_path):
    trainer(tmp_path).fit()
    folder = tmp_path / CHECKPOINTS / latest(tmp_path)
    (folder / "optimizer.safetensors").write_bytes(b"not a safetensors file")
    with pytest.raises(ValueError, match=r"cannot resume from .*step-000004: a file is missing or corrupt") as e:
        trainer(tmp_path).resume()
    assert "\n" not in str(e.value)
    (folder / STATE_FILE).write_text("{not json")
    with pytest.raises(ValueError, match="cannot resume from"):
        trainer(tmp_path).resume()


def test_a_really_full_disk(tmp_path):
    "On a 2 MB tmpfs (needs root; skipped otherwise) the second checkpoint does not fit beside the first."
    disk = tmp_path / "disk"; disk.mkdir()
    if os.geteuid() != 0 or subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2M", "tmpfs", str(disk)], capture_output=True).returncode:
        pytest.skip("mounting a small tmpfs needs root")
    try:
        t = trainer(disk / "run", max_steps=6)
        with pytest.raises(OSError) as e: t.fit()
        msg = str(e.value)
        assert "\n" not in msg and "could not save checkpoint" in msg and str(disk / "run" / CHECKPOINTS) in msg, msg
        assert temps(disk / "run") == [] and latest(disk / "run") == "step-000002"
        assert (disk / "run" / CHECKPOINTS / "step-000002" / STATE_FILE).is_file()
    finally:
        subprocess.run(["umount", str(disk)], capture_output=True)

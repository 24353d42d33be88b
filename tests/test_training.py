"""Tests of `mie_lm.training`: bad inputs, schedules, exact resume, DDP equivalence under torchrun, early stopping, divergence."""
import json
import math
import os
import subprocess
import sys
import textwrap
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pytest
import torch

from mie_lm.data import LMDataset, PackedDataset
from mie_lm.model import GPT, GPTConfig
from mie_lm.tokenizer import BPETokenizer
from mie_lm.training import (CHECKPOINTS, METRICS_FILE, Callback, LivePlot, Trainer, TrainingConfig, init_distributed, lr_at,
                             param_groups, plot_history, plot_lr_schedule, token_byte_lengths)

torch.set_num_threads(1)
BIN = Path(sys.executable).parent
TOKENS = (np.arange(6000) * 7919 % 251).astype(np.int64)  # deterministic pseudo-text over 251 ids


def tiny(**kw):
    torch.manual_seed(0)
    return GPT(GPTConfig.from_preset("tiny", vocab_size=256, block_size=16, **kw))


def cfg(**kw):
    base = dict(max_steps=8, warmup_steps=2, batch_size=4, log_every=1, precision="fp32", device="cpu", progress=False, threads=1)
    return TrainingConfig(**{**base, **kw})


def ds(n=None, start=0):
    return PackedDataset(TOKENS[start:], 16, n_samples=n)


class StopAt(Callback):
    def __init__(self, n): self.n = n
    def on_step_end(self, trainer, metrics):
        if trainer.step == self.n: trainer.stop("test stop")


# ---- bad input --------------------------------------------------------------------------------------

@pytest.mark.parametrize("kw, msg", [(dict(lr=0), "lr must be a number > 0, got 0"), (dict(lr=-1.0), "got -1.0"),
                                     (dict(max_steps=10, warmup_steps=10), "warmup_steps=10 is not shorter than training"),
                                     (dict(schedule="exp"), "schedule must be one of"), (dict(threads=0), "threads must be an int >= 1 or None"),
                                     (dict(batch_size=0), "batch_size must be an int >= 1, got 0"),
                                     (dict(precision="fp16"), "precision must be one of")])
def test_bad_config(kw, msg):
    with pytest.raises(ValueError, match=msg.replace("(", r"\(").replace(")", r"\)")):
        TrainingConfig(**kw)


def test_batch_larger_than_dataset():
    with pytest.raises(ValueError, match=r"batch_size=64 x 1 process\(es\) = 64 sequences, larger than the training set \(10 sequences\)"):
        Trainer(tiny(), cfg(batch_size=64), ds(10))


def test_resume_from_different_config(tmp_path):
    t = Trainer(tiny(), cfg(out_dir=str(tmp_path), max_steps=4), ds(40)); t.fit()
    with pytest.raises(ValueError, match=r"different run \(batch_size: 4 -> 2\)"):
        Trainer(tiny(), cfg(out_dir=str(tmp_path), max_steps=4, batch_size=2), ds(40)).resume()
    with pytest.raises(ValueError, match=r"model.n_layer: 2 -> 1"):
        Trainer(tiny(n_layer=1), cfg(out_dir=str(tmp_path), max_steps=4), ds(40)).resume()
    Trainer(tiny(), cfg(out_dir=str(tmp_path), max_steps=4, max_time=100.0), ds(40)).resume()  # a budget field may change
    with pytest.raises(FileNotFoundError, match="no checkpoint"):
        Trainer(tiny(), cfg(), ds(40)).resume(tmp_path / "missing")


# ---- schedule, groups, bytes ------------------------------------------------------------------------

def test_schedules():
    lin, cos = cfg(max_steps=100, warmup_steps=10, lr=1.0), cfg(max_steps=100, warmup_steps=10, lr=1.0, schedule="cosine", min_lr=0.1)
    assert [lr_at(lin, s) for s in (0, 9)] == [0.1, 1.0]
    assert lr_at(lin, 55) == pytest.approx(0.5) and lr_at(cos, 55) == pytest.approx(0.55)
    assert lr_at(cos, 99) == pytest.approx(0.1, abs=1e-3) and lr_at(lin, 100) == 0.0
    assert lr_at(lin, 50, progress=0.9) == pytest.approx(0.1)
    ax = plot_lr_schedule(lin, cos)
    assert len(ax.lines) == 2


def test_param_groups_cover_every_parameter_once():
    m = tiny()
    decay, no_decay = param_groups(m, 0.1)
    assert len(decay["params"]) + len(no_decay["params"]) == len(list(m.parameters()))
    assert all(p.ndim == 2 for p in decay["params"]) and m.transformer.wte.weight in no_decay["params"]


def test_token_byte_lengths_are_exact():
    from mie_lm.corpora import python_docs
    tok = BPETokenizer.train(python_docs().train[:300], vocab_size=300)
    tb = token_byte_lengths(tok, 320)
    for text in ["héllo wörld ✓", "def f(x):\n    return x"]:
        assert int(tb[tok.encode(text, add_bos=True, add_eos=True)].sum()) == len(text.encode())


def test_init_distributed_single_process():
    assert init_distributed() == (0, 1, 0)


# ---- training behaviour -----------------------------------------------------------------------------

def test_grad_accumulation_equals_big_batch():
    a = Trainer(tiny(), cfg(batch_size=4), ds(40)); a.fit()
    b = Trainer(tiny(), cfg(batch_size=2, grad_accum_steps=2), ds(40)); b.fit()
    # the same 4 windows per step only if the sampler orders match: compare the loss of identical global batches
    wa, wb = (torch.cat([p.flatten() for p in t.model.parameters()]) for t in (a, b))
    assert a.history[0]["loss"] == pytest.approx(b.history[0]["loss"], abs=1e-6)
    assert a.tokens_seen == b.tokens_seen == 8 * 4 * 16
    assert torch.allclose(wa, wb, atol=1e-5)


def test_resume_is_exact(tmp_path):
    kw = dict(max_steps=12, eval_every=3, restore_best=False)
    mk = lambda d, cbs=(): Trainer(GPT(GPTConfig.from_preset("tiny", vocab_size=256, block_size=16, dropout=0.1)),
                                   cfg(out_dir=str(d), **kw), PackedDataset(TOKENS, 16, mode="random", n_samples=20), ds(8), callbacks=list(cbs))
    torch.manual_seed(0); mk(tmp_path / "a").fit()
    torch.manual_seed(0); mk(tmp_path / "b", [StopAt(6)]).fit()
    torch.manual_seed(1); t = mk(tmp_path / "b").resume(); r = t.fit()
    assert r["stop_reason"] == "max_steps=12 reached" and t.epoch >= 2  # crossed epoch boundaries
    read = lambda d: [json.loads(l) for l in (d / METRICS_FILE).read_text().splitlines()]
    a, b = read(tmp_path / "a"), read(tmp_path / "b")
    assert [h["step"] for h in a] == [h["step"] for h in b]
    for x, y in zip(a, b):
        for k in ("loss", "grad_norm", "lr", "valid_loss", "tokens"):
            if k in x: assert x[k] == pytest.approx(y[k], abs=1e-6), (x, y)
    files = sorted(p.name for p in (tmp_path / "b" / CHECKPOINTS / "step-000012").iterdir())
    assert files == ["model.safetensors", "optimizer.safetensors", "trainer_state.json"]  # no pickle anywhere


def test_early_stopping_restores_best():
    t = Trainer(tiny(), cfg(max_steps=300, lr=1e-2, batch_size=4, eval_every=5, patience=2, min_delta=0.0, weight_decay=0.0),
                ds(4), ds(8, start=3000))
    r = t.fit()
    assert r["stop_reason"].startswith("early stopping") and r["restored_best"]
    assert r["steps"] == r["best_step"] + 10
    assert t.evaluate()["valid_loss"] == pytest.approx(r["best_valid_loss"], abs=1e-5)


def test_non_finite_loss_stops_and_keeps_last_checkpoint(tmp_path):
    class Poison(Callback):  # make the weights NaN after step 3, as a diverging run would
        def on_step_end(self, trainer, metrics):
            if trainer.step == 3:
                with torch.no_grad(): trainer.model.transformer.wte.weight.fill_(float("nan"))
    t = Trainer(tiny(), cfg(out_dir=str(tmp_path), checkpoint_every=2), ds(40), callbacks=[Poison()])
    r = t.fit()
    assert r["stop_reason"].startswith("non-finite loss") and "step-000002" in r["stop_reason"] and r["steps"] == 3
    assert (tmp_path / CHECKPOINTS / "latest").read_text() == "step-000002"
    ok = Trainer(tiny(), cfg(out_dir=str(tmp_path), checkpoint_every=2), ds(40)).resume()  # the last good checkpoint loads
    assert ok.step == 2 and all(torch.isfinite(p).all() for p in ok.model.parameters())


def test_max_time_bf16_and_feedback(tmp_path, monkeypatch):
    shown = []
    class Handle:
        def update(self, fig): shown.append(fig)
    monkeypatch.setattr("IPython.display.display", lambda fig, display_id=None: Handle())
    t = Trainer(tiny(), cfg(max_steps=None, max_time=1.0, precision="bf16", eval_every=4, out_dir=str(tmp_path)), ds(40), ds(8),
                token_bytes=torch.ones(256, dtype=torch.long), callbacks=[LivePlot(every=2, floor_bpb=1.0)])
    r = t.fit()
    assert r["stop_reason"].startswith("max_time=1 s reached") and t.amp_dtype == torch.bfloat16 and shown
    assert math.isfinite(r["last_valid"]["valid_bpb"])
    axes = plot_history(t.history, floor_bpb=1.0)
    assert len(axes[1].lines) == 2


# ---- data parallel under torchrun -------------------------------------------------------------------

DDP_SCRIPT = textwrap.dedent("""
    import sys, numpy as np, torch
    torch.set_num_threads(1)
    from safetensors.torch import save_file
    from mie_lm.data import PackedDataset
    from mie_lm.model import GPT, GPTConfig
    from mie_lm.training import Trainer, TrainingConfig
    def run(batch_size, out):
        tokens = (np.arange(6000) * 7919 % 251).astype(np.int64)
        torch.manual_seed(0)
        model = GPT(GPTConfig.from_preset("tiny", vocab_size=256, block_size=16))
        cfg = TrainingConfig(max_steps=6, warmup_steps=2, batch_size=batch_size, eval_every=3, log_every=1, precision="fp32",
                             device="cpu", progress=False, grad_clip=0.5, threads=1)
        t = Trainer(model, cfg, PackedDataset(tokens, 16, n_samples=64), PackedDataset(tokens[:900], 16, n_samples=50))
        r = t.fit()
        if t.is_main:
            save_file({k: v.contiguous() for k, v in model.state_dict().items() if k != "lm_head.weight"}, out + ".safetensors")
            open(out + ".json", "w").write(__import__("json").dumps(t.history))
    if __name__ == "__main__": run(int(sys.argv[1]), sys.argv[2])
""")


def test_ddp_matches_single_process(tmp_path):
    from safetensors.torch import load_file
    script = tmp_path / "ddp_train.py"; script.write_text(DDP_SCRIPT)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}
    subprocess.run([sys.executable, str(script), "4", str(tmp_path / "single")], check=True, env=env, timeout=120)
    res = subprocess.run([str(BIN / "torchrun"), "--standalone", "--nproc_per_node=2", str(script), "2", str(tmp_path / "ddp")],
                         env=env, capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr[-3000:]
    one, two = (json.loads((tmp_path / f"{n}.json").read_text()) for n in ("single", "ddp"))
    assert [h["step"] for h in one] == [h["step"] for h in two]
    for x, y in zip(one, two):
        for k in ("loss", "grad_norm", "valid_loss", "tokens"):
            if k in x: assert x[k] == pytest.approx(y[k], rel=1e-5), (k, x, y)
    w1, w2 = load_file(str(tmp_path / "single.safetensors")), load_file(str(tmp_path / "ddp.safetensors"))
    assert all(torch.allclose(w1[k], w2[k], atol=1e-5) for k in w1)


# ---- one loss, one bits per byte ---------------------------------------------------------------------

def test_trainer_validation_bpb_equals_evaluate_dataset():
    from mie_lm.corpora import synthetic
    from mie_lm.evaluation import evaluate_dataset
    from mie_lm.training import LMScore, bits_per_byte, score_batches
    syn = synthetic()
    tok = BPETokenizer.train(syn.train[:300], vocab_size=300)
    texts = [t[:70] for t in syn.valid[:24]]  # short texts: each fits one window, so both score the same tokens in the same context
    torch.manual_seed(0)
    model = GPT(GPTConfig.from_preset("tiny", vocab_size=tok.vocab_size, block_size=64))
    valid = LMDataset(texts, tok, 64, add_eos=False, progress=False)
    assert valid.lengths.max() <= 65  # nothing truncated
    t = Trainer(model, cfg(batch_size=5), ds(40), valid, token_byte_lengths(tok))
    m = t.evaluate()
    _, rep = evaluate_dataset(model, tok, texts, window=64, batch_size=5, progress=False)
    assert m["valid_bpb"] == pytest.approx(rep.bits_per_byte, abs=1e-3)
    assert m["valid_loss"] == pytest.approx(rep.nll / rep.n_tokens, abs=1e-3)
    s = score_batches(model, torch.utils.data.DataLoader(valid, batch_size=3, collate_fn=lambda b: __import__("mie_lm.data", fromlist=["collate_lm"]).collate_lm(b, tok.pad_id)),
                      token_byte_lengths(tok))
    assert s.n_bytes == sum(len(x.encode()) for x in texts) == rep.n_bytes  # bytes of the scored tokens = bytes of the texts
    assert s.bits_per_byte == pytest.approx(bits_per_byte(s.nll, s.n_bytes)) == pytest.approx(m["valid_bpb"], abs=1e-6)
    assert LMScore(math.log(2) * 8, 4, 4).bits_per_byte == pytest.approx(2.0)


# ---- budgets: warmup default, time-only budget, threads, extension -------------------------------------

def test_warmup_default_scales_with_the_run():
    assert [TrainingConfig(max_steps=n).warmup for n in (1, 30, 100, 5000)] == [0, 3, 10, 100]
    assert TrainingConfig(max_time=10.0).warmup == 100 and TrainingConfig(max_steps=30, warmup_steps=7).warmup == 7
    with pytest.raises(ValueError, match="warmup_steps=100 is not shorter than training"):
        TrainingConfig(max_steps=100, warmup_steps=100)
    TrainingConfig(max_steps=5)  # a short run is fine with the default


def test_time_budget_has_no_step_cap_and_a_clean_progress_bar():
    import warnings
    from tqdm import TqdmWarning
    from mie_lm.training import ProgressBar, StopKind
    assert TrainingConfig(max_time=60.0).step_budget is None and TrainingConfig().step_budget == 1000
    t = Trainer(tiny(), cfg(max_steps=None, max_time=60.0), ds(40))
    t.step = 5000
    assert not t._budget_spent()  # only the time stops it
    with warnings.catch_warnings():
        warnings.simplefilter("error", TqdmWarning)
        t = Trainer(tiny(), cfg(max_steps=None, max_time=1.5, progress=True), ds(40))
        r = t.fit()
    bar = next(cb for cb in t.callbacks if isinstance(cb, ProgressBar)).bar
    assert r["stop_kind"] == StopKind.MAX_TIME and bar.total == 2 and isinstance(bar.n, int) and 0 <= bar.n <= bar.total
    lrs = [h["lr"] for h in t.history]
    assert lrs[-1] < 0.5 * max(lrs)  # the schedule is planned over the time budget
    slow = Trainer(tiny(), cfg(max_steps=None, max_time=10.0, warmup_steps=None, lr=1.0), ds(40))
    slow.step, slow.elapsed = 5, 2.0  # a slow model: 5 steps in 20% of the time
    assert slow.lr_now() == pytest.approx(0.8)  # the default warmup ended at 10% of the time; linear decay at 20%


def test_pick_threads_changes_nothing_but_the_thread_count():
    from mie_lm.training import pick_threads
    t = Trainer(tiny(dropout=0.1), cfg(threads=None), ds(40))
    rng, weights = torch.get_rng_state(), [p.detach().clone() for p in t.model.parameters()]
    n = pick_threads(t)
    assert n in {1, len(os.sched_getaffinity(0))} and torch.get_num_threads() == n
    assert torch.equal(rng, torch.get_rng_state()) and all(torch.equal(a, b) for a, b in zip(weights, t.model.parameters()))
    assert all(p.grad is None for p in t.model.parameters())
    assert pick_threads(Trainer(tiny(), cfg(threads=1), ds(40))) == 1 == torch.get_num_threads()


def test_pick_threads_counts_only_the_cores_the_process_may_use(monkeypatch):
    from mie_lm import training
    monkeypatch.setattr(training.os, "sched_getaffinity", lambda pid: {0})  # as under `taskset -c 0`
    timed = []
    monkeypatch.setattr(training, "_time_pass", lambda *a, **k: timed.append(1) or 1.0)
    assert training.pick_threads(Trainer(tiny(), cfg(threads=None), ds(40))) == torch.get_num_threads()
    assert timed == []  # one usable core: nothing to time, no second thread count tried


def test_extending_a_finished_run_replans_the_schedule(tmp_path):
    Trainer(tiny(), cfg(out_dir=str(tmp_path), max_steps=6, lr=1e-2), ds(40)).fit()
    t = Trainer(tiny(), cfg(out_dir=str(tmp_path), max_steps=10, lr=1e-2), ds(40)).resume()
    r = t.fit()
    assert r["steps"] == 10 and [b["max_steps"] for b in t.budgets] == [6, 10] and t.budgets[1]["from_step"] == 6
    recs = [json.loads(l) for l in (tmp_path / METRICS_FILE).read_text().splitlines()]
    assert [h["step"] for h in recs] == list(range(1, 11))
    assert [h["lr"] for h in recs[6:]] == pytest.approx([1e-2 * (1 - k / 4) for k in range(4)])  # a new decay, no warmup
    state = json.loads((tmp_path / CHECKPOINTS / "step-000010" / "trainer_state.json").read_text())
    assert [b["max_steps"] for b in state["budgets"]] == [6, 10]
    same = Trainer(tiny(), cfg(out_dir=str(tmp_path), max_steps=10, lr=1e-2), ds(40)).resume()
    assert len(same.budgets) == 2  # an unchanged budget keeps the plan


def test_tensorboard_event_files_hold_the_scalars(tmp_path):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    from mie_lm.training import TENSORBOARD_DIR, TensorBoard
    kw = dict(out_dir=str(tmp_path), tensorboard=True, eval_every=2, checkpoint_every=2)
    with pytest.raises(KeyboardInterrupt):  # killed after step 3 (checkpoint at 2)
        class Die(Callback):
            order = 50
            def on_step_end(self, trainer, metrics):
                if trainer.step == 3: raise KeyboardInterrupt
        Trainer(tiny(), cfg(**kw), ds(40), ds(8, start=3000), token_bytes=torch.ones(256, dtype=torch.long), callbacks=[Die()]).fit()
    t = Trainer(tiny(), cfg(**kw), ds(40), ds(8, start=3000), token_bytes=torch.ones(256, dtype=torch.long)).resume()
    assert any(isinstance(cb, TensorBoard) for cb in t.callbacks)
    t.fit()
    ev = EventAccumulator(str(tmp_path / TENSORBOARD_DIR)); ev.Reload()
    tags = set(ev.Tags()["scalars"])
    assert {"train/loss", "train/lr", "train/grad_norm", "train/tokens_per_s", "valid/loss", "valid/ppl", "valid/bpb"} <= tags
    assert [e.step for e in ev.Scalars("train/loss")] == list(range(1, 9))  # step 3 of the killed run was purged on resume
    assert [e.step for e in ev.Scalars("valid/bpb")] == [2, 4, 6, 8]
    hp = EventAccumulator(str(tmp_path / TENSORBOARD_DIR / "hparams")); hp.Reload()
    assert "hparam/valid_bpb" in hp.Tags()["scalars"]


# ---- step speed: fused AdamW, reused memory ---------------------------------------------------------

def test_optimizer_is_fused_on_cpu_and_stays_fused_after_resuming_an_unfused_checkpoint(tmp_path):
    from mie_lm.training import make_optimizer
    assert make_optimizer(tiny(), cfg(), torch.device("cpu")).defaults["fused"] is True
    assert make_optimizer(tiny(), cfg(), torch.device("meta")).defaults["fused"] is None  # elsewhere: PyTorch's default
    a = Trainer(tiny(), cfg(out_dir=str(tmp_path), max_steps=4), ds(40))
    a.optimizer = torch.optim.AdamW(param_groups(a.model, 0.1), lr=1e-3, betas=(0.9, 0.95))  # as runs saved before fused AdamW
    a.fit()
    t = Trainer(tiny(), cfg(out_dir=str(tmp_path), max_steps=6), ds(40)).resume()
    assert all(g["fused"] is True and g["foreach"] is None for g in t.optimizer.param_groups)
    assert t.fit()["steps"] == 6


def test_fused_and_default_adamw_train_the_same():
    runs = []
    for fused in (True, False):
        t = Trainer(tiny(), cfg(), ds(40))
        if not fused: t.optimizer = torch.optim.AdamW(param_groups(t.model, 0.1), lr=1e-3, betas=(0.9, 0.95))
        t.fit(); runs.append(torch.cat([p.detach().flatten() for p in t.model.parameters()]))
    assert torch.allclose(*runs, atol=1e-5)


def test_keep_freed_memory_bad_limit():
    from mie_lm.training import keep_freed_memory
    for bad in (0, 2**31, 1.5, True):
        with pytest.raises(ValueError, match=rf"limit must be an int of bytes in \[1, 2\*\*31\), got {bad!r}"):
            keep_freed_memory(bad)


def test_fit_keeps_freed_memory_on_cpu(monkeypatch):
    from mie_lm import training
    calls = []
    monkeypatch.setattr(training, "keep_freed_memory", lambda *a: calls.append(a) or True)
    Trainer(tiny(), cfg(max_steps=2, warmup_steps=0), ds(40)).fit()
    assert calls == [()]


@pytest.mark.skipif(not sys.platform.startswith("linux") or __import__("platform").libc_ver()[0] != "glibc", reason="glibc only")
def test_keep_freed_memory_stops_page_faults_of_large_tensors():
    probe = textwrap.dedent("""
        import resource, sys, torch
        from mie_lm.training import keep_freed_memory
        if sys.argv[1] == "keep": assert keep_freed_memory()
        x = torch.randn(2048, 4096); y = x.log_softmax(-1); del y
        before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        for _ in range(5): y = x.log_softmax(-1); del y
        print((resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before) / 5)
    """)
    faults = {how: float(subprocess.run([sys.executable, "-c", probe, how], capture_output=True, text=True, check=True).stdout)
              for how in ("default", "keep")}
    if faults["default"] < 1000: pytest.skip(f"few faults even by default (huge pages?): {faults}")  # 32 MiB = 8192 pages of 4 KiB
    assert faults["keep"] < faults["default"] / 100, faults

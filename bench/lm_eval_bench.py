#!/usr/bin/env python
"""lm-evaluation-harness on an exported mie_lm model vs `evaluate_file` on the same text. Not a test.

Usage: python bench/lm_eval_bench.py [--lm-eval-python PATH] [--chars 40000] [--steps 150] [--threads 1] [--no-write]

EleutherAI's lm-evaluation-harness (`lm_eval`, PyPI) is the client: it loads the folder written by
`mie_lm.hub.export_hf` with its stock `hf` model (`AutoModelForCausalLM` + `AutoTokenizer`, no custom
code) and runs a local YAML task over a local JSON-lines file holding one text (`loglikelihood_rolling`,
metrics word perplexity, byte perplexity, bits per byte). Nothing is downloaded: the task reads the file
through the `datasets` "json" builder and the run sets HF_HUB_OFFLINE / HF_DATASETS_OFFLINE.

lm-eval's rolling windows are disjoint windows of the model's `max_length` (= `block_size`) predictions,
the first one preceded by the tokenizer's BOS token, the last one slid back to a full window. mie_lm's
`evaluate_file(model, tokenizer, file, window=block_size, stride=block_size, bos=True)` reads the same windows, so
both must report the same three numbers (target: 1e-3 relative). The model is the `tiny` preset trained for
`--steps` AdamW steps on `python_docs` (seeded); the text is the first `--chars` characters of its
validation split.

`lm_eval` pins `python-dateutil<3` (through `pytablewriter`), which conflicts with the project's
environment, so it lives in its own virtual environment: pass its interpreter with `--lm-eval-python`
(default: this interpreter if it can import `lm_eval`). One way to make one that reuses the project's
torch and transformers:
    python -m venv /tmp/lmeval && echo "$PWD/.venv/lib/python3.11/site-packages" > \
        /tmp/lmeval/lib/python3.11/site-packages/mie_lm_venv.pth && /tmp/lmeval/bin/pip install lm_eval
Writes its section of bench/RESULTS.md (replacing the previous run's) unless --no-write.
"""
import argparse
import json
import math
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from mie_lm.corpora import python_docs  # noqa: E402
from mie_lm.evaluation import evaluate_file  # noqa: E402
from mie_lm.hub import export_hf  # noqa: E402
from mie_lm.model import GPT, GPTConfig, lm_loss  # noqa: E402
from mie_lm.tokenizer import BPETokenizer  # noqa: E402
sys.path.insert(0, str(Path(__file__).parent))
from _common import machine, write_section  # noqa: E402

TASK = "mie_lm_local_text"
YAML = f"""task: {TASK}
dataset_path: json
dataset_kwargs:
  data_files:
    test: {{data}}
test_split: test
output_type: loglikelihood_rolling
doc_to_text: ""
doc_to_target: text
metric_list:
  - metric: word_perplexity
  - metric: byte_perplexity
  - metric: bits_per_byte
metadata:
  version: 1.0
"""


def train_tiny(tok, docs, steps, seed=0):
    "The `tiny` preset after `steps` AdamW steps on random full-context windows of the training split."
    torch.manual_seed(seed)
    model = GPT(GPTConfig.from_preset("tiny", vocab_size=tok.vocab_size))
    stream, T = torch.tensor(tok.encode("\n\n".join(docs.train))), model.config.block_size + 1  # inputs and labels
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    for _ in range(steps):
        starts = torch.randint(0, len(stream) - T, (16,))
        batch = torch.stack([stream[s:s + T] for s in starts])
        loss = lm_loss(model(batch[:, :-1]), batch[:, 1:])
        opt.zero_grad(); loss.backward(); opt.step()
    return model.eval()


def run_lm_eval(python, folder, yaml_dir, out_dir, threads):
    "Run the lm_eval CLI on `folder` with the local task; return (its metrics dict, its version, seconds)."
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
           "OMP_NUM_THREADS": str(threads), "HF_DATASETS_CACHE": str(out_dir / "datasets-cache")}
    cmd = [python, "-m", "lm_eval", "--model", "hf", "--model_args", f"pretrained={folder},dtype=float32",
           "--tasks", TASK, "--include_path", str(yaml_dir), "--device", "cpu", "--batch_size", "8",
           "--output_path", str(out_dir / "results")]
    t = time.perf_counter()
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if proc.returncode: sys.exit(f"lm_eval failed (exit {proc.returncode}):\n{proc.stderr[-3000:]}")
    seconds = time.perf_counter() - t
    results = json.loads(next((out_dir / "results").rglob("results_*.json")).read_text())
    version = subprocess.run([python, "-c", "import lm_eval; print(lm_eval.__version__)"], capture_output=True, text=True,
                             env=env).stdout.strip()
    return {k.split(",")[0]: v for k, v in results["results"][TASK].items() if "," in k and "stderr" not in k}, version, seconds


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--lm-eval-python", default=sys.executable, help="interpreter that can import lm_eval")
    ap.add_argument("--chars", type=int, default=40_000, help="characters of the validation text to score")
    ap.add_argument("--steps", type=int, default=150, help="training steps of the tiny model")
    ap.add_argument("--threads", type=int, default=1, help="torch CPU threads, both sides")
    ap.add_argument("--no-write", action="store_true", help="print only; do not write bench/RESULTS.md")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    import transformers
    t0, info = time.time(), machine(transformers)
    docs = python_docs()
    tok = BPETokenizer.train(docs.train, vocab_size=512)
    model = train_tiny(tok, docs, a.steps)
    text = "\n\n".join(docs.valid)[:a.chars]
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        folder = export_hf(model, tok, tmp / "model")
        data = tmp / "text.jsonl"; data.write_text(json.dumps({"text": text}) + "\n", encoding="utf-8")
        (tmp / "task").mkdir(); (tmp / "task" / f"{TASK}.yaml").write_text(YAML.format(data=data))
        theirs, version, t_theirs = run_lm_eval(a.lm_eval_python, folder, tmp / "task", tmp, a.threads)
        (tmp / "text.txt").write_text(text, encoding="utf-8")
        bs = model.config.block_size
        t = time.perf_counter()
        rep = evaluate_file(model, tok, tmp / "text.txt", window=bs, stride=bs, bos=True)
        t_ours = time.perf_counter() - t
        default = evaluate_file(model, tok, tmp / "text.txt")  # mie_lm's default stride: half a window of overlap
    ours = dict(word_perplexity=rep.word_perplexity, byte_perplexity=rep.byte_perplexity, bits_per_byte=rep.bits_per_byte)
    rel = {k: abs(ours[k] - theirs[k]) / abs(theirs[k]) for k in ours}
    ok = max(rel.values()) <= 1e-3
    lines = [f"## lm-evaluation-harness on an exported model: `bench/lm_eval_bench.py`, {time.strftime('%Y-%m-%d')}", "",
             info + f", lm_eval {version}", "",
             f"`tiny` preset trained {a.steps} steps on `python_docs`, exported with `export_hf` and read by lm_eval's stock "
             f"`hf` model (`AutoModelForCausalLM`/`AutoTokenizer`); a local YAML task (`loglikelihood_rolling`) over a "
             f"local JSON-lines file holding the first {len(text):,} characters of the validation split "
             f"({rep.n_bytes:,} bytes, {rep.n_tokens:,} tokens, {rep.n_words:,} words by lm-eval's count). mie_lm: "
             f"`evaluate_file(..., window={bs}, stride={bs}, bos=True)`, lm-eval's windows (disjoint, BOS first, last one "
             f"slid back). fp32, {a.threads} thread(s).", "",
             "| metric | lm-eval | mie_lm `evaluate_file` | relative difference |", "|---|---|---|---|"]
    lines += [f"| {k} | {theirs[k]:.6f} | {ours[k]:.6f} | {rel[k]:.1e} |" for k in ours]
    lines += ["", f"Target 1e-3 relative: **{'met' if ok else 'NOT met'}** (largest {max(rel.values()):.1e}). "
              f"For comparison, mie_lm's default stride (window {default.window}, stride {default.stride}: every token "
              f"sees at least half a window) gives bits per byte {default.bits_per_byte:.4f} against "
              f"{rep.bits_per_byte:.4f} with lm-eval's disjoint windows.", "",
              f"lm-eval run (process start, model load, scoring) {t_theirs:.1f} s; mie_lm scoring {t_ours:.2f} s; "
              f"total bench time {time.time() - t0:.0f} s.", ""]
    report = "\n".join(lines)
    print(report)
    if not a.no_write:
        write_section("lm_eval", report)
    if not ok: sys.exit(1)


if __name__ == "__main__":
    main()

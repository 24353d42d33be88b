"""`mie_lm.runs` beyond the notebook's inline checks: the run-folder guards, the fingerprints, and the demo report
(self-contained, readable at 1280 px in a real browser)."""
import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from mie_lm.generation import SamplingConfig
from mie_lm.model import GPTConfig
from mie_lm.model import file_sha256
from mie_lm.runs import (DEMO_PROMPTS, _write_report, check_run_folder, config_sha256, generate_run, load_run,
                         readable, samples_html, train_run)
from mie_lm.training import TrainingConfig

sys.path.insert(0, str(Path(__file__).parent))
from find_browser import find_browser  # noqa: E402

QUICK = TrainingConfig(max_steps=3, warmup_steps=1, batch_size=2, eval_every=0, eval_batches=1, log_every=1, progress=False, threads=1)
SHAPE = dict(n_layer=1, block_size=32)


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    torch.set_num_threads(1)
    out = tmp_path_factory.mktemp("runs") / "run"
    train_run(out, vocab_size=300, model=SHAPE, training=QUICK)
    return out


def test_run_json_records_the_fingerprints(run):
    rec = json.loads((run / "run.json").read_text())
    assert rec["fingerprints"]["tokenizer.json"] == file_sha256(run / "tokenizer.json")
    model, _ = load_run(run)
    assert rec["fingerprints"]["model_config"] == config_sha256(model.config)
    assert rec["result"]["steps"] == 3 and rec["dataset"] == "python_docs"


def test_config_fingerprint_ignores_formatting_and_extra_keys():
    cfg = GPTConfig.from_preset("tiny")
    d = json.loads(json.dumps(cfg.__dict__, indent=4))
    assert config_sha256(cfg) == config_sha256({**d, "weights_sha256": "x", "compression": {}})
    assert config_sha256(cfg) != config_sha256({**d, "n_embd": 128})


def test_check_run_folder_cases(tmp_path):
    assert check_run_folder(tmp_path / "new") == tmp_path / "new"
    (tmp_path / "empty").mkdir(); (tmp_path / "empty" / ".lock").write_text("1")
    assert check_run_folder(tmp_path / "empty")  # a lock file alone is not a run
    (tmp_path / "file").write_text("x")
    with pytest.raises(ValueError, match="is a file"): check_run_folder(tmp_path / "file")
    with pytest.raises(ValueError, match="exclude each other"): check_run_folder(tmp_path / "new", resume=True, overwrite=True)


def test_overwrite_never_follows_links(run, tmp_path):
    "Replacing a run deletes a symlink inside it, never what the link points to."
    import shutil
    copy = tmp_path / "run"; shutil.copytree(run, copy)
    outside = tmp_path / "outside"; outside.mkdir(); (outside / "keep.txt").write_text("keep")
    (copy / "linked").symlink_to(outside, target_is_directory=True)
    train_run(copy, vocab_size=300, model=SHAPE, training=QUICK, overwrite=True)
    assert (outside / "keep.txt").read_text() == "keep" and not (copy / "linked").exists()


def test_greedy_stream_equals_batch_and_default_samples(run):
    greedy = SamplingConfig()
    pieces = []
    streamed = generate_run(run, ["The"], 8, greedy, stream=True, on_text=pieces.append)[0]
    assert streamed == generate_run(run, ["The"], 8, greedy)[0] == "".join(pieces)
    assert generate_run(run, ["The"], 8, seed=3) == generate_run(run, ["The"], 8, seed=3)


def test_samples_html_is_readable():
    t = samples_html({"greedy": ["a\nb", "c\ufffd", "<tag>"]})
    assert "\ufffd" not in t and "\\n" not in t and "&lt;tag&gt;" in t and t.count("<tr>") == 2
    assert readable("x\ufffdy") == "xy"


def _fake_report(out: Path) -> Path:
    import matplotlib; matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from mie_lm.runs import _data_uri
    fig, ax = plt.subplots(figsize=(12, 3)); ax.plot([1, 2, 3])
    long = "x" * 400 + " " + "word " * 80  # an unbreakable run and a long line must wrap, not widen the page
    samples = {name: [long, "def f():\n    return 1", "ok\ufffd"] for name in ("greedy", "temperature 0.8", "top-k 20")}
    summary = dict(steps=120, tokens=245760, train_seconds=84.0, stop_reason="max_time=84 s reached", valid_bits_per_byte=2.1234,
                   valid_perplexity=45.6, parameters=239360)
    return _write_report(out, "tiny", summary, samples, {"A wide figure.": _data_uri(fig)}, "<p>tokens</p>")


def test_report_is_self_contained_and_explains_its_numbers(tmp_path):
    page = _fake_report(tmp_path).read_text()
    assert "data:image/png;base64," in page and "src=\"http" not in page and "href=\"http" not in page
    assert "2.123" in page and "Plain UTF-8 spends 8 bits" in page and "245,760 tokens" in page
    assert "\ufffd" not in page and all(p in page for p in DEMO_PROMPTS)


MEASURE_PAGE = """
import json, sys
from playwright.sync_api import sync_playwright
with sync_playwright() as p:
    b = p.chromium.launch(executable_path=sys.argv[1], args=["--no-sandbox", "--disable-gpu"])
    page = b.new_page(viewport={"width": 1280, "height": 800})
    requests = []
    page.on("request", lambda r: requests.append(r.url))
    page.goto(sys.argv[2])
    print(json.dumps({"width": page.evaluate("document.documentElement.scrollWidth"), "requests": requests}))
    b.close()
"""


def test_report_fits_a_1280_px_window(tmp_path):
    browser = find_browser()
    if browser is None: pytest.skip("no Chromium here")
    report = _fake_report(tmp_path)
    # Its own process: the site check may hold a session-wide Playwright (one sync Playwright per process).
    res = subprocess.run([sys.executable, "-c", MEASURE_PAGE, browser, report.as_uri()], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr[-2000:]
    seen = json.loads(res.stdout.strip().splitlines()[-1])
    assert seen["width"] <= 1280, f"the report is {seen['width']} px wide at a 1280 px window"
    assert [u for u in seen["requests"] if not u.startswith(("file:", "data:"))] == []  # nothing fetched


def test_one_sampling_config_reaches_generate(run, monkeypatch):
    "The `SamplingConfig` given to `generate_run` (or its default) is the very object `generate` receives."
    import mie_lm.generation as generation
    seen, real = [], generation.generate
    def spy(*a, **k): seen.append(k["sampling"]); return real(*a, **k)
    monkeypatch.setattr(generation, "generate", spy)
    cfg = SamplingConfig(do_sample=True, top_k=7)
    generate_run(run, ["The", "A"], 4, cfg)
    generate_run(run, ["The"], 4)
    from mie_lm.runs import DEFAULT_SAMPLING
    assert seen[0] is cfg and seen[1] is DEFAULT_SAMPLING


def test_compare_runs_bad_input(run, tmp_path):
    from mie_lm.runs import compare_runs
    with pytest.raises(FileNotFoundError, match="no run folder"): compare_runs([tmp_path / "missing"])
    import shutil
    copy = tmp_path / "copy"; shutil.copytree(run, copy); (copy / "metrics.jsonl").unlink()
    with pytest.raises(FileNotFoundError, match="no metrics.jsonl"): compare_runs([run, copy])
    with pytest.raises(ValueError, match="no runs to compare"): compare_runs([])


def test_compare_warns_when_tokenizers_differ(run, tmp_path):
    from mie_lm.runs import compare_runs
    other = tmp_path / "other"
    train_run(other, vocab_size=320, model=SHAPE, training=QUICK)
    before = {p: p.stat().st_mtime_ns for p in run.rglob("*")}
    with pytest.warns(UserWarning, match="different tokenizers"): table = compare_runs([run, other], plot=tmp_path / "c.png")
    assert table["vocab_size"].tolist() == [300, 320] and "best_valid_bpb" in table
    assert (tmp_path / "c.png").stat().st_size > 1000
    assert {p: p.stat().st_mtime_ns for p in run.rglob("*")} == before  # nothing written into the runs


def test_bad_grid_fails_before_anything_runs(tmp_path):
    from mie_lm.runs import sweep
    for grid, msg in [({"n_head": [2, 3]}, "n_head"), ({"preset": ["tiny", "huge"]}, "unknown preset 'huge'"),
                      ({"dataset": ["nope"]}, "unknown dataset"), ({"lr": []}, "has no values"), ({"out_dir": ["x"]}, "unknown sweep")]:
        with pytest.raises(ValueError, match=msg): sweep(tmp_path / "s", grid, training=QUICK)
    assert not (tmp_path / "s").exists()


def test_sweep_state(run, tmp_path):
    from mie_lm.runs import INTERRUPTED, _sweep_state
    import shutil
    assert _sweep_state(run) == "done" and _sweep_state(tmp_path / "none") == "new"
    copy = tmp_path / "copy"; shutil.copytree(run, copy)
    rec = json.loads((copy / "run.json").read_text()); rec["result"]["stop_reason"] = INTERRUPTED
    (copy / "run.json").write_text(json.dumps(rec))
    assert _sweep_state(copy) == "resume"


def test_budget_defaults_equal_the_bench_table():
    "`BUDGET_DEFAULTS` is a copy of bench/budget_table.json's measured best rows (the bench is not in the wheel)."
    from mie_lm.runs import BUDGET_DEFAULTS
    table = Path(__file__).resolve().parents[1] / "bench" / "budget_table.json"
    if not table.is_file(): pytest.skip("no bench/budget_table.json in this checkout")
    best = json.loads(table.read_text())["best"]
    assert [{k: r[k] for k in BUDGET_DEFAULTS[0]} for r in best] == BUDGET_DEFAULTS


def test_cli_resume_takes_the_runs_settings(run, tmp_path):
    "`mie_lm train --out RUN --resume` with no other flag continues the run with its own shape and vocabulary."
    import shutil
    from mie_lm.cli import main
    copy = tmp_path / "run"; shutil.copytree(run, copy)
    assert main(["train", "--out", str(copy), "--resume", "--no-progress"]) == 0
    assert json.loads((copy / "run.json").read_text())["model"]["n_layer"] == 1


def test_compile_flag_reaches_generate(run, monkeypatch):
    "`mie_lm generate --compile` and `generate_run(compile=True)` pass `compile=True` to `generate` (compiling itself: test_generation)."
    import mie_lm.generation as generation
    from mie_lm.cli import build_parser
    seen, real = [], generation.generate
    def spy(*a, **k): seen.append(k["compile"]); return real(*a, **{**k, "compile": False})
    monkeypatch.setattr(generation, "generate", spy)
    generate_run(run, ["The"], 4, compile=True); generate_run(run, ["The"], 4)
    assert seen == [True, False]
    parse = build_parser().parse_args
    assert parse(["generate", "--checkpoint", "r", "--compile"]).compile and not parse(["generate", "--checkpoint", "r"]).compile

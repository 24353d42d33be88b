"""Bad input and faults against the run folder and the `mie_lm` command: every case ends in a one-line error
(exit status 2, no traceback, nothing printed to stdout first) and leaves the run folder as it was.

Most cases call `mie_lm.cli.main` in this process (fast: one tiny run is trained once per module and copied);
the lock, Ctrl-C and full-disk cases run the real command in a subprocess.
"""
import errno
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from mie_lm.cli import main
from mie_lm.runs import DEFAULT_SAMPLING, generate_run, load_run, train_run
from mie_lm.training import TrainingConfig

CLI = Path(sys.executable).parent / "mie_lm"
SMALL = ["--vocab-size", "300", "--n-layer", "1", "--block-size", "32", "--batch-size", "2", "--warmup-steps", "1",
         "--eval-every", "0", "--eval-batches", "1", "--log-every", "1", "--no-progress", "--device", "cpu"]
TRAIN = ["train", *SMALL, "--max-steps", "3"]


@pytest.fixture(autouse=True)
def _one_thread():
    torch.set_num_threads(1)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    "A finished three-step run (trained once per module); tests get a fresh copy with `run_copy`."
    out = tmp_path_factory.mktemp("trained") / "run"
    assert main([*TRAIN, "--out", str(out)]) == 0
    return out


@pytest.fixture
def run(trained, tmp_path):
    "A private copy of the trained run."
    dst = tmp_path / "run"
    shutil.copytree(trained, dst)
    return dst


def cli(argv, capsys) -> tuple[int, str, str]:
    "Run `mie_lm argv` in this process: exit status, stdout, stderr."
    try: code = main([str(a) for a in argv])
    except SystemExit as e: code = e.code
    out, err = capsys.readouterr()
    return code, out, err


def fails(argv, capsys, *msgs, code=2):
    "Assert `mie_lm argv` fails with a one-line error containing each of `msgs`, printing nothing to stdout; the line."
    got, out, err = cli(argv, capsys)
    assert got == code, (argv, got, out, err)
    assert err.count("\n") == 1 and "Traceback" not in err, err
    assert out == "", f"stdout before the error: {out!r}"
    for m in msgs: assert m in err, (m, err)
    return err


def snapshot(folder: Path) -> dict:
    "Every file under `folder` with its size and modification time (to prove that nothing changed)."
    return {str(p.relative_to(folder)): (p.stat().st_size, p.stat().st_mtime_ns) for p in sorted(folder.rglob("*")) if p.is_file() and p.name != ".lock"}


def steps_in_metrics(run: Path) -> list[int]:
    return [json.loads(l)["step"] for l in (run / "metrics.jsonl").read_text().splitlines() if "loss" in json.loads(l)]


# --- §2: an existing run is never overwritten or mixed by accident ---------------------------------------------------

def test_existing_run_is_refused_without_resume(run, capsys):
    before = snapshot(run)
    fails([*TRAIN, "--out", run], capsys, "is not empty", "pass --resume", "--overwrite")
    assert snapshot(run) == before


def test_refused_rerun_writes_nothing_even_with_other_settings(run, capsys):
    "A re-run that would train another tokenizer (other vocabulary size) leaves tokenizer.json and the model untouched."
    before = snapshot(run)
    fails([*TRAIN, "--out", run, "--vocab-size", "400"], capsys, "is not empty")
    assert snapshot(run) == before


def test_overwrite_replaces_the_run_as_a_whole(run, capsys):
    (run / "stale.txt").write_text("from the old run")
    code, out, err = cli([*TRAIN, "--out", run, "--overwrite", "--max-steps", "2"], capsys)
    assert code == 0, err
    assert not (run / "stale.txt").exists()
    assert steps_in_metrics(run) == [1, 2]  # not appended to the old run's metrics
    assert json.loads((run / "run.json").read_text())["result"]["steps"] == 2


def test_overwrite_refuses_a_folder_that_is_not_a_run(tmp_path, capsys):
    (tmp_path / "notes.txt").write_text("mine")
    fails([*TRAIN, "--out", tmp_path, "--overwrite"], capsys, "does not look like a run folder")
    assert (tmp_path / "notes.txt").read_text() == "mine"


def test_resume_and_overwrite_exclude_each_other(run, capsys):
    fails([*TRAIN, "--out", run, "--overwrite", "--resume"], capsys, "not allowed with argument")


def test_nothing_is_written_when_a_check_fails(tmp_path, capsys):
    out = tmp_path / "new"
    fails([*TRAIN, "--out", out, "--dataset", "text_files", "--data-path", tmp_path / "missing.txt"], capsys, "no such file")
    fails([*TRAIN, "--out", out, "--device", "cuda:7"], capsys, "not available here")
    fails([*TRAIN, "--out", out, "--n-head", "3"], capsys, "n_head")
    assert not out.exists()


def test_resume_of_a_folder_without_a_run(tmp_path, capsys):
    fails([*TRAIN, "--out", tmp_path / "none", "--resume"], capsys, "cannot resume: no run.json")
    assert not (tmp_path / "none").exists()


# --- fingerprints: tokenizer and model config belong to the weights ----------------------------------------------------

def test_edited_config_json_is_refused(run, capsys):
    conf = run / "model" / "config.json"
    conf.write_text(conf.read_text().replace('"n_head": 2', '"n_head": 4'))
    fails(["generate", "--checkpoint", run, "--prompt", "The"], capsys, "config.json", "does not match the SHA-256")
    fails(["evaluate", "--checkpoint", run, "--file", conf], capsys, "does not match the SHA-256")


def test_foreign_tokenizer_is_refused_on_load_and_on_resume(run, tmp_path, capsys):
    other = tmp_path / "other"
    assert cli([*TRAIN, "--out", other, "--max-steps", "2", "--seed", "1", "--vocab-size", "310"], capsys)[0] == 0
    shutil.copy(other / "tokenizer.json", run / "tokenizer.json")
    fails(["generate", "--checkpoint", run, "--prompt", "The"], capsys, "tokenizer.json does not match")
    fails([*TRAIN, "--out", run, "--resume", "--max-steps", "5"], capsys, "cannot resume", "fingerprints.tokenizer.json")


@pytest.mark.parametrize("flags, field", [(["--dataset", "synthetic"], "dataset was 'python_docs'"),
                                          (["--vocab-size", "400"], "vocab_size was 300"),
                                          (["--n-layer", "2"], "model.n_layer was 1, now 2"),
                                          (["--preset", "small"], "preset was 'tiny'")])
def test_resume_refuses_a_change_of_data_tokenizer_or_shape(run, capsys, flags, field):
    before = snapshot(run)
    fails([*TRAIN, "--out", run, "--resume", "--max-steps", "5", *flags], capsys, "cannot resume", field)
    assert snapshot(run) == before


# --- damaged files ------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("content", ["[1, 2, 3]", "{not json", '"text"'])
def test_config_json_that_is_not_an_object(run, capsys, content):
    (run / "model" / "config.json").write_text(content)
    fails(["generate", "--checkpoint", run, "--prompt", "The"], capsys, "config.json")


@pytest.mark.parametrize("content", ["[1, 2, 3]", "{not json"])
def test_run_json_that_is_not_an_object(run, capsys, content):
    (run / "run.json").write_text(content)
    fails(["generate", "--checkpoint", run, "--prompt", "The"], capsys, "run.json")
    fails([*TRAIN, "--out", run, "--resume", "--max-steps", "5"], capsys, "run.json")


def _checkpoint(run: Path) -> Path:
    return next((run / "checkpoints").glob("step-*"))


@pytest.mark.parametrize("damage", ["truncate_model", "delete_model", "delete_state", "garbage_state", "delete_optimizer"])
def test_damaged_checkpoint_on_resume(run, capsys, damage):
    ckpt = _checkpoint(run)
    if damage == "truncate_model": (ckpt / "model.safetensors").write_bytes((ckpt / "model.safetensors").read_bytes()[:100])
    if damage == "delete_model": (ckpt / "model.safetensors").unlink()
    if damage == "delete_state": (ckpt / "trainer_state.json").unlink()
    if damage == "garbage_state": (ckpt / "trainer_state.json").write_text("[]")
    if damage == "delete_optimizer": (ckpt / "optimizer.safetensors").unlink()
    before = snapshot(run)
    fails([*TRAIN, "--out", run, "--resume", "--max-steps", "5"], capsys, "")
    assert snapshot(run) == before


@pytest.mark.parametrize("latest", ["../../elsewhere", "/tmp", "", "step-00000x", "model"])
def test_latest_pointer_never_becomes_a_path(run, tmp_path, capsys, latest):
    "A `checkpoints/latest` naming anything but a `step-NNNNNN` folder inside `checkpoints/` is refused; nothing is deleted."
    victim = run.parent / "elsewhere"; victim.mkdir(); (victim / "keep.txt").write_text("keep")
    (run / "checkpoints" / "latest").write_text(latest)
    before = snapshot(run)
    fails([*TRAIN, "--out", run, "--resume", "--max-steps", "5"], capsys, "latest")
    assert (victim / "keep.txt").read_text() == "keep" and snapshot(run) == before


def test_damaged_final_weights(run, capsys):
    w = run / "model" / "model.safetensors"
    w.write_bytes(w.read_bytes()[:-10])
    fails(["generate", "--checkpoint", run, "--prompt", "The"], capsys, "model.safetensors")


def test_compressed_model_loads_and_its_errors_are_one_line(run, tmp_path, capsys):
    from mie_lm.compression import quantize, save_compressed
    model, _ = load_run(run)
    folder = save_compressed(quantize(model, "int8"), tmp_path / "int8")
    shutil.copy(run / "tokenizer.json", folder / "tokenizer.json")
    code, out, err = cli(["generate", "--checkpoint", folder, "--prompt", "The", "--max-new-tokens", "3"], capsys)
    assert code == 0 and out.startswith("The"), err
    conf = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**conf, "n_embd": 128}))  # weights no longer fit the config
    fails(["generate", "--checkpoint", folder, "--prompt", "The"], capsys, "int8")
    (folder / "config.json").write_text(json.dumps(conf))
    (folder / "model.safetensors").write_bytes(b"\0" * 64)
    fails(["generate", "--checkpoint", folder, "--prompt", "The"], capsys, "model.safetensors")


# --- devices ------------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("device", ["cuda", "mps", "cuda:3", "tpu"])
def test_missing_device_is_one_line(run, capsys, device):
    if device == "cuda" and torch.cuda.is_available(): pytest.skip("this machine has CUDA")
    if device == "mps" and torch.backends.mps.is_available(): pytest.skip("this machine has MPS")
    if device == "cuda:3" and torch.cuda.device_count() > 3: pytest.skip("this machine has four GPUs")
    before = snapshot(run)
    fails(["generate", "--checkpoint", run, "--prompt", "The", "--device", device], capsys, repr(device))
    fails(["evaluate", "--checkpoint", run, "--device", device, "--out", run / "eval"], capsys, repr(device))
    fails([*TRAIN, "--out", run.parent / "fresh", "--device", device], capsys, repr(device))
    assert snapshot(run) == before and not (run.parent / "fresh").exists()


# --- evaluate --file ----------------------------------------------------------------------------------------------------

def test_evaluate_one_token_file(run, tmp_path, capsys):
    f = tmp_path / "one.txt"; f.write_text("T")
    code, out, err = cli(["evaluate", "--checkpoint", run, "--file", f, "--out", tmp_path / "eval"], capsys)
    assert code == 0, err
    assert sorted(p.name for p in (tmp_path / "eval").iterdir()) == ["perplexity.csv", "perplexity_hist.png", "token_probabilities.html"]


def test_evaluate_single_text_draws_its_histogram(run, tmp_path, capsys):
    f = tmp_path / "text.txt"; f.write_text("The return statement leaves the function. " * 20)
    code, out, err = cli(["evaluate", "--checkpoint", run, "--file", f, "--out", tmp_path / "eval"], capsys)
    assert code == 0, err
    assert (tmp_path / "eval" / "perplexity_hist.png").stat().st_size > 1000
    page = (tmp_path / "eval" / "token_probabilities.html").read_text()
    assert "Legend" in page and page.count("<span") > 20  # the coloured tokens and their legend


def test_evaluate_empty_file_writes_nothing(run, tmp_path, capsys):
    f = tmp_path / "empty.txt"; f.write_text("")
    fails(["evaluate", "--checkpoint", run, "--file", f, "--out", tmp_path / "eval"], capsys, "nothing to score")
    assert not (tmp_path / "eval").exists() or not any((tmp_path / "eval").iterdir())


def test_decoding_error_suggests_a_flag_that_exists(run, tmp_path, capsys):
    f = tmp_path / "latin.txt"; f.write_bytes("caf\xe9 cr\xe8me".encode("latin-1"))
    err = fails(["evaluate", "--checkpoint", run, "--file", f], capsys, "--encoding latin-1")
    assert "encoding='" not in err
    assert cli(["evaluate", "--checkpoint", run, "--file", f, "--encoding", "latin-1"], capsys)[0] == 0


# --- generate: flags do what they say --------------------------------------------------------------------------------

def test_sampling_flag_means_sampling(run, capsys):
    greedy = cli(["generate", "--checkpoint", run, "--prompt", "The", "--no-do-sample", "--max-new-tokens", "20"], capsys)[1]
    draws = {cli(["generate", "--checkpoint", run, "--prompt", "The", "--temperature", "1.5", "--seed", str(s),
                  "--max-new-tokens", "20"], capsys)[1] for s in range(3)}
    assert len(draws) > 1 and greedy not in draws
    fails(["generate", "--checkpoint", run, "--prompt", "The", "--no-do-sample", "--top-k", "5"], capsys, "--top-k would have no effect")


def test_default_generate_samples(run, capsys):
    "The default is `DEFAULT_SAMPLING` (a seeded draw), the same as `generate_run`'s default."
    out = cli(["generate", "--checkpoint", run, "--prompt", "The", "--max-new-tokens", "12", "--no-stream"], capsys)[1]
    assert DEFAULT_SAMPLING.do_sample
    assert out.splitlines()[1] == "The" + generate_run(run, ["The"], 12)[0].split("\n")[0]


def test_long_prompt_error_names_the_flag(run, capsys):
    long = "word " * 200
    err = fails(["generate", "--checkpoint", run, "--prompt", long, "--max-new-tokens", "4"], capsys, "--long-prompt truncate")
    assert "long_prompt=" not in err
    code, out, err = cli(["generate", "--checkpoint", run, "--prompt", long, "--max-new-tokens", "4", "--long-prompt", "truncate"], capsys)
    assert code == 0, err


def test_stream_prints_nothing_before_loading(run, capsys):
    (run / "model" / "model.safetensors").write_bytes(b"broken")
    fails(["generate", "--checkpoint", run, "--prompt", "Hello there"], capsys, "model.safetensors")


def test_empty_prompt_list_and_missing_prompts_file(run, capsys):
    fails(["generate", "--checkpoint", run], capsys, "no prompts")
    fails(["generate", "--checkpoint", run, "--prompts-file", run / "none.txt"], capsys, "no such prompts file")


# --- the command itself -------------------------------------------------------------------------------------------------

def test_version_and_choices(capsys):
    code, out, _ = cli(["--version"], capsys)
    assert code == 0 and out.startswith("mie_lm ")
    code, out, _ = cli(["train", "--help"], capsys)
    assert "{linear,cosine}" in out and "{auto,fp32,bf16}" in out
    fails(["train", "--out", "x", "--precision", "fp8"], capsys, "invalid choice: 'fp8'")


def test_train_prints_formatted_metrics(tmp_path, capsys):
    code, out, err = cli([*TRAIN, "--out", tmp_path / "r", "--eval-every", "2"], capsys)
    assert code == 0, err
    assert "valid_bits_per_byte:" in out and "{" not in out  # no raw dict
    line = next(l for l in out.splitlines() if "valid_bits_per_byte" in l)
    assert len(line.split(":")[1].strip()) <= 6  # 4 significant digits


# --- full disk ----------------------------------------------------------------------------------------------------------

def test_disk_full_during_a_save_is_one_line(tmp_path, capsys, monkeypatch):
    "A save that fails with ENOSPC (a patched writer) ends in one line, leaves no temporary files, and keeps the lock free."
    import safetensors.torch
    real = safetensors.torch.save_file
    def full(*a, **k): raise OSError(errno.ENOSPC, "No space left on device")
    monkeypatch.setattr(safetensors.torch, "save_file", full)
    out = tmp_path / "run"
    fails([*TRAIN, "--out", out], capsys, "No space left on device")
    assert not [p for p in out.rglob("*") if ".tmp" in p.name]
    monkeypatch.setattr(safetensors.torch, "save_file", real)
    assert cli([*TRAIN, "--out", out, "--resume"], capsys)[0] in (0, 2)  # the lock was released either way


def _mount_tmpfs(path: Path, size: str) -> bool:
    if os.geteuid() != 0 or shutil.which("mount") is None: return False
    path.mkdir(parents=True, exist_ok=True)
    return subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)], capture_output=True).returncode == 0


def test_disk_full_on_a_real_small_filesystem(tmp_path):
    "A real full disk (a 300 kB tmpfs, where root may mount one): one line, exit 2, no leftover temporary folders."
    mnt = tmp_path / "small"
    if not _mount_tmpfs(mnt, "300k"): pytest.skip("cannot mount a small tmpfs here (needs root)")
    try:
        res = subprocess.run([str(CLI), *TRAIN, "--out", str(mnt / "run")], capture_output=True, text=True, timeout=300)
        assert res.returncode == 2, (res.stdout, res.stderr)
        assert res.stderr.count("\n") == 1 and "Traceback" not in res.stderr, res.stderr
        assert not [p for p in (mnt / "run").rglob("*") if ".tmp" in p.name]
    finally: subprocess.run(["umount", str(mnt)], capture_output=True)


# --- two processes, one folder ------------------------------------------------------------------------------------------

def test_second_writer_gets_run_folder_in_use(tmp_path):
    "While one training holds the run folder, a second `--resume` into it is refused with the first one's pid."
    run = tmp_path / "run"
    first = subprocess.Popen([str(CLI), "train", *SMALL, "--out", str(run), "--max-steps", "100000"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.time() + 120
        while not (run / "metrics.jsonl").exists() or len(steps_in_metrics(run)) < 6:
            assert first.poll() is None and time.time() < deadline, first.communicate()
            time.sleep(0.2)
        before = (run / "metrics.jsonl").read_text()
        res = subprocess.run([str(CLI), "train", *SMALL, "--out", str(run), "--resume", "--max-steps", "100000"],
                             capture_output=True, text=True, timeout=120)
        assert res.returncode == 2 and res.stderr.count("\n") == 1, res.stderr
        assert f"is in use (pid {first.pid})" in res.stderr
        assert (run / "metrics.jsonl").read_text().startswith(before)
    finally:
        first.send_signal(signal.SIGINT)
        first.communicate(timeout=120)
    assert first.returncode == 130


# --- compare and sweep ------------------------------------------------------------------------------------------------

def test_compare_and_sweep_bad_input(run, tmp_path, capsys):
    fails(["compare", tmp_path / "nothing"], capsys, "no run folder")
    fails(["compare", run / "model"], capsys, "no run.json")
    empty = tmp_path / "empty-run"; shutil.copytree(run, empty); (empty / "metrics.jsonl").unlink()
    fails(["compare", run, empty], capsys, "no metrics.jsonl")
    for param, msg in [("lrr=1", "unknown sweep parameter 'lrr'"), ("lr=", "write NAME=V1,V2"), ("lr=fast", "must be float"),
                       ("n_head=2,3", "n_head"), ("preset=tiny,huge", "unknown preset 'huge'"), ("restore_best=maybe", "must be bool")]:
        fails(["sweep", "--out", tmp_path / "grid", "--param", param, *SMALL, "--max-steps", "2"], capsys, msg)
    assert not (tmp_path / "grid").exists()  # a bad grid writes nothing


def test_compare_writes_nothing_into_runs(run, tmp_path, capsys):
    before = snapshot(run)
    code, out, err = cli(["compare", run, "--plot", tmp_path / "c.png"], capsys)
    assert code == 0 and "last_valid_bpb" in out, err
    assert snapshot(run) == before and (tmp_path / "c.png").is_file()


# --- export to Hugging Face ---------------------------------------------------------------------------------------------

def test_export_and_load_back(run, tmp_path, capsys):
    hf = tmp_path / "hf"
    code, out, err = cli(["export", "--checkpoint", run, "--hf", hf], capsys)
    assert code == 0 and (hf / "model.safetensors").is_file(), err
    greedy = ["--no-do-sample", "--max-new-tokens", "8", "--prompt", "The", "--no-stream"]
    assert cli(["generate", "--checkpoint", hf, *greedy], capsys)[1] == cli(["generate", "--checkpoint", run, *greedy], capsys)[1]
    before = snapshot(hf)
    fails(["export", "--checkpoint", run, "--hf", hf], capsys, "--overwrite")
    assert snapshot(hf) == before
    assert cli(["export", "--checkpoint", run, "--hf", hf, "--overwrite"], capsys)[0] == 0


def test_export_bad_input(run, tmp_path, capsys):
    hf = tmp_path / "hf"
    conf = run / "model" / "config.json"
    conf.write_text(conf.read_text().replace('"n_head": 2', '"n_head": 4'))
    fails(["export", "--checkpoint", run, "--hf", hf], capsys, "does not match the SHA-256")
    assert not hf.exists()
    other = tmp_path / "llama"; other.mkdir()
    (other / "config.json").write_text(json.dumps({"model_type": "llama", "architectures": ["LlamaForCausalLM"]}))
    fails(["generate", "--checkpoint", other, "--prompt", "x"], capsys, "llama")


def test_evaluate_window_and_stride(run, tmp_path, capsys):
    f = tmp_path / "text.txt"; f.write_text("The return statement leaves the function. " * 30)
    code, out, err = cli(["evaluate", "--checkpoint", run, "--file", f, "--window", "16", "--stride", "8"], capsys)
    assert code == 0 and "window: 16" in out and "stride: 8" in out, err
    fails(["evaluate", "--checkpoint", run, "--file", f, "--window", "999"], capsys, "window")
    fails(["evaluate", "--checkpoint", run, "--file", f, "--window", "16", "--stride", "0"], capsys, "stride")

"""Every bad input is one line on stderr and exit status 2, before any model loads: a sweep of subcommand x input."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

import empo.model
from empo.cli import main as cli_main

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def bad(tmp_path):
    """Bad inputs on disk: a directory that is not a model, rows without the question field, broken YAML."""
    (tmp_path / "not_a_model").mkdir()
    (tmp_path / "not_a_model" / "weights.bin").write_bytes(b"")
    rows = tmp_path / "rows.jsonl"
    rows.write_text(json.dumps({"question": "1+1?", "answer": "2"}) + "\n")
    (tmp_path / "bench").mkdir()
    (tmp_path / "bench" / "math500.jsonl").write_text(rows.read_text())
    (tmp_path / "broken.yaml").write_text("learning_rate: [1e-4\n")
    (tmp_path / "binary.yaml").write_bytes(b"\xff\xfe\x00garbage")
    (tmp_path / "list.yaml").write_text("- 1\n- 2\n")
    return tmp_path


def _cases():
    t = "{t}"
    missing_model, missing_adapter = "/nonexistent/model", "/nonexistent/adapter"
    cases = {
        # model paths
        "rollout/missing-model": (["rollout", "--model", missing_model],
                                  "model path '/nonexistent/model' does not exist"),
        "eval/missing-model": (["eval", "--model", missing_model], "model path '/nonexistent/model' does not exist"),
        "train/missing-model": (["train", "--model_name_or_path", missing_model],
                                "model path '/nonexistent/model' does not exist"),
        "merge/missing-base": (["merge", f"{t}/adapter", f"{t}/out", "--model", missing_model],
                               "base model path '/nonexistent/model' does not exist"),
        "rollout/relative-missing-model": (["rollout", "--model", "./no/such/model"],
                                           "model path './no/such/model' does not exist"),
        "rollout/not-a-model-dir": (["rollout", "--model", f"{t}/not_a_model"], "has no config.json"),
        "eval/not-a-model-dir": (["eval", "--model", f"{t}/not_a_model"], "has no config.json"),
        "train/not-a-model-dir": (["train", "--model_name_or_path", f"{t}/not_a_model"], "has no config.json"),
        "rollout/model-is-a-file": (["rollout", "--model", f"{t}/rows.jsonl"], "is a file"),
        # hub ids offline
        "rollout/hub-offline": (["rollout", "--model", "empo-test/not-cached"], "hub is offline"),
        "eval/hub-offline": (["eval", "--model", "empo-test/not-cached"], "hub is offline"),
        "train/hub-offline": (["train", "--model_name_or_path", "empo-test/not-cached"], "hub is offline"),
        "merge/hub-offline-base": (["merge", f"{t}/adapter", f"{t}/out", "--model", "empo-test/not-cached"],
                                   "hub is offline"),
        # adapters and merge paths
        "rollout/missing-adapter": (["rollout", "--adapter", missing_adapter],
                                    "adapter directory '/nonexistent/adapter' does not exist"),
        "eval/missing-adapter": (["eval", "--adapter", missing_adapter],
                                 "adapter directory '/nonexistent/adapter' does not exist"),
        "merge/missing-adapter": (["merge", "/nonexistent", f"{t}/out"],
                                  "adapter directory '/nonexistent' does not exist"),
        "merge/not-an-adapter": (["merge", f"{t}/not_a_model", f"{t}/out"], "no adapter_config.json"),
        "merge/output-not-a-model": (["merge", f"{t}/adapter", f"{t}/bench"], "exists and is not a model directory"),
        # data without the mapped fields
        "rollout/rows-without-field": (["rollout", "--dataset", f"{t}/rows.jsonl"], "row 0 has no field 'problem'"),
        "train/rows-without-field": (["train", "--dataset_name", f"{t}/rows.jsonl"], "row 0 has no field 'problem'"),
        "eval/rows-without-field": (["eval", "--benchmarks", "math500", "--data-dir", f"{t}/bench"],
                                    "row 0 has no field 'problem'"),
        "rollout/missing-data-file": (["rollout", "--dataset", f"{t}/nope.jsonl"], "does not exist"),
        "train/missing-data-file": (["train", "--dataset_name", f"{t}/nope.jsonl"], "does not exist"),
        # recipes, sweep specs and prompt files
        "train/missing-recipe": (["train", "--config", f"{t}/nope.yaml"], "recipe"),
        "train/malformed-recipe": (["train", "--config", f"{t}/broken.yaml"], "is not valid YAML at line 2"),
        "train/unreadable-recipe": (["train", "--config", f"{t}/binary.yaml"], "cannot be read"),
        "train/recipe-is-a-dir": (["train", "--config", f"{t}/bench"], "is not a file"),
        "train/recipe-not-a-mapping": (["train", "--config", f"{t}/list.yaml"], "is not a YAML mapping"),
        "compare/malformed-sweep": (["compare", "--sweep", f"{t}/broken.yaml"], "is not valid YAML at line 2"),
        "compare/missing-sweep": (["compare", "--sweep", f"{t}/nope.yaml"], "sweep spec"),
        "compare/sweep-not-a-mapping": (["compare", "--sweep", f"{t}/list.yaml"], "is not a YAML mapping"),
        "compare/missing-run": (["compare", f"{t}/nope"], "is not an empo training run"),
        "rollout/malformed-prompt": (["rollout", "--prompt", f"{t}/broken.yaml"], "prompt file"),
        "eval/malformed-prompt": (["eval", "--prompt", f"{t}/broken.yaml"], "prompt file"),
        "train/malformed-prompt": (["train", "--prompt", f"{t}/broken.yaml"], "prompt file"),
    }
    return cases


CASES = _cases()


@pytest.fixture
def adapter(bad):
    path = bad / "adapter"
    path.mkdir()
    (path / "adapter_config.json").write_text(json.dumps({"base_model_name_or_path": "smollm2-135m-instruct"}))
    return path


@pytest.mark.parametrize("case", sorted(CASES))
def test_bad_input_is_one_line_and_exit_2(case, bad, adapter, capsys, monkeypatch):
    def no_load(*args, **kwargs):
        raise AssertionError("a model was loaded")

    monkeypatch.setattr(empo.model, "load_model", no_load)  # everything here fails before any model loads
    monkeypatch.setattr(empo.model, "_ensure_alias_checkpoint", no_load)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.chdir(bad)
    argv, expected = CASES[case]
    argv = [a.replace("{t}", str(bad)) for a in argv]
    if argv[0] in ("train", "eval"):  # keep run outputs inside the test directory
        argv += ["--output_dir" if argv[0] == "train" else "--output-dir", str(bad / "out-run")]
    rc = cli_main(argv)
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert rc == 2, captured
    assert len(lines) == 1, lines
    command = argv[0]
    assert lines[0].startswith(f"empo {command}: error: ") and lines[0].endswith("(EMPO_DEBUG=1 shows the traceback)")
    assert expected in lines[0], lines[0]
    assert not (bad / "out-run").exists() or not any((bad / "out-run").iterdir())


def test_a_real_process_prints_one_line(tmp_path):
    """The console script itself (no pytest capture): one stderr line, exit 2, and EMPO_DEBUG shows the traceback."""
    cmd = [sys.executable, "-m", "empo.cli", "merge", "/nonexistent", str(tmp_path / "out")]
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert proc.returncode == 2 and proc.stderr.strip().splitlines() == [
        "empo merge: error: adapter directory '/nonexistent' does not exist (EMPO_DEBUG=1 shows the traceback)"]
    debug = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, timeout=300,
                           env={**__import__("os").environ, "EMPO_DEBUG": "1"})
    assert debug.returncode != 0 and "Traceback" in debug.stderr

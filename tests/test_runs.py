"""A run directory is what it records: a resume with other defining settings is refused before any model loads,
the record is written only for a fresh or unchanged run, and one process writes a directory at a time."""

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from empo.cli import main as cli_main
from empo.errors import RunDirectoryError
from empo.io import DirectoryLock, DirectoryLockedError, is_main_launcher_process
from empo.recipe import load_recipe
from empo.training.run_dir import (
    NOT_DEFINING,
    RECORD,
    check_run_directory,
    defining_differences,
    prepare_run_directory,
    run_record,
)

ROOT = Path(__file__).resolve().parents[1]
RECIPE = ROOT / "recipes" / "SmolLM2-135M-Instruct" / "empo" / "config_arith_cpu.yaml"


def record_for(out, *flags):
    r = load_recipe(RECIPE, ["--output_dir", str(out), *flags])
    return run_record(r.empo, r.training, r.model), r.empo


def test_record_keeps_the_format_compare_reads(tmp_path):
    from empo.compare.runs import load_run

    record, _ = record_for(tmp_path)
    prepare_run_directory(tmp_path, record)
    run = load_run(tmp_path)
    assert run.method == "empo" and run.seed == record["training"]["seed"]
    assert run.settings["training.learning_rate"] == record["training"]["learning_rate"]
    assert "empo.restart" not in run.settings  # an action of one invocation, not a setting


def test_defining_and_non_defining_settings(tmp_path):
    base, _ = record_for(tmp_path)
    lr, _ = record_for(tmp_path, "--learning_rate", "0.5")
    assert defining_differences(base, lr) == [f"learning_rate: {base['training']['learning_rate']!r} -> 0.5"]
    for flags in (["--max_steps", "31"], ["--logging_steps", "7"], ["--save_steps", "3"], ["--num_threads", "1"],
                  ["--report_to", "none"], ["--stopping_patience", "9"], ["--output_dir", str(tmp_path / "x")]):
        assert defining_differences(base, record_for(tmp_path, *flags)[0]) == [], flags
    for flags in (["--seed", "3"], ["--lora_r", "4"], ["--delta_high", "1.0"], ["--reward_funcs", "random"],
                  ["--model_name_or_path", "other"], ["--num_generations", "2", "--per_device_train_batch_size", "2"]):
        assert defining_differences(base, record_for(tmp_path, *flags)[0]), flags
    # every non-defining key names a real setting (a typo here would silently make it defining)
    from dataclasses import fields

    from trl import GRPOConfig

    from empo.configs import EmpoArguments

    grpo = {f.name for f in fields(GRPOConfig)}
    # kept for older empo records: the collapse monitor that label-free stopping replaced
    empo_fields = {f.name for f in fields(EmpoArguments)}
    assert NOT_DEFINING["empo"] - empo_fields <= {"collapse_early_stop", "collapse_patience"}
    assert NOT_DEFINING["training"] - grpo <= {"overwrite_output_dir", "logging_dir"}  # kept for older TRL records


def test_an_empo_setting_added_since_the_record_counts_as_its_default(tmp_path):
    base, _ = record_for(tmp_path)
    older = json.loads(json.dumps(base))
    del older["empo"]["judge_template"], older["empo"]["clustering"]  # a record written before these existed
    assert defining_differences(older, base) == []
    changed, _ = record_for(tmp_path, "--delta_high", "1.0")
    del older["empo"]["delta_high"]  # absent means the default, so a changed value is still a difference
    assert defining_differences(older, changed) == ["delta_high: None -> 1.0"]
    del older["training"]["learning_rate"]  # absent means GRPOConfig's default (1e-6): the recipe's 1e-4 differs
    assert "learning_rate: 1e-06 -> 0.0001" in defining_differences(older, base)


def test_a_library_setting_added_or_renamed_since_the_record_counts_as_its_default_or_old_name(tmp_path):
    """A store or a checkpoint written under transformers 5.19 is read under 5.25, which added
    ``activation_checkpointing`` (the new name of ``gradient_checkpointing``): not a difference."""
    base, _ = record_for(tmp_path)
    older = json.loads(json.dumps(base))
    for key in ("activation_checkpointing", "activation_checkpointing_kwargs", "use_liger_kernel"):
        older["training"].pop(key, None)
    assert defining_differences(older, base) == []
    newer = json.loads(json.dumps(base))
    newer["training"]["activation_checkpointing"] = not older["training"]["gradient_checkpointing"]
    assert defining_differences(older, newer) == [
        f"activation_checkpointing: {older['training']['gradient_checkpointing']!r} -> "
        f"{newer['training']['activation_checkpointing']!r}"]
    dropped = json.loads(json.dumps(base))
    dropped["training"]["a_setting_a_newer_trl_dropped"] = True  # the installed library cannot say what it did
    assert defining_differences(dropped, base) == ["a_setting_a_newer_trl_dropped: True -> '<unset>'"]
    # compare reads runs the same way: the older run and the newer one are comparable
    from empo.compare.runs import check_comparable, load_run

    runs = []
    for name, record in (("older", older), ("newer", base)):
        record = json.loads(json.dumps(record))
        record["training"]["seed"] = len(runs)
        (tmp_path / name).mkdir()
        (tmp_path / name / "empo_run.json").write_text(json.dumps(record))
        runs.append(load_run(tmp_path / name))
    check_comparable(runs)


def test_resume_unchanged_or_extended_rewrites_the_record(tmp_path):
    first, _ = record_for(tmp_path)
    prepare_run_directory(tmp_path, first)
    (tmp_path / "checkpoint-30").mkdir()
    longer, _ = record_for(tmp_path, "--max_steps", "31")
    prepare_run_directory(tmp_path, longer)
    assert json.loads((tmp_path / RECORD).read_text())["training"]["max_steps"] == 31


def test_changed_setting_is_refused_and_the_record_kept(tmp_path):
    first, _ = record_for(tmp_path)
    prepare_run_directory(tmp_path, first)
    (tmp_path / "checkpoint-30").mkdir()
    before = (tmp_path / RECORD).read_bytes()
    changed, _ = record_for(tmp_path, "--learning_rate", "0.5", "--max_steps", "31")
    with pytest.raises(RunDirectoryError, match=r"learning_rate: 0\.0001 -> 0\.5.*--output_dir.*--restart true"):
        prepare_run_directory(tmp_path, changed)
    assert (tmp_path / RECORD).read_bytes() == before


def test_restart_moves_the_old_run_aside(tmp_path):
    out = tmp_path / "run"
    first, _ = record_for(out)
    prepare_run_directory(out, first)
    (out / "checkpoint-30").mkdir()
    (out / "metrics.jsonl").write_text("{}\n")
    changed, _ = record_for(out, "--learning_rate", "0.5")
    moved = prepare_run_directory(out, changed, restart=True)
    assert moved.parent == tmp_path and moved.name.startswith("run.replaced-")
    assert json.loads((moved / RECORD).read_text())["training"]["learning_rate"] == first["training"]["learning_rate"]
    assert (moved / "checkpoint-30").is_dir() and (moved / "metrics.jsonl").exists()
    assert sorted(p.name for p in out.iterdir()) == [RECORD]
    assert json.loads((out / RECORD).read_text())["training"]["learning_rate"] == 0.5


def test_a_record_without_training_output_is_replaced(tmp_path):
    """A start that failed before its first step (e.g. the model did not load) trained nothing under its record."""
    first, _ = record_for(tmp_path)
    prepare_run_directory(tmp_path, first)
    changed, _ = record_for(tmp_path, "--learning_rate", "0.5")
    prepare_run_directory(tmp_path, changed)
    assert json.loads((tmp_path / RECORD).read_text())["training"]["learning_rate"] == 0.5
    (tmp_path / "samples.jsonl").write_text("{}\n")
    with pytest.raises(RunDirectoryError, match=r"learning_rate: 0\.5 -> 0\.0001"):
        prepare_run_directory(tmp_path, first)


def test_checkpoints_without_a_record_are_refused(tmp_path):
    (tmp_path / "checkpoint-2").mkdir()
    record, _ = record_for(tmp_path)
    with pytest.raises(RunDirectoryError, match="checkpoints but no empo_run.json"):
        check_run_directory(tmp_path, record)


def test_cli_refuses_a_changed_resume_in_one_line_before_the_model_loads(tmp_path, capsys, monkeypatch):
    import empo.model

    def no_load(*args, **kwargs):
        raise AssertionError("the model was loaded")

    monkeypatch.setattr(empo.model, "load_model", no_load)
    monkeypatch.setattr(empo.model, "load_tokenizer", no_load)
    first, _ = record_for(tmp_path)
    prepare_run_directory(tmp_path, first)
    (tmp_path / "metrics.jsonl").write_text('{"step": 1}\n')
    before = (tmp_path / RECORD).read_bytes()
    rc = cli_main(["train", "--learning_rate", "0.5", "--max_steps", "31", "--output_dir", str(tmp_path)])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1, err
    assert err[0].startswith("empo train: error: ") and "learning_rate: 0.0001 -> 0.5" in err[0]
    assert (tmp_path / RECORD).read_bytes() == before


# --- one writer per directory -------------------------------------------------------------------------------------

HOLD = """
import sys, time
from empo.io import DirectoryLock
DirectoryLock(sys.argv[1]).acquire()
print("locked", flush=True)
time.sleep(600)
"""


def hold_lock(directory: Path) -> subprocess.Popen:
    proc = subprocess.Popen([sys.executable, "-c", HOLD, str(directory)], stdout=subprocess.PIPE, text=True,
                            cwd=ROOT)
    assert proc.stdout.readline().strip() == "locked"
    return proc


def test_second_writer_is_refused_and_a_killed_holder_does_not_block(tmp_path):
    holder = hold_lock(tmp_path)
    try:
        with pytest.raises(DirectoryLockedError, match=rf"in use by another run \(pid {holder.pid}\)"):
            DirectoryLock(tmp_path).acquire()
    finally:
        os.kill(holder.pid, signal.SIGKILL)
        holder.wait()
    assert (tmp_path / DirectoryLock.FILENAME).exists()  # the stale file stays...
    with DirectoryLock(tmp_path) as lock:  # ...and does not block
        assert (tmp_path / DirectoryLock.FILENAME).read_text().strip() == str(os.getpid())
        assert lock.path.exists()
    DirectoryLock(tmp_path).acquire().release()  # released: free again


@pytest.mark.parametrize("argv", [["train", "--output_dir"], ["eval", "--output-dir"]], ids=["train", "eval"])
def test_cli_refuses_a_directory_held_by_another_process(tmp_path, capsys, argv):
    holder = hold_lock(tmp_path)
    try:
        rc = cli_main([*argv, str(tmp_path)])
    finally:
        os.kill(holder.pid, signal.SIGKILL)
        holder.wait()
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1, err
    assert f"is in use by another empo {argv[0]} (pid {holder.pid})" in err[0]


def test_only_the_main_launcher_process_locks(monkeypatch):
    for env, main in [({}, True), ({"RANK": "0", "LOCAL_RANK": "0"}, True), ({"RANK": "1", "LOCAL_RANK": "1"}, False),
                      ({"LOCAL_RANK": "1"}, False), ({"RANK": "2", "LOCAL_RANK": "0"}, False)]:
        for var in ("RANK", "LOCAL_RANK"):
            monkeypatch.delenv(var, raising=False)
        for k, v in env.items():
            monkeypatch.setenv(k, v)
        assert is_main_launcher_process() is main, env

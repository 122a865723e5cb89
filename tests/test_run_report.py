"""What `empo train` tells its user: the end-of-run summary, the curves PNG and a readable console."""

import json

import pytest
from transformers import TrainerControl, TrainerState

from empo.training.report import LiveProgress, format_summary, step_rows, summarize_run


def write_metrics(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))


def fake_rows(steps, **fixed):
    return [{"step": s, "reward": 0.1 * s, "empo/entropy_mean": 1.0 - 0.1 * s, "empo/kept_fraction": 0.5,
             "empo/skipped_optimizer_steps": float(s // 4), **fixed} for s in steps]


def test_summary_reads_start_and_end_of_this_invocation(tmp_path):
    rows = fake_rows(range(1, 9))
    rows[3] = {**rows[3], "reward": 99.0}  # step 4 of a killed run, trained again below: the later row wins
    write_metrics(tmp_path / "metrics.jsonl", rows + fake_rows([4]) + [{"step": 8, "train_runtime": 1.0}])
    assert [r["step"] for r in step_rows(tmp_path / "metrics.jsonl")] == list(range(1, 9))
    (tmp_path / "adapter_model.safetensors").write_bytes(b"")
    s = summarize_run(tmp_path, first_step=2, wall_seconds=60.0)
    assert (s["steps"], s["window"], s["skipped_optimizer_steps"]) == (6, 1, 2)
    assert s["start"]["reward"] == pytest.approx(0.3) and s["end"]["reward"] == pytest.approx(0.8)
    assert s["seconds_per_step"] == 10.0
    assert s["start"]["empo/sample_accuracy"] is None  # unlabeled data: no accuracy line
    text = format_summary(s, prompt="boxed-example", dataset="arith")
    assert "steps 2 -> 8 in 1.0 min (10.0 s/step)" in text and "skipped (every group filtered): 2 of 6" in text
    assert "sample acc" not in text and "questions being trained" not in text and "adapter_model.safetensors" in text
    assert f"empo eval --suite eval/suites/cpu_default.yaml --adapter {tmp_path}" in text
    default = format_summary(s, prompt="boxed-example", dataset="arith:add1,sub1,mul1,add2,sub2")  # the CPU default's
    assert f"empo eval --suite eval/suites/cpu_default.yaml --adapter {tmp_path}" in default
    mix = format_summary(s, prompt="boxed-example", dataset="arith:add1,add2")
    assert f"empo eval --benchmarks arith:add1+add2 --n 8 --temperature 0.8 --top-p 1.0 --max-new-tokens 48 " \
           f"--adapter {tmp_path}" in mix
    free = format_summary(s, prompt="freeform", dataset="data/train/facts_freeform.jsonl", clustering="embedding")
    assert "natural_reasoning.yaml" in free and "math500" not in free


def test_interrupted_summary_names_the_checkpoint(tmp_path):
    write_metrics(tmp_path / "metrics.jsonl", fake_rows(range(1, 4), **{"empo/sample_accuracy": 0.5}))
    s = summarize_run(tmp_path, 0, 30.0, interrupted=True, checkpoint=str(tmp_path / "checkpoint-2"))
    text = format_summary(s, prompt="qwen-math", dataset="data/train/x.jsonl")
    assert text.startswith("empo train interrupted: steps 0 -> 3")
    assert f"last checkpoint: {tmp_path}/checkpoint-2; the same command resumes from it" in text
    assert "sample acc" in text and "next:" not in text
    assert "questions being trained" in text and "greedy accuracy" in text  # says what the logged figure is not


def test_live_progress_shows_figures_not_dicts(capsys):
    state, control = TrainerState(), TrainerControl()
    state.max_steps, state.is_world_process_zero = 3, True
    bar = LiveProgress()
    bar.on_train_begin(None, state, control)
    bar.on_log(None, state, control, logs={"loss": 0.1, "reward": 0.25, "empo/entropy_mean": 1.2,
                                           "empo/kept_fraction": 0.5, "completions/mean_length": 20.0})
    assert bar.training_bar.postfix == "reward=0.250, entropy=1.200, kept=0.50"
    bar.on_train_end(None, state, control)
    assert "{'loss'" not in capsys.readouterr().err


def test_empo_train_ends_with_a_summary_and_curves(tmp_path, capsys, tiny):
    from empo.train import main as train_main

    out = tmp_path / "run"
    code = train_main(["--model_name_or_path", tiny, "--num_generations", "4", "--per_device_train_batch_size", "4",
                       "--max_completion_length", "8", "--max_steps", "2", "--dataset_limit", "8",
                       "--save_strategy", "no", "--output_dir", str(out), "--num_threads", "2"])
    captured = capsys.readouterr()
    assert code == 0
    assert "empo train finished: steps 0 -> 2" in captured.out and "kept-group fraction" in captured.out
    assert f"LoRA adapter: {out}/adapter_model.safetensors" in captured.out and "next:" in captured.out
    assert (out / "training_curves.png").stat().st_size > 10_000
    assert "{'loss'" not in captured.out + captured.err  # no raw metrics dict per step on the console

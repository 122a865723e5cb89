"""Label-free stopping on synthetic metric curves: the rule finds the turn from learning to collapse (entropy
saturated, or answers vanishing, or completions shrinking), ignores noise shorter than its patience, chooses the last
checkpoint at or before the turn, and the callback marks, stops or stays quiet as told; the metrics log it reads."""

import json

import pytest
from transformers import TrainerControl, TrainerState, TrainingArguments

from empo.training.callbacks import JsonlMetricsCallback
from empo.training.checkpoints import mark_complete
from empo.training.stopping import StoppingCallback, StoppingRule, chosen_checkpoint, find_turn


def curve(entropy, no_answer=None, length=None, majority=None):
    n = len(entropy)
    no_answer, length = no_answer or [0.05] * n, length or [20.0] * n
    majority = majority or [1 - e / 2 for e in entropy]
    return [{"step": i + 1, "empo/entropy_mean": e, "empo/no_answer_rate": a, "completions/mean_length": ln,
             "empo/majority_ratio_mean": m}
            for i, (e, a, ln, m) in enumerate(zip(entropy, no_answer, length, majority))]


RULE = StoppingRule(window=3, entropy_fraction=0.5, patience=2)


def test_learning_without_saturation_has_no_turn():
    assert find_turn(curve([1.2, 1.1, 1.15, 1.0, 0.9, 0.95, 0.85, 0.8, 0.82, 0.75]), RULE) is None
    assert find_turn(curve([1.2, 1.1]), RULE) is None  # too short for a first window


def test_saturation_turns_at_the_first_step_of_the_streak():
    entropy = [1.2, 1.2, 1.2, 1.0, 0.8, 0.6, 0.4, 0.2, 0.1, 0.1, 0.1]
    turn = find_turn(curve(entropy), RULE)
    # trailing means of 3 from step 3: 1.2, 1.13, 1.0, 0.8, 0.6, 0.4, 0.23, 0.13, 0.1: <= 0.6 from step 7 on
    assert (turn.step, turn.fired_at) == (7, 8) and turn.reason.startswith("saturated")
    assert turn.signals["start"]["empo/entropy_mean"] == pytest.approx(1.2)


def test_a_dip_shorter_than_the_patience_does_not_fire():
    entropy = [1.2, 1.2, 1.2, 0.3, 0.3, 1.2, 1.2, 1.2, 1.2, 1.2]  # one smoothed window at 0.6, then back up
    assert find_turn(curve(entropy), StoppingRule(window=2, entropy_fraction=0.5, patience=2)) is None


def test_vanishing_answers_or_shrinking_completions_turn_too():
    steady = [1.0] * 10
    # no answer, trailing means of 3: 0.05 .. 0.2 (step 6), 0.35 (step 7) >= 0.05 + 0.2
    vanishing = find_turn(curve(steady, no_answer=[0.05] * 5 + [0.5] * 5), RULE)
    assert vanishing.reason.startswith("degenerate: no-answer rate") and vanishing.step == 7
    # length: 20 .. 15.3 (step 6), 10.7 (step 7), 6 (step 8) <= 0.5 x 20
    shrinking = find_turn(curve(steady, length=[20.0] * 5 + [6.0] * 5), RULE)
    assert "completion length" in shrinking.reason and shrinking.step == 8


def test_the_chosen_checkpoint_is_the_last_at_or_before_the_turn(tmp_path):
    for step in (4, 8, 12):
        (tmp_path / f"checkpoint-{step}").mkdir()
        mark_complete(tmp_path / f"checkpoint-{step}")
    (tmp_path / "checkpoint-2").mkdir()  # incomplete (no marker): never chosen
    (tmp_path / "checkpoint-6.partial").mkdir()  # not a checkpoint name
    turn = find_turn(curve([1.2] * 3 + [0.2] * 12), RULE)  # turns at step 5
    assert turn.step == 5 and chosen_checkpoint(tmp_path, turn) == str(tmp_path / "checkpoint-4")
    assert chosen_checkpoint(tmp_path, find_turn(curve([1.2] * 3 + [0.2] * 2), RULE)) is None  # before any save


@pytest.mark.parametrize("mode", ["mark", "stop", "off"])
def test_the_callback_marks_stops_or_stays_quiet(tmp_path, mode):
    args = TrainingArguments(output_dir=str(tmp_path), report_to="none", use_cpu=True)
    state, control = TrainerState(), TrainerControl()
    callback = StoppingCallback(mode, RULE)
    for row in curve([1.2, 1.2, 1.2, 0.2, 0.2, 0.2, 0.2, 0.2]):
        state.global_step = row["step"]
        callback.on_log(args, state, control, logs={k: v for k, v in row.items() if k != "step"})
    marked = tmp_path / "stopping.json"
    assert marked.exists() == (mode != "off") and control.should_training_stop == (mode == "stop")
    if mode != "off":
        record = json.loads(marked.read_text())
        assert record["step"] == callback.turn.step and record["mode"] == mode and record["checkpoint"] is None


def test_metrics_jsonl_with_the_sampling_share(tmp_path):
    args = TrainingArguments(output_dir=str(tmp_path), report_to="none", use_cpu=True)
    state = TrainerState()
    state.global_step = 3
    JsonlMetricsCallback().on_log(args, state, TrainerControl(), logs={"reward": 0.5})
    JsonlMetricsCallback().on_log(args, state, TrainerControl(), logs={"step_time": 4.0, "empo/sampling_seconds": 3.0})
    rows = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert rows[0]["reward"] == 0.5 and rows[1]["empo/sampling_share"] == 0.75


def drive(tmp_path, rows, resume_at: int = 0, mode: str = "mark"):
    """The callback over ``rows`` as a run logs them (metrics.jsonl too), resumed at ``resume_at`` by a new callback
    that starts from the log cut back there, as empo train does; returns (the last callback, stopping.json)."""
    from empo.training.run import cut_logs

    args = TrainingArguments(output_dir=str(tmp_path), report_to="none", use_cpu=True)
    metrics = JsonlMetricsCallback()
    state, control = TrainerState(), TrainerControl()
    callback = StoppingCallback(mode, RULE)
    callback.on_train_begin(args, state, control)
    for row in rows:
        if resume_at and row["step"] == resume_at + 1:  # killed after step resume_at: a new process resumes there
            cut_logs(tmp_path, resume_at)
            state, control = TrainerState(global_step=resume_at), TrainerControl()
            callback = StoppingCallback(mode, RULE)
            callback.on_train_begin(args, state, control)
        state.global_step = row["step"]
        logs = {k: v for k, v in row.items() if k != "step"}
        metrics.on_log(args, state, control, logs=logs)
        callback.on_log(args, state, control, logs=logs)
        if control.should_training_stop:
            break
    marked = tmp_path / "stopping.json"
    return callback, (marked.read_text() if marked.exists() else None)


@pytest.mark.parametrize("resume_at", [2, 6, 8, 10])
def test_a_resumed_run_fires_where_the_uninterrupted_one_fires(tmp_path, resume_at):
    # trailing means of 3 from step 3: 1.2 1.17 1.1 1.0 0.9 0.73 0.57 0.4: <= 0.6 from step 9, so the rule fires at
    # step 10 (the turn at 9) uninterrupted; a resumed rule that took its start from the resumed steps never fired
    rows = curve([1.2, 1.2, 1.2, 1.1, 1.0, 0.9, 0.8, 0.5, 0.4, 0.3, 0.2, 0.2])
    whole, record = drive(tmp_path / "whole", rows)
    assert (whole.turn.step, whole.turn.fired_at) == (9, 10)
    resumed, again = drive(tmp_path / "resumed", rows, resume_at=resume_at)
    assert resumed.turn == whole.turn and again.replace("resumed", "whole") == record


def test_a_run_the_rule_stopped_is_not_trained_again(tmp_path):
    from empo.training.stopping import stopped_run

    rows = curve([1.2, 1.2, 1.2, 1.1, 1.0, 0.9, 0.8, 0.5, 0.4, 0.3, 0.2, 0.2])
    callback, record = drive(tmp_path, rows, mode="stop")
    assert callback.turn.fired_at == 10 and json.loads(record)["mode"] == "stop"
    assert stopped_run(tmp_path, "stop") is None  # no final model yet: a kill before the end resumes and trains
    (tmp_path / "adapter_config.json").write_text("{}")
    assert stopped_run(tmp_path, "stop")["fired_at"] == 10
    assert stopped_run(tmp_path, "mark") is None  # a rerun in mark mode trains on

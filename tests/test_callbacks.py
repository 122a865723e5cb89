import json

from transformers import TrainerControl, TrainerState, TrainingArguments

from empo.training.callbacks import CollapseMonitor, JsonlMetricsCallback


def logs(majority, no_answer, length):
    return {"empo/majority_ratio_mean": majority, "empo/no_answer_rate": no_answer, "completions/mean_length": length}


def feed(monitor, series):
    state, control = TrainerState(), TrainerControl()
    for step, entry in enumerate(series, start=1):
        state.global_step = step
        monitor.on_log(None, state, control, logs=entry)
    return control


def test_collapse_fires_on_unanimity_with_degeneration_only():
    healthy = [logs(0.6, 0.1, 20)] + [logs(1.0, 0.1, 19)] * 5  # unanimous but answering: what EMPO aims for
    m = CollapseMonitor(early_stop=True, patience=3)
    assert not feed(m, healthy).should_training_stop and m.fired_at is None

    vanishing = [logs(0.6, 0.1, 20)] + [logs(1.0, 0.5, 19)] * 3
    m = CollapseMonitor(early_stop=True, patience=3)
    assert feed(m, vanishing).should_training_stop and m.fired_at == 4

    shrinking = [logs(0.6, 0.1, 20)] + [logs(0.97, 0.1, 6)] * 3
    m = CollapseMonitor(early_stop=False, patience=3)
    assert not feed(m, shrinking).should_training_stop and m.fired_at == 4  # warns only


def test_metrics_jsonl(tmp_path):
    args = TrainingArguments(output_dir=str(tmp_path), report_to="none", use_cpu=True)
    state = TrainerState()
    state.global_step = 3
    JsonlMetricsCallback().on_log(args, state, TrainerControl(), logs={"reward": 0.5})
    assert json.loads((tmp_path / "metrics.jsonl").read_text())["reward"] == 0.5

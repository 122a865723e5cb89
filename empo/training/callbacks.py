"""Trainer callbacks: a per-step JSONL metrics log and the collapse monitor."""

from __future__ import annotations

import json
import logging
from pathlib import Path

from transformers import TrainerCallback

logger = logging.getLogger("empo")


class JsonlMetricsCallback(TrainerCallback):
    """Append every logging step's metrics to ``<output_dir>/metrics.jsonl`` (main process only)."""

    def on_log(self, args, state, control, logs=None, **kwargs):
        if not state.is_world_process_zero or not logs:
            return
        path = Path(args.output_dir) / "metrics.jsonl"
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("a", encoding="utf-8") as f:
            f.write(json.dumps({"step": state.global_step, "epoch": state.epoch, **logs}) + "\n")


class CollapseMonitor(TrainerCallback):
    """Watch for the failure modes of label-free RL and warn (or stop, with ``early_stop``).

    It fires after ``patience`` consecutive logging steps where the groups have become (nearly) unanimous
    (mean majority ratio >= ``majority_threshold``) *and* a degeneration sign shows against the first logged
    step: the no-answer rate rose by ``no_answer_rise`` or the mean completion length fell below
    ``length_drop`` of its start. Unanimity alone is what EMPO aims for; unanimity with vanishing answers or
    shrinking reasoning is collapse onto a degenerate consistent output.
    """

    def __init__(self, early_stop: bool = False, patience: int = 3, majority_threshold: float = 0.95,
                 no_answer_rise: float = 0.2, length_drop: float = 0.5):
        self.early_stop, self.patience = early_stop, patience
        self.majority_threshold, self.no_answer_rise, self.length_drop = majority_threshold, no_answer_rise, length_drop
        self.baseline: dict | None = None
        self.strikes = 0
        self.fired_at: int | None = None

    def on_log(self, args, state, control, logs=None, **kwargs):
        logs = logs or {}
        needed = ("empo/majority_ratio_mean", "empo/no_answer_rate", "completions/mean_length")
        if not all(k in logs for k in needed):
            return
        if self.baseline is None:
            self.baseline = {k: logs[k] for k in needed}
            return
        unanimous = logs["empo/majority_ratio_mean"] >= self.majority_threshold
        degenerate = (logs["empo/no_answer_rate"] >= self.baseline["empo/no_answer_rate"] + self.no_answer_rise
                      or logs["completions/mean_length"] <= self.length_drop * self.baseline["completions/mean_length"])
        self.strikes = self.strikes + 1 if unanimous and degenerate else 0
        if self.strikes >= self.patience and self.fired_at is None:
            self.fired_at = state.global_step
            logger.warning("collapse monitor: groups unanimous with degenerate answers for %d logging steps "
                           "(step %d: %s)%s", self.strikes, state.global_step, {k: logs[k] for k in needed},
                           "; stopping" if self.early_stop else "")
            if self.early_stop:
                control.should_training_stop = True

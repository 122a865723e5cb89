"""The per-step JSONL metrics log (label-free stopping: :mod:`empo.training.stopping`)."""

from __future__ import annotations

import json
from pathlib import Path

from transformers import TrainerCallback


class JsonlMetricsCallback(TrainerCallback):
    """Append every logging step's metrics to ``<output_dir>/metrics.jsonl`` (main process only)."""

    def on_log(self, args, state, control, logs=None, **kwargs):
        if not state.is_world_process_zero or not logs:
            return
        path = Path(args.output_dir) / "metrics.jsonl"
        path.parent.mkdir(parents=True, exist_ok=True)
        row = {"step": state.global_step, "epoch": state.epoch, **logs}
        if logs.get("step_time") and "empo/sampling_seconds" in logs:  # dynamic sampling: generation's share
            row["empo/sampling_share"] = logs["empo/sampling_seconds"] / logs["step_time"]
        with path.open("a", encoding="utf-8") as f:
            f.write(json.dumps(row) + "\n")

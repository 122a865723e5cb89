"""Label-free stopping: when a run turns from learning to collapse, seen only from what a label-free run logs.

Label-free rewards sharpen the policy onto its own majority answers. While the groups still disagree, that is what
learning looks like: the semantic entropy of the sampled groups falls and their majority share rises. Once most
groups agree, there is nothing left for a label-free reward to teach, and further steps only entrench the majority,
wrong answers included (the CPU study, eval/results/arith_study_cpu/report.md: majority share 0.45 -> 0.8, with
more wrong majorities than the gold reward ends with); a run can also degenerate outright, its answers vanishing or
its completions shrinking. The rule, on the per-step metrics (``metrics.jsonl``), each smoothed by a trailing mean
over ``window`` logging steps and compared with its first full window:

* **saturated**: the mean semantic entropy of the sampled groups (``empo/entropy_mean``, before any filter) has
  fallen to ``entropy_fraction`` of its start or below;
* **degenerate**: the no-answer rate has risen by ``NO_ANSWER_RISE`` or more, or the mean completion length has
  fallen to ``LENGTH_DROP`` of its start or below.

The rule fires when either holds for ``patience`` consecutive logging steps; the *turn* is the first step of that
streak, and the checkpoint it chooses is the last one saved at or before the turn (none: the starting model). No
gold answer enters the rule. ``EmpoArguments.stopping``: ``mark`` (default) writes ``<output_dir>/stopping.json``
(turn, reason, the chosen checkpoint, the signals) and trains on; ``stop`` also ends training there; ``off``.
The same :func:`find_turn` judges finished runs after the fact (``scripts/study_stopping.py`` compares the chosen
checkpoint's held-out accuracy with the final one and with the best one in hindsight).
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass
from pathlib import Path

from transformers import TrainerCallback

from empo.configs import STOPPING_MODES

logger = logging.getLogger("empo")

ENTROPY, MAJORITY, NO_ANSWER, LENGTH = ("empo/entropy_mean", "empo/majority_ratio_mean", "empo/no_answer_rate",
                                        "completions/mean_length")
NO_ANSWER_RISE = 0.2   # no-answer rate up by this much (absolute) against the start: answers are vanishing
LENGTH_DROP = 0.5      # mean completion length at or below this share of the start: reasoning is collapsing
MODES = STOPPING_MODES  # declared with the recipe's settings (empo.configs)


@dataclass(frozen=True)
class StoppingRule:
    """The rule's settings (``EmpoArguments.stopping_*``)."""

    window: int = 4
    entropy_fraction: float = 0.5
    patience: int = 2


@dataclass(frozen=True)
class Turn:
    step: int            # the first logging step of the streak that fired the rule
    fired_at: int        # the logging step at which it fired (step + patience - 1 logging steps later)
    reason: str          # "saturated" and/or "degenerate", with the figures
    signals: dict        # the smoothed signals at the turn and at the start


def _smoothed(rows: list[dict], key: str, window: int) -> list[float | None]:
    out = []
    for i in range(len(rows)):
        values = [r[key] for r in rows[max(0, i - window + 1):i + 1] if isinstance(r.get(key), (int, float))]
        out.append(sum(values) / len(values) if i >= window - 1 and values else None)
    return out


def find_turn(rows: list[dict], rule: StoppingRule = StoppingRule()) -> Turn | None:
    """The turn from learning to collapse in a run's per-step metric rows (in step order), or None."""
    rows = [r for r in rows if isinstance(r.get(ENTROPY), (int, float))]
    series = {k: _smoothed(rows, k, rule.window) for k in (ENTROPY, MAJORITY, NO_ANSWER, LENGTH)}
    start = rule.window - 1
    if len(rows) <= start:
        return None
    base = {k: v[start] for k, v in series.items()}
    streak = 0
    for i in range(start + 1, len(rows)):
        now = {k: v[i] for k, v in series.items()}
        reasons = []
        if base[ENTROPY] and now[ENTROPY] is not None and now[ENTROPY] <= rule.entropy_fraction * base[ENTROPY]:
            reasons.append(f"saturated: semantic entropy {now[ENTROPY]:.3f} <= {rule.entropy_fraction:g} x "
                           f"{base[ENTROPY]:.3f} at the start")
        if None not in (base[NO_ANSWER], now[NO_ANSWER]) and now[NO_ANSWER] >= base[NO_ANSWER] + NO_ANSWER_RISE:
            reasons.append(f"degenerate: no-answer rate {now[NO_ANSWER]:.3f} >= {base[NO_ANSWER]:.3f} + "
                           f"{NO_ANSWER_RISE:g}")
        if None not in (base[LENGTH], now[LENGTH]) and now[LENGTH] <= LENGTH_DROP * base[LENGTH]:
            reasons.append(f"degenerate: completion length {now[LENGTH]:.1f} <= {LENGTH_DROP:g} x {base[LENGTH]:.1f}")
        streak = streak + 1 if reasons else 0
        if streak >= rule.patience:
            first = i - rule.patience + 1
            return Turn(step=int(rows[first]["step"]), fired_at=int(rows[i]["step"]), reason="; ".join(reasons),
                        signals={"start": base, "turn": {k: v[first] for k, v in series.items()}})
    return None


def chosen_checkpoint(output_dir: str | Path, turn: Turn | None) -> str | None:
    """The last complete checkpoint at or before the turn (None: no turn, or none saved that early)."""
    from empo.training.checkpoints import complete_checkpoints, step_of

    if turn is None:
        return None
    before = [c for c in complete_checkpoints(output_dir) if step_of(c) <= turn.step]
    return str(before[-1]) if before else None


class StoppingCallback(TrainerCallback):
    """Applies :func:`find_turn` at every logging step (every process sees the same metrics, so every process takes
    the same decision); at the first firing, says so, writes ``stopping.json`` and, in ``stop`` mode, ends training.

    A resumed run takes up what the run had seen and decided: the rule's rows are the run's ``metrics.jsonl`` up to the
    step it resumes from (the log is cut back to it first, empo.training.run.cut_logs), so it fires at the step the
    uninterrupted run fires at; a turn already recorded in ``stopping.json`` at or before that step is the run's turn
    (it does not fire again), and a later one -- from steps the resume trains again -- is set aside to be found anew.
    (A run that the rule ended in ``stop`` mode is not trained again at all: :func:`stopped_run`.)

    From the firing on, the chosen checkpoint is the trainer's ``best_model_checkpoint`` (unless a metric_for_best_model
    owns that), so ``save_total_limit`` rotation keeps it; a rotation before the firing may already have removed it
    (the choice is then the last checkpoint left at or before the turn): keep every checkpoint when the choice
    matters."""

    def __init__(self, mode: str = "mark", rule: StoppingRule = StoppingRule()):
        self.mode, self.rule = mode, rule
        self.rows: list[dict] = []
        self.turn: Turn | None = None

    def on_train_begin(self, args, state, control, **kwargs):
        import json

        self.rows, self.turn = [], None
        if self.mode == "off":
            return
        out = Path(args.output_dir)
        metrics = out / "metrics.jsonl"
        if state.global_step and metrics.is_file():
            for line in metrics.read_text(encoding="utf-8").splitlines():
                row = json.loads(line) if line.strip() else {}
                if ENTROPY in row and row.get("step", 0) <= state.global_step:
                    self.rows.append(row)
        record = read_record(out)
        if record is not None and record["fired_at"] <= state.global_step:
            self.turn = Turn(**{k: record[k] for k in ("step", "fired_at", "reason", "signals")})
        elif record is not None and state.is_world_process_zero:  # from steps this run trains again: found anew
            (out / RECORD).unlink()

    def on_log(self, args, state, control, logs=None, **kwargs):
        if self.mode == "off" or self.turn is not None or not logs or ENTROPY not in logs:
            return
        self.rows.append({"step": state.global_step, **logs})
        self.turn = find_turn(self.rows, self.rule)
        if self.turn is None:
            return
        chosen = chosen_checkpoint(args.output_dir, self.turn)
        if args.metric_for_best_model is None and chosen is not None:
            state.best_model_checkpoint = chosen  # protected from save_total_limit rotation
        logger.warning("label-free stopping: the run turned at step %d (%s); chosen checkpoint: %s%s",
                       self.turn.step, self.turn.reason, chosen or "the starting model (none saved that early)",
                       "; stopping" if self.mode == "stop" else "")
        if state.is_world_process_zero:
            from empo.io import atomic_write_json

            atomic_write_json(Path(args.output_dir) / RECORD,
                              {**asdict(self.turn), "checkpoint": chosen, "mode": self.mode, "rule": asdict(self.rule)})
        if self.mode == "stop":
            control.should_training_stop = True


RECORD = "stopping.json"


def read_record(output_dir: str | Path) -> dict | None:
    """The run's ``stopping.json``, or None."""
    import json

    path = Path(output_dir) / RECORD
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None


def stopped_run(output_dir: str | Path, mode: str) -> dict | None:
    """The record of a run that the rule ended (``stop`` mode) and that saved its final model: run again with the same
    command, it has nothing left to train. None otherwise."""
    out = Path(output_dir)
    record = read_record(out)
    final = (out / "adapter_config.json").exists() or (out / "config.json").exists()
    if mode == "stop" and record is not None and record.get("mode") == "stop" and final:
        return record
    return None

"""What a training run tells its user: a live progress bar, the end-of-run summary and ``training_curves.png``.

TRL prints one raw metrics dictionary per logging step; ``LiveProgress`` replaces that with a progress bar carrying
a few live figures (the full metrics stay in ``metrics.jsonl``). When ``empo train`` ends, or is interrupted after a
checkpoint, ``summarize_run`` reads the run's ``metrics.jsonl`` and ``format_summary`` says what happened: steps done
and skipped, kept-group fraction, semantic entropy and (when the data has gold answers, logged only) sampled and
majority accuracy at the start and at the end, wall time, where the adapter is, and what to run next.
"""

from __future__ import annotations

from pathlib import Path

from transformers.trainer_callback import ProgressCallback

from empo.io import read_jsonl
from empo.training.checkpoints import step_of
from empo.training.stopping import read_record

#: metrics.jsonl key -> (short name on the progress bar and in the summary, format)
FIGURES = {
    "reward": ("reward", ".3f"),
    "empo/entropy_mean": ("entropy", ".3f"),
    "empo/kept_fraction": ("kept", ".2f"),
    "empo/sample_accuracy": ("sample acc", ".3f"),
    "empo/majority_accuracy": ("majority acc", ".3f"),
    "empo/no_answer_rate": ("no answer", ".3f"),
    "completions/mean_length": ("length", ".1f"),
}
LIVE = ("reward", "empo/entropy_mean", "empo/kept_fraction")

PANELS = [
    ("reward", "reward (mean)"),
    ("empo/entropy_mean", "semantic entropy (nats)"),
    ("empo/kept_fraction", "kept-group fraction"),
    ("empo/majority_ratio_mean", "majority ratio"),
    (("empo/sample_accuracy", "empo/majority_accuracy"), "accuracy vs gold (logged only)"),
    ("completions/mean_length", "completion length (tokens)"),
]


class LiveProgress(ProgressCallback):
    """transformers' progress bar, with reward, entropy and kept fraction as its postfix instead of printed dicts."""

    def on_log(self, args, state, control, logs=None, **kwargs):
        if not state.is_world_process_zero or self.training_bar is None or not logs:
            return
        live = {FIGURES[k][0]: format(logs[k], FIGURES[k][1]) for k in LIVE if isinstance(logs.get(k), (int, float))}
        if live:
            self.training_bar.set_postfix(live, refresh=True)


def step_rows(metrics_path: Path) -> list[dict]:
    """The per-step rows of a metrics.jsonl, in step order (TRL's end-of-training row has no reward and is left out).

    A run killed after its last checkpoint logged steps that the resumed run trains again; the later row wins.
    """
    if not metrics_path.exists():
        return []
    by_step = {r["step"]: r for r in read_jsonl(metrics_path) if "reward" in r}
    return [by_step[k] for k in sorted(by_step)]


def _mean(rows: list[dict], key: str) -> float | None:
    xs = [float(r[key]) for r in rows if isinstance(r.get(key), (int, float))]
    return sum(xs) / len(xs) if xs else None


def summarize_run(output_dir: str | Path, first_step: int, wall_seconds: float, interrupted: bool = False,
                  checkpoint: str | None = None, preempted: str | None = None) -> dict:
    """Figures of the steps this invocation trained (``first_step`` < step), from ``metrics.jsonl``."""
    out = Path(output_dir)
    rows = [r for r in step_rows(out / "metrics.jsonl") if r["step"] > first_step]
    window = max(1, min(5, len(rows) // 4))  # single steps see 2-4 questions: average a few for start and end
    start, end = rows[:window], rows[-window:]
    steps = rows[-1]["step"] - first_step if rows else 0
    return {
        "output_dir": str(out), "interrupted": interrupted, "preempted": preempted, "checkpoint": checkpoint,
        "first_step": first_step, "last_step": first_step + steps, "steps": steps, "window": window,
        "skipped_optimizer_steps": int(rows[-1].get("empo/skipped_optimizer_steps", 0)) if rows else 0,
        "kept_fraction": _mean(rows, "empo/kept_fraction"),
        "start": {k: _mean(start, k) for k in FIGURES}, "end": {k: _mean(end, k) for k in FIGURES},
        "wall_seconds": wall_seconds, "seconds_per_step": wall_seconds / steps if steps else None,
        "adapter": (out / "adapter_model.safetensors").exists(),
        "stopping": read_record(out),
    }


#: the training sets whose held-out questions eval/suites/cpu_default.yaml holds: the one-digit levels, and the CPU
#: default's mix of them with two-digit addition and subtraction
CPU_DEFAULT_DATASETS = ("arith", "arith:add1,sub1,mul1,add2,sub2")


def next_eval(out: str, prompt: str, dataset: str, clustering: str = "math") -> str:
    """The `empo eval` that measures what the run learned on held-out questions of its own kind."""
    if clustering != "math":
        return f"empo eval --suite eval/suites/natural_reasoning.yaml --adapter {out}       # multiple-choice " \
               "held-out accuracy (free-form runs have no held-out split of their own)"
    if dataset in CPU_DEFAULT_DATASETS:
        return f"empo eval --suite eval/suites/cpu_default.yaml --adapter {out}       # held-out greedy accuracy " \
               "(the league's measure)"
    if dataset.startswith("arith:"):
        levels = "+".join(lv for lv in dataset.partition(":")[2].split(",") if lv)
        return (f"empo eval --benchmarks arith:{levels} --n 8 --temperature 0.8 --top-p 1.0 --max-new-tokens 48 "
                f"--adapter {out}       # held-out questions of the trained levels, greedy and sampled")
    return f"empo eval --benchmarks math500 --prompt {prompt} --adapter {out}       # held-out accuracy"


def format_summary(s: dict, prompt: str, dataset: str, clustering: str = "math") -> str:
    out = s["output_dir"]
    how = f"preempted ({s['preempted']})" if s.get("preempted") else "interrupted" if s["interrupted"] else "finished"
    head = (f"empo train {how}: steps {s['first_step']} -> "
            f"{s['last_step']} in {s['wall_seconds'] / 60:.1f} min"
            + (f" ({s['seconds_per_step']:.1f} s/step)" if s["seconds_per_step"] else ""))
    lines = [head]
    if s["steps"]:
        lines.append(f"  optimizer steps skipped (every group filtered): {s['skipped_optimizer_steps']} of "
                     f"{s['steps']};"
                     f" kept-group fraction {s['kept_fraction']:.2f}")
        lines.append(f"  {'':<13}{'start':>8}{'end':>8}   (mean of the first / last {s['window']} logged steps)")
        for key, (name, fmt) in FIGURES.items():
            a, b = s["start"][key], s["end"][key]
            if a is None and b is None:
                continue
            note = "  (vs the gold column, logged only)" if key in ("empo/sample_accuracy", "empo/majority_accuracy") \
                else ""
            lines.append(f"  {name:<13}{format(a, fmt) if a is not None else '-':>8}"
                         f"{format(b, fmt) if b is not None else '-':>8}{note}")
        if s["end"]["empo/sample_accuracy"] is not None:
            lines += ["  these accuracies are of sampled answers to the questions being trained; a label-free reward "
                      "sharpens sampling onto",
                      "  the model's own majority answer, which lifts them more than held-out greedy accuracy (the "
                      "default run's",
                      "  held-out figures: eval/results/cpu_default_run.md); the eval under 'next' measures the latter"]
    turn = s.get("stopping")
    if turn:
        lines.append(f"  label-free stopping: the run turned at step {turn['step']} (fired at {turn['fired_at']}: "
                     f"{turn['reason']}); chosen checkpoint: {turn['checkpoint'] or 'the starting model'}"
                     + ("; training stopped there" if turn.get("mode") == "stop" else "")
                     + f" ({out}/stopping.json)")
    if s.get("preempted"):
        lines.append(f"  saved: {s['checkpoint'] or 'no checkpoint yet'} (resume from step {s['last_step']}); the same "
                     f"command resumes from it; {out}/preempted.json says so for a scheduler's requeue")
    elif s["interrupted"]:
        lines.append(f"  last checkpoint: {s['checkpoint'] or 'none yet'}; the same command resumes from it")
    elif s["adapter"]:
        lines.append(f"  LoRA adapter: {out}/adapter_model.safetensors (merge: empo merge {out} {out}-merged)")
    else:
        lines.append(f"  model: {out}")
    if (Path(out) / "training_curves.png").exists():
        lines.append(f"  curves: {out}/training_curves.png; per-step metrics: {out}/metrics.jsonl; "
                     f"per-group samples: {out}/samples.jsonl")
    if not s["interrupted"]:
        lines += ["  next:", f"    {next_eval(out, prompt, dataset, clustering)}",
                  f"    empo compare {out} <control runs>      # against the gold-reward, random and format controls "
                  "(one recipe, other reward_funcs; or a sweep: recipes/<model>/sweeps/)"]
    return "\n".join(lines)


#: steps in the trailing mean drawn over each curve (a step sees 2-4 questions: the raw values saw-tooth)
SMOOTHING = 5


def plot_training_curves(metrics_path: str | Path, out: str | Path, title: str = "") -> Path:
    """One PNG of a run's curves: reward, entropy, kept fraction, majority ratio, accuracies, length -- each step's
    value faint, its trailing mean over ``SMOOTHING`` steps drawn over it; label-free stopping's turn and the
    checkpoint it chose (``stopping.json`` beside the metrics) marked on every panel."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = step_rows(Path(metrics_path))
    turn = read_record(Path(metrics_path).parent)
    chosen = step_of(turn["checkpoint"]) if turn and turn.get("checkpoint") else None
    fig, axes = plt.subplots(2, 3, figsize=(13, 6.5))
    for ax, (keys, panel) in zip(axes.flat, PANELS):
        for key in (keys if isinstance(keys, tuple) else (keys,)):
            pts = [(r["step"], float(r[key])) for r in rows if r.get(key) is not None]
            if pts:
                steps, values = zip(*pts)
                line, = ax.plot(steps, values, marker=".", alpha=0.3, linewidth=0.8)
                smooth = [sum(values[max(0, i - SMOOTHING + 1):i + 1]) / len(values[max(0, i - SMOOTHING + 1):i + 1])
                          for i in range(len(values))]
                ax.plot(steps, smooth, color=line.get_color(), label=key.split("/")[-1])
        if turn:
            ax.axvline(turn["step"], color="crimson", linestyle="--", linewidth=1,
                       label="stopping: turn" if ax is axes.flat[0] else None)
            if chosen is not None:
                ax.axvline(chosen, color="seagreen", linestyle=":", linewidth=1.2,
                           label="chosen checkpoint" if ax is axes.flat[0] else None)
        ax.set_title(panel)
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
        if isinstance(keys, tuple) or (turn and ax is axes.flat[0]):
            ax.legend(fontsize=8)
    fig.suptitle(title + (f"  (mean over {SMOOTHING} steps; faint: each step)" if rows else ""))
    fig.tight_layout()
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=90)
    plt.close(fig)
    return out

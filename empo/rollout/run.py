"""``empo rollout``: sample G completions per question, extract the answers, cluster them, entropy and the keep/drop
decision; one JSONL row per question. Re-running on the same output file skips the questions already there."""

from __future__ import annotations

import time
from dataclasses import asdict
from pathlib import Path

from empo.clustering.entropy import keep_group
from empo.clustering.groups import analyse_group
from empo.grading.extract import extract_answer
from empo.io import JsonlAppender, atomic_write_json, read_jsonl
from empo.prompts import PromptConfig, build_messages
from empo.rollout.hf import Sample, SamplingConfig


def analyse_row(question: dict, samples: list[Sample], delta_low: float, delta_high: float | None) -> dict:
    """Everything the later stages need to know about one question's group, as one JSON-able row."""
    answers = [extract_answer(s.text) for s in samples]
    group = analyse_group(answers)
    row = {
        "id": question["id"],
        "problem": question["problem"],
        "level": question.get("level"),
        "completions": [s.text for s in samples],
        "answers": answers,
        "cluster_ids": list(group.cluster_ids),
        "entropy": group.entropy,
        "kept": keep_group(group.entropy, group.size, delta_low, delta_high),
        "num_clusters": group.num_clusters,
        "majority_answer": group.majority_answer,
        "majority_ratio": group.majority_ratio,
        "completion_tokens": [s.num_tokens for s in samples],
        "truncated": [s.truncated for s in samples],
    }
    gold = question.get("answer")
    if gold is not None:  # logged for monitoring only; nothing label-free reads these fields
        row["gold"] = gold
        row["sample_correct"], row["majority_correct"] = group.grade(gold)
    return row


def run_rollout(questions: list[dict], generator, prompt: PromptConfig, sampling: SamplingConfig, output: str | Path,
                batch_size: int = 8, delta_low: float = 0.0, delta_high: float | None = None,
                progress: bool = True) -> dict:
    """Roll out every question not yet in ``output``; return (and write beside it) the summary of all rows."""
    from tqdm.auto import tqdm

    output = Path(output)
    done = {r["id"] for r in read_jsonl(output)} if output.exists() else set()
    todo = [q for q in questions if q["id"] not in done]
    gen_tokens, gen_seconds = 0, 0.0
    with JsonlAppender(output) as sink, tqdm(total=len(questions), initial=len(questions) - len(todo),
                                             desc="rollout", unit="q", disable=not progress) as bar:
        for start in range(0, len(todo), batch_size):
            batch = todo[start:start + batch_size]
            t0 = time.perf_counter()
            groups = generator.generate_groups([build_messages(q["problem"], prompt) for q in batch], sampling,
                                               seed_key=batch[0]["id"])
            gen_seconds += time.perf_counter() - t0
            for q, samples in zip(batch, groups):
                gen_tokens += sum(s.num_tokens for s in samples)
                sink.write(analyse_row(q, samples, delta_low, delta_high))
            bar.update(len(batch))
            if gen_seconds:
                bar.set_postfix(tok_s=f"{gen_tokens / gen_seconds:.0f}")
    ids = {q["id"] for q in questions}
    rows = [r for r in read_jsonl(output) if r["id"] in ids]
    summary = summarize(rows)
    summary["this_run"] = {"questions": len(todo), "generated_tokens": gen_tokens, "generation_seconds": gen_seconds,
                           "tokens_per_second": gen_tokens / gen_seconds if gen_seconds else None}
    summary["sampling"] = asdict(sampling)
    summary["prompt"] = prompt.to_dict()
    atomic_write_json(output.with_suffix(".summary.json"), summary)
    return summary


def summarize(rows: list[dict]) -> dict:
    """Per-level and overall figures: boxed rate, sample vs majority accuracy, entropy, kept share, length."""
    by_level: dict[str, list[dict]] = {}
    for r in rows:
        by_level.setdefault(r.get("level") or "all", []).append(r)
    table = {level: _stats(rs) for level, rs in sorted(by_level.items())}
    if len(by_level) > 1:
        table["all"] = _stats(rows)
    return {"levels": table}


def _stats(rows: list[dict]) -> dict:
    n_samples = sum(len(r["answers"]) for r in rows)
    out = {
        "questions": len(rows),
        "boxed_rate": sum(a is not None for r in rows for a in r["answers"]) / max(n_samples, 1),
        "mean_entropy": sum(r["entropy"] for r in rows) / max(len(rows), 1),
        "kept_fraction": sum(r["kept"] for r in rows) / max(len(rows), 1),
        "mean_tokens": sum(t for r in rows for t in r["completion_tokens"]) / max(n_samples, 1),
    }
    if rows and all("sample_correct" in r for r in rows):
        out["sample_accuracy"] = sum(c for r in rows for c in r["sample_correct"]) / max(n_samples, 1)
        out["majority_accuracy"] = sum(r["majority_correct"] for r in rows) / len(rows)
    return out


def format_summary(summary: dict) -> str:
    """A plain-text table of ``summarize``'s output."""
    cols = ["questions", "boxed_rate", "sample_accuracy", "majority_accuracy", "mean_entropy", "kept_fraction",
            "mean_tokens"]
    head = ["level", "n", "boxed", "sample acc", "maj acc", "H", "kept", "tokens"]
    lines = [" | ".join(f"{h:>10}" for h in head)]
    for level, s in summary["levels"].items():
        cells = [level] + [s.get(c) for c in cols]
        lines.append(" | ".join(f"{c:>10.3f}" if isinstance(c, float) else f"{str(c if c is not None else '-'):>10}"
                                for c in cells))
    return "\n".join(lines)

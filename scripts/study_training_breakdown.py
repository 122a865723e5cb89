"""Why a label-free reward taught what it did: the trained groups of some runs, pooled, graded against gold.

    python scripts/study_training_breakdown.py runs/experiments/arith-study-cpu/empo-seed{0,1,2}

Reads each run's samples.jsonl (one row per group and step, written by `empo train`) and prints markdown tables:
pseudo-label accuracy (the trained group's majority answer is the gold one) by question level and entropy band,
and, per method, how training moved the answer rate, the wrong-majority share and the majority's share of the
group between the first and the last quarter of the steps. Analysis only: gold is read here, never in a reward.
"""

from __future__ import annotations

import argparse
from collections import defaultdict
from pathlib import Path

from empo.clustering.groups import analyse_group
from empo.compare.runs import load_run
from empo.io import read_jsonl
from empo.training.pseudo_labels import latest_group_rows

BANDS = [(0.0, 0.7), (0.7, 1.2), (1.2, float("inf"))]


def level(question_id: str) -> str:
    """'arith-add2-ea705bcc74' -> 'add2'."""
    parts = question_id.split("-")
    return parts[1] if len(parts) > 2 else "?"


def rows_of(run_dir: Path) -> list[dict]:
    return latest_group_rows(read_jsonl(run_dir / "samples.jsonl"))


def by_level_and_entropy(runs: list[Path]) -> str:
    cells: dict[tuple[str, int], list[int]] = defaultdict(lambda: [0, 0])
    for run in runs:
        for row in rows_of(run):
            if not row.get("kept", True) or row.get("gold") is None:
                continue
            _, majority_right = analyse_group(row["answers"]).grade(str(row["gold"]))
            band = next(i for i, (lo, hi) in enumerate(BANDS) if lo <= row["entropy"] < hi)
            cells[(level(row["id"]), band)][0] += majority_right
            cells[(level(row["id"]), band)][1] += 1
    levels = sorted({lv for lv, _ in cells})
    head = " | ".join(f"H in [{lo}, {hi})" if hi != float("inf") else f"H >= {lo}" for lo, hi in BANDS)
    lines = [f"| level | {head} | all |", "|---|" + "---|" * (len(BANDS) + 1)]
    for lv in levels:
        row = [cells.get((lv, b), [0, 0]) for b in range(len(BANDS))]
        total = [sum(c[0] for c in row), sum(c[1] for c in row)]
        lines.append(f"| {lv} | " + " | ".join(_share(c) for c in row + [total]) + " |")
    return "\n".join(lines)


def _share(c: list[int]) -> str:
    return f"{c[0] / c[1]:.2f} ({c[1]})" if c[1] else "-"


def drift(runs: list[Path]) -> str:
    """Per method, first vs last quarter of the steps, over every group (kept or not)."""
    per_method: dict[str, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    for run in runs:
        method = load_run(run).method
        rows = rows_of(run)
        last_step = max(r["step"] for r in rows)
        for row in rows:
            position = row["step"] / (last_step + 1)
            quarter = "first" if position < 0.25 else "last" if position >= 0.75 else None
            if quarter is None or row.get("gold") is None:
                continue
            answers = row["answers"]
            group = analyse_group(answers)  # the majority cluster (no answer is no cluster)
            _, majority_right = group.grade(str(row["gold"]))
            stats = per_method[method]
            stats[f"answered {quarter}"].append(sum(a is not None for a in answers) / len(answers))
            stats[f"wrong majority {quarter}"].append(float(not majority_right))
            stats[f"majority share {quarter}"].append(group.majority_ratio)
    keys = ["answered", "wrong majority", "majority share"]
    lines = ["| method | " + " | ".join(f"{k}: first → last quarter" for k in keys) + " |",
             "|---|" + "---|" * len(keys)]
    for method, stats in sorted(per_method.items()):
        cells = [f"{_mean(stats[k + ' first']):.2f} → {_mean(stats[k + ' last']):.2f}" for k in keys]
        lines.append(f"| {method} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _mean(xs: list[float]) -> float:
    return sum(xs) / len(xs) if xs else float("nan")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", type=Path, help="training output directories")
    parser.add_argument("--by-entropy", nargs="*", type=Path, default=None,
                        help="pool only these runs in the level x entropy table (default: all)")
    args = parser.parse_args()
    pooled = args.by_entropy or args.runs
    print(f"Pseudo-label accuracy of the trained groups, {len(pooled)} runs pooled (groups in brackets):\n")
    print(by_level_and_entropy(pooled))
    print("\nEvery logged group, first vs last quarter of the steps (answered: share of completions with a boxed "
          "answer; wrong majority: the group's majority answer is not the gold one; majority share: its size / G):\n")
    print(drift(args.runs))


if __name__ == "__main__":
    main()

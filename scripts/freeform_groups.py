"""A sample of a free-form run's groups, as the clustering saw them: per group, the question (its id and the
reference answer, logged only), each distinct answer with its cluster and count, and the reward it got -- so a reader
can judge the clusters. Markdown on stdout.

    python scripts/freeform_groups.py runs/freeform-cpu-demo [--groups 12] [--seed 0]
"""

from __future__ import annotations

import argparse
import json
import random
from collections import Counter
from pathlib import Path


def format_group(row: dict) -> list[str]:
    rewards = next(iter(row["rewards"].values())) if row.get("rewards") else [None] * len(row["answers"])
    seen = Counter((a, c) for a, c in zip(row["answers"], row["cluster_ids"]))
    reward_of = {(a, c): r for a, c, r in zip(row["answers"], row["cluster_ids"], rewards)}
    lines = [f"**step {row['step']}, `{row['id']}`** (reference: {row.get('gold')!r}; entropy {row['entropy']:.2f}; "
             f"{'trained' if row['kept'] else 'not trained'})", "",
             "| cluster | answer | count | reward |", "|---|---|---|---|"]
    for (answer, cluster), count in sorted(seen.items(), key=lambda x: (x[0][1], str(x[0][0]))):
        reward = reward_of[(answer, cluster)]
        shown = "*(no answer)*" if answer is None else str(answer).replace("|", "\\|").replace("\n", " ")
        lines.append(f"| {cluster} | {shown} | {count} | {'' if reward is None else f'{reward:.3f}'} |")
    return lines + [""]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("run", help="a free-form training run directory (its samples.jsonl)")
    ap.add_argument("--groups", type=int, default=12)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    rows = [json.loads(line) for line in (Path(args.run) / "samples.jsonl").read_text().splitlines() if line.strip()]
    rows = [r for r in rows if len(set(r["answers"])) > 1]  # a unanimous group shows no clustering
    sample = sorted(random.Random(args.seed).sample(rows, min(args.groups, len(rows))),
                    key=lambda r: (r["step"], r["id"]))
    print(f"{len(sample)} of the run's {len(rows)} groups with more than one distinct answer, drawn with seed "
          f"{args.seed}:\n")
    for row in sample:
        print("\n".join(format_group(row)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

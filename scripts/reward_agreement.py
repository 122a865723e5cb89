"""How often the EMPO reward gives the same GRPO advantages as the gold reward, per kept group of a run.

GRPO normalises rewards within a group, so two rewards that are affine in each other give identical
advantages. When a group's answers form two clusters and the majority is right, EMPO's p(c) is such an
affine map of gold correctness: the label-free update *is* the supervised one. This counts, over the
groups a training run logged in samples.jsonl (arithmetic task), how often that happens, how often the
advantages point the other way (the majority is wrong), and the rest.

    python scripts/reward_agreement.py runs/experiments/arith-controls-cpu/empo-seed*
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np


def normalised(x: np.ndarray) -> np.ndarray | None:
    std = x.std()
    return None if std < 1e-12 else (x - x.mean()) / std


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("runs", nargs="+")
    a = p.parse_args()
    from empo.data import DataSpec, load_questions
    from empo.grading.answers import is_equivalent

    gold = {q["id"]: q["answer"] for split in ("train", "test") for q in load_questions(DataSpec("arith", split=split))}
    counts = {"same": 0, "opposite": 0, "other": 0, "no signal": 0}
    for run in a.runs:
        for line in (Path(run) / "samples.jsonl").read_text().splitlines():
            g = json.loads(line)
            if not g.get("kept", True) or g["id"] not in gold:
                continue
            shares = np.bincount(g["cluster_ids"])[g["cluster_ids"]] / len(g["cluster_ids"])
            empo = np.where([x is not None for x in g["answers"]], shares, 0.0)
            correct = np.array([x is not None and is_equivalent(x, gold[g["id"]]) for x in g["answers"]], float)
            ae, ag = normalised(empo), normalised(correct)
            if ae is None or ag is None:
                counts["no signal"] += 1
            elif np.allclose(ae, ag):
                counts["same"] += 1
            elif np.allclose(ae, -ag):
                counts["opposite"] += 1
            else:
                counts["other"] += 1
    total = sum(counts.values())
    print(f"{total} kept groups: " + ", ".join(f"{k} {v} ({v / max(total, 1):.0%})" for k, v in counts.items()))


if __name__ == "__main__":
    main()

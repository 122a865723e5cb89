"""What a reward taught, measured against the gold answers afterwards (monitoring and analysis only).

Label-free rewards never read the gold column; these functions do, to say what their training signal was
worth. For every trained (kept) group of G completions:

- **pseudo-label accuracy**: is the group's majority answer the gold answer? The majority is the answer EMPO
  and TTRL reinforce, so this is the share of groups where they teach the right thing.
- **sign disagreement**: of the completions where both the method's GRPO advantage and the gold reward's
  advantage are nonzero, the share where the two point in opposite directions (the method pushes a correct
  completion down or a wrong one up). 0 for the gold reward itself, about one half for a random reward.
- **advantage agreement**: the group's advantages are the gold reward's (``same``: GRPO's normalisation makes
  the two updates identical), their negatives (``opposite``: a wrong majority against one right answer),
  something else (``other``), or one of the two carries no signal (``no signal``).

GRPO's advantage is (r - mean r) / (std r + eps) within the group, so signs and the ``same``/``opposite`` tests
only need each signal centred and scaled; the gold reward's is the centred correctness.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

TOLERANCE = 1e-6
AGREEMENT = ("same", "opposite", "other", "no signal")


def _centred(x: Sequence[float]) -> np.ndarray:
    x = np.asarray(x, dtype=float)
    return x - x.mean()


def sign_disagreement(advantages: Sequence[float], correct: Sequence[bool]) -> tuple[int, int]:
    """(completions whose advantage has the opposite sign of the gold reward's, completions where both are nonzero)."""
    a, g = np.asarray(advantages, dtype=float), _centred([float(c) for c in correct])
    both = (np.abs(a) > TOLERANCE) & (np.abs(g) > TOLERANCE)
    return int((a * g < 0)[both].sum()), int(both.sum())


def advantage_agreement(advantages: Sequence[float], correct: Sequence[bool]) -> str:
    """One of ``AGREEMENT``: how the group's advantages relate to the gold reward's (see the module docstring)."""
    a, g = _centred(advantages), _centred([float(c) for c in correct])
    if a.std() < TOLERANCE or g.std() < TOLERANCE:
        return "no signal"
    a, g = a / a.std(), g / g.std()
    if np.allclose(a, g, atol=1e-3):
        return "same"
    if np.allclose(a, -g, atol=1e-3):
        return "opposite"
    return "other"


def group_advantages(row: dict, reward_weights: Sequence[float] | None = None) -> list[float]:
    """A logged group's advantages: TRL's own (``advantages``, logged since they were added to samples.jsonl),
    else the centred weighted reward sum (TRL's default 'sum_then_normalize', up to the positive std scale)."""
    if row.get("advantages") is not None:
        return [float(x) for x in row["advantages"]]
    columns = list(row["rewards"].values())
    weights = list(reward_weights) if reward_weights else [1.0] * len(columns)
    total = np.sum([w * np.asarray(c, dtype=float) for w, c in zip(weights, columns)], axis=0)
    return _centred(total).tolist()


def latest_group_rows(sample_rows) -> list[dict]:
    """One row per (step, group): a step logged twice (a run killed after it and resumed from an earlier checkpoint)
    counts once, as its last log."""
    return list({(row["step"], row["id"]): row for row in sample_rows}.values())


def run_diagnostics(sample_rows, reward_weights: Sequence[float] | None = None) -> dict | None:
    """Pseudo-label accuracy, sign disagreement and advantage agreement over a run's kept groups with a gold answer
    (``samples.jsonl`` rows of ``empo train``, math answers), and the share of steps whose every group was filtered
    (their optimizer step was skipped). A step logged twice (a run killed after it and resumed from an earlier
    checkpoint) counts once, as its last log. None when no kept group has a gold answer."""
    from empo.clustering.groups import analyse_group

    latest = latest_group_rows(sample_rows)
    steps: dict[int, bool] = {}
    groups = majority_right = disagree = pairs = 0
    agreement = dict.fromkeys(AGREEMENT, 0)
    for row in sorted(latest, key=lambda r: r["step"]):
        step = row["step"]
        steps[step] = steps.get(step, False) or row.get("kept", True)
        if not row.get("kept", True) or row.get("gold") is None:
            continue
        correct, majority = analyse_group(row["answers"]).grade(str(row["gold"]))
        advantages = group_advantages(row, reward_weights)
        groups += 1
        majority_right += majority
        d, p = sign_disagreement(advantages, correct)
        disagree, pairs = disagree + d, pairs + p
        agreement[advantage_agreement(advantages, correct)] += 1
    if not groups:
        return None
    return {"groups": len(latest), "kept_groups": groups,
            "skipped_step_share": sum(not kept for kept in steps.values()) / len(steps),
            "pseudo_label_accuracy": majority_right / groups,
            "sign_disagreement": disagree / pairs if pairs else None, "sign_pairs": pairs,
            "agreement": {k: v / groups for k, v in agreement.items()}}

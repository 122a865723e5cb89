"""The statistics of a comparison: per-problem scores of an eval (greedy, avg@n, maj@n), a two-level bootstrap
(seeds, then problems) whose problem draws are shared by every method, so differences are paired; each method's
difference to the base model, the controls that never see correctness and the other label-free rewards, and its
share of the gold reward's gain."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from empo.evaluation.benchmarks import get_benchmark
from empo.evaluation.evaluate import group_samples, maj_scores

#: Methods that never see whether an answer is right (what a label-free method has to beat) and the supervised one.
CONTROLS = ("random", "format")


#: the other label-free rewards every EMPO method is also measured against: TTRL's, Intuitor's, and the field's that
#: empo ships (RENT, EVOL-RL, SCRL; empo.rewards)
RIVALS = ("majority_vote", "self_certainty", "token_entropy", "novelty", "negative_labels")


GOLD = "gold_accuracy"


BOOTSTRAP = 2000


#: metric -> (eval mode it reads, per-problem score from that problem's samples)
METRICS = {"greedy": "greedy", "avg": "sample", "maj": "sample"}


def problem_scores(eval_dir: Path, benchmark: str, metric: str) -> dict[str, float]:
    """Per-problem score of one eval: greedy correctness, the mean correctness of the samples (avg@n), or the
    majority vote over the samples (maj@n, answers clustered as in training)."""
    problems = group_samples(eval_dir / "samples.jsonl").get((benchmark, METRICS[metric]), {})
    if metric == "maj":
        bench = get_benchmark(benchmark)
        return {pid: maj_scores(bench, samples, [len(samples)])[0] for pid, samples in problems.items()}
    return {pid: sum(s["correct"] for s in samples) / len(samples) for pid, samples in problems.items()}


def score_matrix(eval_dirs: list[Path], benchmark: str, metric: str) -> np.ndarray:
    """seeds x problems (problems in one fixed order, those every eval has)."""
    scores = [problem_scores(d, benchmark, metric) for d in eval_dirs]
    ids = sorted(set.intersection(*(set(s) for s in scores)))
    return np.array([[s[i] for i in ids] for s in scores], dtype=float)


def _resample(rng: np.random.Generator, m: np.ndarray, problems: np.ndarray) -> float:
    seeds = rng.integers(0, m.shape[0], size=m.shape[0])
    return float(m[seeds][:, problems].mean())


def bootstrap_methods(matrices: dict[str, np.ndarray], seed: int = 0) -> dict[str, np.ndarray]:
    """Bootstrap means per method, sharing the problem resample across methods (paired by problem)."""
    n_problems = next(iter(matrices.values())).shape[1]
    rng = np.random.default_rng(seed)
    out = {m: np.empty(BOOTSTRAP) for m in matrices}
    for b in range(BOOTSTRAP):
        problems = rng.integers(0, n_problems, size=n_problems)
        for method, m in matrices.items():
            out[method][b] = _resample(rng, m, problems)
    return out


def _interval(x: np.ndarray) -> list[float]:
    lo, hi = np.nanquantile(x, [0.025, 0.975])
    return [float(lo), float(hi)]


def is_empo(method: str) -> bool:
    """'empo' and its filter variants ('empo[no filter]', 'empo[H in (0.0, 1.04)]')."""
    return method == "empo" or method.startswith("empo[")


def compare_block(matrices: dict[str, np.ndarray], base: str = "base", gold: str = GOLD,
                  controls: tuple[str, ...] = CONTROLS) -> dict:
    """Per method: mean and interval; its difference to the base model, to each control and, for an EMPO method, to
    each other label-free reward (``RIVALS``) (paired bootstrap, with the share of draws where it is ahead); and its
    share of the gold reward's gain over the base model, which only means something when that gain's interval is
    above 0 (else ``None``, with the gain)."""
    boot = bootstrap_methods(matrices)
    means = {m: float(x.mean()) for m, x in matrices.items()}
    methods = {m: {"mean": means[m], "ci": _interval(boot[m]), "seeds": int(x.shape[0]), "problems": int(x.shape[1]),
                   "per_seed": [float(v) for v in x.mean(axis=1)]} for m, x in matrices.items()}
    gold_gain = None
    if gold in matrices and base in matrices:
        gain = boot[gold] - boot[base]
        gold_gain = {"mean": means[gold] - means[base], "ci": _interval(gain), "draws": gain}
    for m in matrices:
        if m == base:
            continue
        rivals = RIVALS if is_empo(m) else ()
        for other in (base, *controls, *rivals):
            if other in matrices and other != m:
                d = boot[m] - boot[other]
                methods[m][f"minus_{other}"] = {"mean": means[m] - means[other], "ci": _interval(d),
                                                "p_ahead": float((d > 0).mean())}
        if gold_gain is not None and m not in (gold, base):
            gains = gold_gain["ci"][0] > 0
            with np.errstate(divide="ignore", invalid="ignore"):
                share = (boot[m] - boot[base]) / gold_gain["draws"]
            finite = share[np.isfinite(share)]
            methods[m]["gold_share"] = {"mean": (means[m] - means[base]) / gold_gain["mean"] if gains else None,
                                        "ci": _interval(finite) if gains and finite.size else None}
    out = {"methods": methods}
    if gold_gain is not None:
        out["gold_gain"] = {"mean": gold_gain["mean"], "ci": gold_gain["ci"]}
    return out

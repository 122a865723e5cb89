"""Judge quality and speed on the committed labelled answer pairs (tests/data/answer_pairs.jsonl), before and after
the free-form clustering rule reduces answers to their answering parts and applies the typed guards.

Each pair is decided two ways, the bidirectional rule both times (both directions reach the threshold):

* ``whole``: the judge on the two whole answers (what clustering did before the answering parts);
* ``rule``: what :func:`empo.clustering.freeform.cluster_texts` does -- equal answering parts are the same, a typed
  guard's "different" stands, otherwise the judge on the two answering parts.

Thresholds are calibrated on the pairs of the ``calibration`` split (all pairs of a question share one split): the
lowest threshold whose precision there reaches 0.9 (the highest-F1 one when none does); figures are reported on the
``heldout`` split, overall and per pair type (number, entity, polarity, antonym, paraphrase, span_in_sentence,
one_way, unrelated), at the judge's default threshold and at the calibrated one. Also: directed pairs per second
(CPU, ``--threads`` torch threads, model load excluded) and groups per second of ``cluster_texts`` on one group
per question (its distinct answers); Cohen's kappa of every two judges' heldout decisions (the rule, calibrated).

    python scripts/bench_judges.py            # embedding + verifier -> eval/results/benchmarks/judges_cpu.json
    python scripts/bench_judges.py --judges nli --nli-model DIR --merge   # add a judge to the same report
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

PAIRS = ROOT / "tests" / "data" / "answer_pairs.jsonl"


def prf(pred: list[bool], gold: list[bool]) -> dict:
    tp = sum(p and g for p, g in zip(pred, gold))
    fp = sum(p and not g for p, g in zip(pred, gold))
    fn = sum(g and not p for p, g in zip(pred, gold))
    precision = tp / (tp + fp) if tp + fp else None
    recall = tp / (tp + fn) if tp + fn else None
    f1 = 2 * precision * recall / (precision + recall) if precision and recall else 0.0
    acc = sum(p == g for p, g in zip(pred, gold)) / len(gold)
    return {"n": len(gold), "precision": precision, "recall": recall, "f1": f1, "accuracy": acc,
            "predicted_same": sum(pred)}


def kappa(x: list[bool], y: list[bool]) -> dict:
    n = len(x)
    agree = sum(a == b for a, b in zip(x, y)) / n
    px, py = sum(x) / n, sum(y) / n
    chance = px * py + (1 - px) * (1 - py)
    return {"agreement": agree, "cohen_kappa": (agree - chance) / (1 - chance) if chance < 1 else None}


TARGET_PRECISION = 0.9


def pair_scores(judge, rows: list[dict], rule: bool) -> tuple[list[float], float, int]:
    """Per pair, the score the decision compares with the threshold: the lower of the two directions' judge scores
    (once for a symmetric judge); with ``rule``, on the answering parts, +inf for equal parts and -inf where a guard
    says different. Returns the scores, the judge's seconds and the directed pairs it scored."""
    from empo.clustering.answer_parts import answering_part, same_part
    from empo.clustering.guards import different

    scores: list[float | None] = [None] * len(rows)
    asks: dict[str, list[tuple[int, str, str]]] = {}
    for i, r in enumerate(rows):
        a, b = r["a"], r["b"]
        if rule:
            pa, pb = answering_part(r["question"], a), answering_part(r["question"], b)
            if different(pa, pb, a, b, r["question"]):
                scores[i] = float("-inf")
                continue
            if same_part(pa, pb):
                scores[i] = float("inf")
                continue
            a, b = pa, pb
        asks.setdefault(r["question"], []).append((i, a, b))
    seconds, directed = 0.0, 0
    for q, items in asks.items():  # one call per question: the judge batches as clustering does
        pairs = [(a, b) for _, a, b in items] + ([] if judge.symmetric else [(b, a) for _, a, b in items])
        t = time.perf_counter()
        got = judge.entails(q, pairs)
        seconds += time.perf_counter() - t
        directed += len(pairs)
        n = len(items)
        for k, (i, _, _) in enumerate(items):
            scores[i] = got[k] if judge.symmetric else min(got[k], got[n + k])
    return scores, seconds, directed


def calibrate(scores: list[float], gold: list[bool]) -> float:
    """The lowest threshold whose precision reaches TARGET_PRECISION (the highest-F1 one when none does)."""
    candidates = sorted({s for s in scores if s not in (float("inf"), float("-inf"))})
    if not candidates:
        return 0.5
    stats = [(t, prf([s >= t for s in scores], gold)) for t in candidates]
    good = [t for t, m in stats if m["precision"] is not None and m["precision"] >= TARGET_PRECISION]
    return min(good) if good else max(stats, key=lambda x: x[1]["f1"])[0]


def decisions_report(scores: list[float], rows: list[dict], threshold: float) -> dict:
    pred = [s >= threshold for s in scores]
    out = {"threshold": threshold}
    for split in ("calibration", "heldout"):
        idx = [i for i, r in enumerate(rows) if r["split"] == split]
        out[split] = prf([pred[i] for i in idx], [rows[i]["same_meaning"] for i in idx])
    held = [i for i, r in enumerate(rows) if r["split"] == "heldout"]
    out["heldout_by_type"] = {t: prf([pred[i] for i in held if rows[i]["type"] == t],
                                     [rows[i]["same_meaning"] for i in held if rows[i]["type"] == t])
                              for t in sorted({rows[i]["type"] for i in held})}
    return out


def evaluate(judge, rows: list[dict], cluster_groups: int | None = None) -> tuple[dict, list[bool]]:
    from empo.clustering.freeform import PairCache, cluster_texts

    gold = [r["same_meaning"] for r in rows]
    calibration = [i for i, r in enumerate(rows) if r["split"] == "calibration"]
    judge.entails(rows[0]["question"], [(rows[0]["a"], rows[0]["b"])])  # warm-up, not timed
    default = judge.threshold
    out = {"default_threshold": default}
    for way in ("whole", "rule"):
        if hasattr(judge, "_cache"):
            judge._cache.clear()
        t = time.perf_counter()
        scores, judge_s, directed = pair_scores(judge, rows, rule=way == "rule")
        total = time.perf_counter() - t
        tuned = calibrate([scores[i] for i in calibration], [gold[i] for i in calibration])
        out[way] = {"default": decisions_report(scores, rows, default),
                    "calibrated": decisions_report(scores, rows, tuned),
                    "directed_pairs_judged": directed, "judge_seconds": judge_s,
                    "pairs_decided_per_s": len(rows) / total,
                    "scores": [None if s is None else s if abs(s) != float("inf") else (1e9 if s > 0 else -1e9)
                               for s in scores]}
        if way == "rule":
            pred = [s >= tuned for s in scores]
    # clustering throughput: one group per question (its distinct answers), fresh cache, as in training
    by_q: dict[str, list[int]] = {}
    for i, r in enumerate(rows):
        by_q.setdefault(r["question"], []).append(i)
    groups = [(q, list(dict.fromkeys(t for i in idx for t in (rows[i]["a"], rows[i]["b"])))) for q, idx in by_q.items()]
    groups = groups[:cluster_groups]
    if hasattr(judge, "_cache"):
        judge._cache.clear()  # cold embedding cache: a training group's answers are new texts
    judge.threshold = out["rule"]["calibrated"]["threshold"]
    before = judge.pairs_scored
    t = time.perf_counter()
    for q, answers in groups:
        cluster_texts(q, answers, judge, cache=PairCache())
    cseconds = time.perf_counter() - t
    out["clustering"] = {"groups": len(groups), "answers": sum(len(a) for _, a in groups),
                         "directed_pairs_judged": judge.pairs_scored - before, "seconds": cseconds,
                         "groups_per_s": len(groups) / cseconds}
    judge.threshold = default
    return out, pred


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pairs", default=str(PAIRS))
    ap.add_argument("--judges", default="embedding,verifier", help="comma list of: embedding, verifier, nli")
    ap.add_argument("--embedding-model", default="all-minilm-l6-v2")
    ap.add_argument("--verifier-model", default="smollm2-135m-instruct")
    ap.add_argument("--nli-model", default=None, help="a sequence-classification model with an entailment label")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--cluster-groups", type=int, default=None,
                    help="time cluster_texts on the first N questions' groups only (default: all)")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--note", default="", help="free text stored with the figures (e.g. machine load)")
    ap.add_argument("--output", default=str(ROOT / "eval" / "results" / "benchmarks" / "judges_cpu.json"))
    ap.add_argument("--merge", action="store_true", help="keep the other judges already in --output (their "
                    "figures and decisions; agreement is recomputed over all)")
    args = ap.parse_args(argv)

    import torch

    from empo.clustering.judges import build_judge
    from empo.io import atomic_write_json
    from empo.provenance import provenance

    torch.set_num_threads(args.threads)
    rows = [json.loads(line) for line in Path(args.pairs).read_text().splitlines() if line.strip()]
    models = {"embedding": args.embedding_model, "verifier": args.verifier_model, "nli": args.nli_model}
    names = [j.strip() for j in args.judges.split(",") if j.strip()]
    bad = [j for j in names if j not in models]
    if bad:
        raise SystemExit(f"bench_judges: unknown judge(s) {bad}; known: {sorted(models)}")
    if "nli" in names and not args.nli_model:
        raise SystemExit("bench_judges: --judges nli needs --nli-model")

    report = {"pairs_file": str(Path(args.pairs).relative_to(ROOT)) if Path(args.pairs).resolve().is_relative_to(ROOT)
              else args.pairs, "pairs": len(rows), "same_meaning_pairs": sum(r["same_meaning"] for r in rows),
              "split": {sp: sum(r["split"] == sp for r in rows) for sp in ("calibration", "heldout")},
              "target_precision": TARGET_PRECISION,
              "threads": args.threads, "device": args.device, "note": args.note, "judges": {}, "agreement": {},
              "provenance": provenance(["python", *sys.argv])}
    decisions = {}
    for name in names:
        t = time.perf_counter()
        judge = build_judge(name, models[name], device=args.device)
        load_s = time.perf_counter() - t
        result, pred = evaluate(judge, rows, args.cluster_groups)
        result = {"model": models[name], "load_s": load_s, **result}
        report["judges"][name] = result
        decisions[name] = pred
        for way in ("whole", "rule"):
            for which in ("default", "calibrated"):
                d = result[way][which]
                h = d["heldout"]
                print(f"{name:10s} {way:5s} {which:10s} t={d['threshold']:.3f} heldout P={h['precision']} "
                      f"R={h['recall']} F1={h['f1']:.3f}; {result[way]['pairs_decided_per_s']:.1f} pairs/s",
                      flush=True)
        del judge
    if args.merge and Path(args.output).exists():  # keep the other judges' figures from an earlier run
        old = json.loads(Path(args.output).read_text())
        if old.get("pairs") == len(rows):
            for name, result in old.get("judges", {}).items():
                if name not in report["judges"]:
                    report["judges"][name] = result
                    scores, t = result["rule"]["scores"], result["rule"]["calibrated"]["threshold"]
                    decisions[name] = [s >= t for s in scores]
    held = [i for i, r in enumerate(rows) if r["split"] == "heldout"]
    for x, y in itertools.combinations(sorted(decisions), 2):
        report["agreement"][f"{x}~{y}"] = kappa([decisions[x][i] for i in held], [decisions[y][i] for i in held])
        print(f"agreement {x}~{y}: {report['agreement'][f'{x}~{y}']}")
    atomic_write_json(args.output, report)
    print(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Judge quality and speed on the committed labelled answer pairs (tests/data/answer_pairs.jsonl).

For each judge, every pair is scored in both directions (once for a symmetric judge) and a pair is "same
meaning" when both directions reach the judge's threshold -- the bidirectional rule clustering uses.  Reported:

* precision, recall, F1 and accuracy of "same meaning" at the judge's default threshold, overall and per
  question type (factual, numeric_units, yes_no, definition, one_way);
* the same at the threshold that maximises F1 on this set (in-sample, so optimistic: a calibration hint, not
  a held-out figure);
* directed pairs per second of scoring (CPU, ``--threads`` torch threads, model load excluded), and groups per
  second of :func:`empo.clustering.freeform.cluster_texts` on one group per question of the set (its distinct answers);
* Cohen's kappa and raw agreement of every two judges' decisions.

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


def evaluate(judge, rows: list[dict], cluster_groups: int | None = None) -> dict:
    from empo.clustering.freeform import PairCache, cluster_texts

    gold = [r["same_meaning"] for r in rows]
    judge.entails(rows[0]["question"], [(rows[0]["a"], rows[0]["b"])])  # warm-up, not timed
    t = time.perf_counter()
    by_q: dict[str, list[int]] = {}
    for i, r in enumerate(rows):
        by_q.setdefault(r["question"], []).append(i)
    forward, backward = [0.0] * len(rows), [0.0] * len(rows)
    for q, idx in by_q.items():  # one call per question: the judge batches as clustering does
        directed = [(rows[i]["a"], rows[i]["b"]) for i in idx]
        if not judge.symmetric:
            directed += [(rows[i]["b"], rows[i]["a"]) for i in idx]
        scores = judge.entails(q, directed)
        for k, i in enumerate(idx):
            forward[i] = scores[k]
            backward[i] = scores[k] if judge.symmetric else scores[len(idx) + k]
    seconds = time.perf_counter() - t
    n_directed = len(rows) * (1 if judge.symmetric else 2)
    pair_score = [min(f, b) for f, b in zip(forward, backward)]  # both directions must hold
    pred = [judge.decide(s) for s in pair_score]

    out = {"threshold": judge.threshold, "directed_pairs": n_directed, "seconds": seconds,
           "pairs_per_s": n_directed / seconds, "default_threshold": prf(pred, gold),
           "by_type": {}}
    for typ in sorted({r["type"] for r in rows}):
        idx = [i for i, r in enumerate(rows) if r["type"] == typ]
        out["by_type"][typ] = prf([pred[i] for i in idx], [gold[i] for i in idx])
    best = max(sorted(set(pair_score)), key=lambda t: prf([s >= t for s in pair_score], gold)["f1"])
    out["best_f1_threshold_in_sample"] = {"threshold": best, **prf([s >= best for s in pair_score], gold)}
    out["scores"] = [{"id": r["id"], "a_to_b": f, "b_to_a": b, "same": p}
                     for r, f, b, p in zip(rows, forward, backward, pred)]

    # clustering throughput: one group per question (its distinct answers), fresh cache, as in training
    groups = [(q, list(dict.fromkeys(t for i in idx for t in (rows[i]["a"], rows[i]["b"])))) for q, idx in by_q.items()]
    groups = groups[:cluster_groups]
    if hasattr(judge, "_cache"):
        judge._cache.clear()  # cold embedding cache: a training group's answers are new texts
    before = judge.pairs_scored
    t = time.perf_counter()
    for q, answers in groups:
        cluster_texts(q, answers, judge, cache=PairCache())
    cseconds = time.perf_counter() - t
    out["clustering"] = {"groups": len(groups), "answers": sum(len(a) for _, a in groups),
                         "directed_pairs_judged": judge.pairs_scored - before, "seconds": cseconds,
                         "groups_per_s": len(groups) / cseconds}
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
        d = result["default_threshold"]
        print(f"{name:10s} P={d['precision']} R={d['recall']} F1={d['f1']:.3f} acc={d['accuracy']:.3f} "
              f"{result['pairs_per_s']:.1f} pairs/s (threshold {result['threshold']}); best in-sample F1 "
              f"{result['best_f1_threshold_in_sample']['f1']:.3f} at "
              f"{result['best_f1_threshold_in_sample']['threshold']:.3f}",
              flush=True)
        del judge
    if args.merge and Path(args.output).exists():  # keep the other judges' figures from an earlier run
        old = json.loads(Path(args.output).read_text())
        if old.get("pairs") == len(rows):
            for name, result in old.get("judges", {}).items():
                if name not in report["judges"]:
                    report["judges"][name] = result
                    decisions[name] = [s["same"] for s in result["scores"]]
    for x, y in itertools.combinations(sorted(decisions), 2):
        report["agreement"][f"{x}~{y}"] = kappa(decisions[x], decisions[y])
        print(f"agreement {x}~{y}: {report['agreement'][f'{x}~{y}']}")
    atomic_write_json(args.output, report)
    print(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

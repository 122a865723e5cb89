"""Benchmark EMPO's answer clustering against naive greedy pairwise math-verify.

Builds ``--groups`` groups of ``--group-size`` realistic answers from the benchmark gold answers (seeded): each
group takes one gold answer and fills its slots with the gold itself, equivalent rewrites (``\\frac{a}{b}`` /
``a/b`` / decimals for numbers, ``\\dfrac``, spaces, ``x = `` prefixes, ``\\text{ units}``, ``\\left( \\right)``)
and wrong variants (other golds, off-by-one numbers, a changed digit, an open/closed bracket swap), plus the odd
missing answer.  Then it measures answers per second for

(a) ``empo.clustering.math_clusters.cluster_answers`` (canonical forms, exact numbers, one math-verify task per
    group in a worker process), and
(b) the naive greedy approach: each answer is compared with every existing cluster's first member through
    ``math_verify.verify(math_verify.parse(rep), math_verify.parse(answer))`` -- no caching, main thread,
    math-verify's default timeouts.  Answers are wrapped as ``\\boxed{...}`` for ``parse``, as in a completion.

and reports how often the two partitions disagree (they may: e.g. the naive approach reads ``10\\%`` as 0.1
and compares ``1/3`` with ``0.333333`` at 6 digits, and greedy clustering depends on the order of answers).

    python scripts/bench_clustering.py                 # 512 groups x 16
    python scripts/bench_clustering.py --groups 32     # quick
"""

from __future__ import annotations

import argparse
import json
import logging
import random
import sys
import time
from fractions import Fraction
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from empo.clustering.math_clusters import cluster_answers  # noqa: E402
from empo.grading.answers import canonical_form, numeric_value  # noqa: E402

BENCHMARKS = ["math500", "minerva_math", "olympiadbench", "aime24", "amc23", "gsm8k"]
UNITS = ["cm", "meters", "dollars", "units", "degrees"]


def load_golds(data_dir: Path) -> list[str]:
    golds = []
    for name in BENCHMARKS:
        path = data_dir / "benchmarks" / f"{name}.jsonl"
        if not path.exists():
            continue
        with path.open() as f:
            golds += [json.loads(line)["answer"].strip() for line in f if line.strip()]
    if not golds:
        sys.exit(f"no benchmark files under {data_dir / 'benchmarks'}")
    return [g for g in golds if g]


def _fmt_decimal(v: Fraction) -> str | None:
    """Exact decimal string of v if it terminates within 12 places."""
    q = v.denominator
    for p in (2, 5):
        while q % p == 0:
            q //= p
    if q != 1:
        return None
    for places in range(0, 13):
        scaled = v * 10**places
        if scaled.denominator == 1:
            n = abs(scaled.numerator)
            s = str(n).rjust(places + 1, "0")
            out = s if places == 0 else s[:-places] + "." + s[-places:]
            return ("-" if v < 0 else "") + out
    return None


def numeric_rewrites(g: str, v: Fraction) -> list[str]:
    out = [g, f" {g} ", f"x = {g}", f"{g}\\text{{ {random.choice(UNITS)}}}", f"{g} {random.choice(UNITS)}"]
    if v.denominator == 1:
        n = v.numerator
        out += [str(n), f"{n}.0", f"\\frac{{{2 * n}}}{{2}}", f"{2 * n}/2", f"\\dfrac{{{3 * n}}}{{3}}"]
        if abs(n) >= 1000:
            out.append(f"{n:,}")
    else:
        p, q = v.numerator, v.denominator
        out += [f"\\frac{{{p}}}{{{q}}}", f"\\dfrac{{{p}}}{{{q}}}", f"{p}/{q}", f"\\frac{{{2 * p}}}{{{2 * q}}}"]
        d = _fmt_decimal(v)
        if d is not None:
            out += [d, d + "0"]
        if p < 0:
            out.append(f"-\\frac{{{-p}}}{{{q}}}")
    if "e" in g and "\\" not in g:  # Minerva's 4.4e7
        m, _, e = g.partition("e")
        out += [f"{m}\\times10^{{{int(e)}}}", f"{m} \\cdot 10^{{{int(e)}}}", f"{m} \\times 10^{{{int(e)}}}"]
    return out


def symbolic_rewrites(g: str) -> list[str]:
    out = [g, f" {g} "]
    if "\\frac" in g:
        out.append(g.replace("\\frac", "\\dfrac"))
    if "," in g:
        out.append(g.replace(",", ", ").replace(",  ", ", "))
    if "=" not in g:
        out.append(f"x = {g}")
    if g.startswith("(") and g.endswith(")") and g.count("(") == 1:
        out.append("\\left(" + g[1:-1] + "\\right)")
    if "+" in g:
        out.append(g.replace("+", " + "))
    if "\\sqrt{" in g:
        import re

        out.append(re.sub(r"\\sqrt\{(\w)\}", r"\\sqrt\1", g))
    return out


def wrong_variants(g: str, v: Fraction | None, golds: list[str], rng: random.Random) -> list[str]:
    out = []
    if v is not None:
        if v.denominator == 1:
            out += [str(v.numerator + 1), str(v.numerator - 1), str(2 * v.numerator)]
        else:
            out += [f"\\frac{{{v.numerator + 1}}}{{{v.denominator}}}", str(float(v) + 1)[:8]]
    else:
        digits = [i for i, c in enumerate(g) if c.isdigit()]
        if digits:
            i = rng.choice(digits)
            out.append(g[:i] + str((int(g[i]) + 1) % 10) + g[i + 1 :])
        if g.startswith("(") and g.endswith(")"):
            out.append("[" + g[1:-1] + "]")
        if "+" in g:
            out.append(g.replace("+", "-", 1))
    out += rng.sample(golds, 3)
    return [w for w in out if w.strip() and canonical_form(w) != canonical_form(g)]


def build_groups(golds: list[str], n_groups: int, size: int, seed: int) -> list[list[str | None]]:
    rng = random.Random(seed)
    random.seed(seed)  # the unit choice in numeric_rewrites
    groups = []
    for _ in range(n_groups):
        g = rng.choice(golds)
        v = numeric_value(g)
        right = numeric_rewrites(g, v) if v is not None else symbolic_rewrites(g)
        wrong_pool = wrong_variants(g, v, golds, rng)
        wrong = rng.sample(wrong_pool, k=min(len(wrong_pool), rng.randint(1, 4)))
        n_right = rng.randint(max(1, size // 5), size)
        n_missing = rng.choice([0, 0, 0, 1, 2])
        slots: list[str | None] = []
        for k in range(size):
            if k < n_right:
                slots.append(g if rng.random() < 0.4 else rng.choice(right))
            elif k < size - n_missing or not wrong:
                slots.append(rng.choice(wrong) if wrong else g)
            else:
                slots.append(None)
        rng.shuffle(slots)
        groups.append(slots)
    return groups


def naive_cluster(answers: list[str | None], parse, verify) -> list[int]:
    reps: list[str] = []
    ids: list[int] = []
    next_id = 0
    rep_ids: list[int] = []
    for a in answers:
        if a is None:
            ids.append(next_id)
            next_id += 1
            continue
        for rep, rid in zip(reps, rep_ids):
            if verify(parse("\\boxed{" + rep + "}"), parse("\\boxed{" + a + "}")):
                ids.append(rid)
                break
        else:
            reps.append(a)
            rep_ids.append(next_id)
            ids.append(next_id)
            next_id += 1
    return ids


def partition(ids: list[int]) -> set[frozenset[int]]:
    groups: dict[int, set[int]] = {}
    for i, c in enumerate(ids):
        groups.setdefault(c, set()).add(i)
    return {frozenset(g) for g in groups.values()}


def _fresh_empo_state() -> float:
    """Close the math-verify worker, clear every cache, start a new worker; returns the start-up seconds."""
    from empo.grading import answers as answers_mod
    from empo.grading import mathverify_pool as mvpool

    mvpool.shutdown()
    mvpool._pair_cache.clear()
    mvpool._poisoned.clear()
    answers_mod.canonical_form.cache_clear()
    answers_mod._numeric_from_canonical.cache_clear()
    t = time.perf_counter()
    cluster_answers([r"\sqrt{2}", r"\frac{2}{\sqrt{2}}"])  # starts (and warms up) the worker
    return time.perf_counter() - t


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data-dir", type=Path, default=ROOT / "data")
    ap.add_argument("--groups", type=int, default=512)
    ap.add_argument("--group-size", type=int, default=16)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--warmup-groups", type=int, default=128,
                    help="steady-state rows: first process this many groups of another seed (0: skip those rows)")
    ap.add_argument("--naive-groups", type=int, default=None, help="run the naive baseline on the first N groups only")
    ap.add_argument("--skip-naive", action="store_true")
    ap.add_argument("--examples", type=int, default=3, help="disagreements to print")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.ERROR)

    golds = load_golds(args.data_dir)
    groups = build_groups(golds, args.groups, args.group_size, args.seed)
    n_answers = sum(len(g) for g in groups)
    print(f"{len(groups)} groups x {args.group_size} answers from {len(golds)} gold answers (seed {args.seed})")
    rows: list[tuple[str, int, int, float, str]] = []  # name, groups, answers, seconds, baseline key

    # empo, cold: a fresh worker (start-up excluded) and empty caches
    startup = _fresh_empo_state()
    t = time.perf_counter()
    ours = [cluster_answers(g) for g in groups]
    rows.append(("empo cluster_answers, cold", len(groups), n_answers, time.perf_counter() - t, "cold"))
    # empo, same groups again: every cache hot
    t = time.perf_counter()
    again = [cluster_answers(g) for g in groups]
    rows.append(("empo cluster_answers, repeat (caches hot)", len(groups), n_answers, time.perf_counter() - t,
                 "steady"))
    assert again == ours
    # empo, steady state: fresh worker and caches, then warm-up groups of another seed, then the groups
    if args.warmup_groups > 0:
        warm = build_groups(golds, args.warmup_groups, args.group_size, args.seed + 1000)
        _fresh_empo_state()
        for g in warm:
            cluster_answers(g)
        t = time.perf_counter()
        steady = [cluster_answers(g) for g in groups]
        rows.insert(1, ("empo cluster_answers, steady state", len(groups), n_answers, time.perf_counter() - t,
                        "steady"))
        assert steady == ours

    naive = None
    if not args.skip_naive:
        import math_verify

        from empo.grading.mathverify_pool import _WARM_UP

        k = min(args.naive_groups or len(groups), len(groups))
        n_k = sum(len(g) for g in groups[:k])
        # the same start-up warm-up the worker does, then the first (cold) pass in this process
        naive_cluster(list(_WARM_UP), math_verify.parse, math_verify.verify)
        t = time.perf_counter()
        naive = [naive_cluster(g, math_verify.parse, math_verify.verify) for g in groups[:k]]
        rows.append(("naive greedy parse+verify, cold", k, n_k, time.perf_counter() - t, "base-cold"))
        if args.warmup_groups > 0:
            for g in warm:
                naive_cluster(g, math_verify.parse, math_verify.verify)
            t = time.perf_counter()
            naive_again = [naive_cluster(g, math_verify.parse, math_verify.verify) for g in groups[:k]]
            rows.append(("naive greedy parse+verify, steady state", k, n_k, time.perf_counter() - t, "base-steady"))
            assert naive_again == naive

    print(f"(worker start-up, excluded: {startup:.2f}s)")
    print()
    rates = {key: n / sec for _, _, n, sec, key in rows if key.startswith("base")}
    print(f"{'method':42} {'groups':>7} {'answers':>8} {'seconds':>9} {'answers/s':>11} {'speed-up':>9}")
    for name, g, n, sec, key in rows:
        rate = n / sec if sec > 0 else float("inf")
        base = rates.get("base-" + key) or rates.get("base-cold")
        sp = f"{rate / base:8.1f}x" if base and not key.startswith("base") else ""
        print(f"{name:42} {g:7d} {n:8d} {sec:9.2f} {rate:11.1f} {sp:>9}")
    if rates:
        print("(speed-up: cold vs naive cold; steady state and repeat vs naive steady state)")

    if naive is not None:
        bad = [i for i, ids in enumerate(naive) if partition(ids) != partition(ours[i])]
        print()
        print(f"partitions disagree on {len(bad)} of {len(naive)} groups")
        for i in bad[: args.examples]:
            print(f"  group {i}:")
            print(f"    answers: {groups[i]}")
            print(f"    empo:    {ours[i]}")
            print(f"    naive:   {naive[i]}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

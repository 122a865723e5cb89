"""The cost of one group with pathological answers, with and without the group time budget.

The group is issue #15's: 17 answers, 7 of them pathological (a 5,000-deep ``\\frac``, towers of powers, a
200 KB string, ...), 10 ordinary.  Each configuration runs in a fresh process (fresh math-verify worker and
caches; the worker is started before the clock runs) and reports the wall time of ``cluster_answers`` and the
grading counters (groups over budget, answers that hit a timeout).

    python scripts/bench_group_budget.py                       # timeout 5 s: default budget (10 s) vs none
    python scripts/bench_group_budget.py --timeout 2 --budgets 4,0 --json eval/results/benchmarks/group_budget_cpu.json
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

CHILD = r'''
import json, sys, time
from empo.grading import mathverify_pool as pool
from empo.clustering.math_clusters import GRADING, cluster_answers

timeout, budget = float(sys.argv[1]), sys.argv[2]
budget = None if budget == "default" else float(budget)
pathological = [
    "\\frac{1}{" * 5000 + "2" + "}" * 5000,
    "9^{9^{9^{9^{9}}}}",
    "2^{2^{2^{2^{2^{2^{2^{2}}}}}}}",
    "1+" * 100000 + "1",                                  # 200 KB
    "(10^{10^{10}})!",
    "\\sqrt{" * 3000 + "x" + "}" * 3000,
    "\\frac{x^{9^{9^{9}}}}{x^{9^{9^{9}}-1}}",
]
ordinary = ["\\sqrt{2}", "2^{1/2}", "x+1", "1+x", "\\frac{1}{2}", "0.5", "3", "\\pi", "2\\pi", "\\frac{2\\pi}{2}"]
group = [a for pair in zip(ordinary, pathological) for a in pair] + ordinary[len(pathological):]
assert len(group) == 17
pool.mathverify_equivalent("x+2", "2+x", timeout=10)  # start the worker before the clock
GRADING.take()
t = time.monotonic()
ids = cluster_answers(group, timeout=timeout, group_budget=budget)
elapsed = time.monotonic() - t
print(json.dumps({"seconds": round(elapsed, 2), **GRADING.take(), "clusters": len(set(ids)),
                  "sqrt2_joined": ids[0] == ids[2], "x+1_joined": ids[4] == ids[6]}))
'''


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--timeout", type=float, default=5.0, help="per-comparison timeout (s)")
    ap.add_argument("--budgets", default="default,0",
                    help="group budgets (s) to run; 'default' = 2 x timeout, 0 = none")
    ap.add_argument("--json", default=None, help="write the results here")
    args = ap.parse_args()
    results = []
    for budget in args.budgets.split(","):
        proc = subprocess.run([sys.executable, "-c", CHILD, str(args.timeout), budget], capture_output=True,
                              text=True, cwd=ROOT)
        if proc.returncode != 0:
            print(proc.stderr[-2000:], file=sys.stderr)
            return 1
        row = {"timeout": args.timeout, "group_budget": budget, **json.loads(proc.stdout.strip().splitlines()[-1])}
        results.append(row)
        print(json.dumps(row))
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

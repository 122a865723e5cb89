"""Judge label-free stopping after the fact, on a sweep whose runs kept their checkpoints (issue 24's study).

For every run of the sweep: every saved checkpoint is evaluated with the sweep's greedy block (cached under
``<run>/eval/checkpoint-N/<block>``; the final adapter's eval is compare's, the base model's too) -- or, with
``--store DIR``, read from the sweep's store (:mod:`empo.compare.store`: each bundle keeps the checkpoint evals of the
sweep's ``checkpoint_evals`` blocks, so no run directory is needed); the stopping rule
(:func:`empo.training.stopping.find_turn`, with the run's own settings) is applied to the run's ``metrics.jsonl`` and
chooses the last checkpoint at or before the turn (the starting model if none). Per method, over seeds: held-out
greedy accuracy (both benchmarks of the block pooled) of the chosen checkpoint, the final one and the best one in
hindsight, the chosen minus the final with a two-level bootstrap interval (paired by problem); and, at equal
generated tokens, each method's checkpoint nearest the reference method's total budget.

    python scripts/study_stopping.py --sweep recipes/SmolLM2-135M-Instruct/sweeps/arith_dynamic_cpu.yaml
    python scripts/study_stopping.py --sweep recipes/SmolLM2-135M-Instruct/sweeps/league_cpu.yaml \
        --store eval/results/league_cpu --block checkpoints-greedy --fit-seeds 0

With ``--fit-seeds 0``: the rule's settings (window, entropy fraction, patience) fitted on those seeds' runs and
judged beside the shipped default on the other seeds' runs, which the fit never saw. A store still filling gives the
study of the runs done so far, headed with the ones missing.

Writes ``report.md``, ``stopping.json``, ``accuracy_by_checkpoint.png`` to ``<output_root>/stopping/`` (with a
store: ``<store>/stopping/``).
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import asdict
from pathlib import Path

import numpy as np

from empo.compare.comparison import EvalBlock
from empo.compare.runs import load_run
from empo.compare.stats import _interval, bootstrap_methods, score_matrix
from empo.compare.store import Store
from empo.compare.sweep import Sweep, sweep_states
from empo.io import atomic_write_json, atomic_write_text
from empo.provenance import format_provenance, provenance
from empo.training.report import step_rows
from empo.training.stopping import StoppingRule, find_turn


def evaluate_checkpoints(run, block: EvalBlock, final_step: int, progress: bool) -> dict[int, Path]:
    """step -> eval dir: each saved checkpoint before the final step (evaluated here, cached), the final adapter."""
    from empo.compare.store import checkpoint_eval_dirs
    from empo.compare.sweep import evaluate_checkpoints as evaluate

    evaluate(run.path, run.settings, block, final_step, progress)
    return {**checkpoint_eval_dirs(run.path, block.name), final_step: run.path / "eval" / block.name}


def pooled(eval_dirs: list[Path], benchmarks: list[str]) -> np.ndarray:
    """seeds x problems of greedy correctness, the block's benchmarks side by side."""
    return np.hstack([score_matrix(eval_dirs, b, "greedy") for b in benchmarks])


def cumulative_tokens(rows: list[dict]) -> dict[int, float]:
    total, out = 0.0, {0: 0.0}
    for r in rows:
        total += float(r.get("empo/generated_tokens") or 0.0)
        out[int(r["step"])] = total
    return out


def study(sweep: Sweep, block_name: str, reference: str, progress: bool = True, store: Store | None = None) -> dict:
    from empo.compare.store import checkpoint_eval_dirs

    block = next(b for b in sweep.blocks() if b.name == block_name)
    benchmarks = [b.strip() for b in block.benchmarks.split(",")]
    final_step = sweep.max_steps()
    base_dir = (store.base_path(block.name) if store else Path(sweep.output_root) / "compare" / "base" / block.name)
    done = None if store is None else {s.name for s in sweep_states(sweep, store) if s.state == "done"}
    arms: dict[str, dict] = {}
    missing: list[str] = []
    for method in sweep.arms():
        per_seed = []
        for seed in sweep.seeds:
            name = sweep.run_dir(method, seed).name
            if done is not None and name not in done:  # a store still filling: the runs done so far
                missing.append(name)
                continue
            if store is not None:
                run = load_run(store.run_path(name))
                dirs = {0: base_dir, **checkpoint_eval_dirs(run.path, block.name),
                        final_step: run.path / "eval" / block.name}
            else:
                run = load_run(sweep.run_dir(method, seed))
                dirs = {0: base_dir, **evaluate_checkpoints(run, block, final_step, progress)}
            rows = step_rows(run.path / "metrics.jsonl")
            rule = StoppingRule(run.settings.get("empo.stopping_window", 4),
                                run.settings.get("empo.stopping_entropy_fraction", 0.5),
                                run.settings.get("empo.stopping_patience", 2))
            turn = find_turn(rows, rule)
            chosen = chosen_step(turn, dirs, final_step)
            accuracy = {s: float(pooled([d], benchmarks).mean()) for s, d in dirs.items()}
            per_seed.append({"seed": seed, "turn": None if turn is None else asdict(turn), "chosen": chosen,
                             "accuracy": accuracy, "tokens": cumulative_tokens(rows), "dirs": dirs, "rows": rows})
        if per_seed:
            arms[method.name] = {"method": run.method, "seeds": per_seed}
    return {"arms": arms, "benchmarks": benchmarks, "final_step": final_step, "reference": reference,
            "missing": missing}


# The rules the fit tries: the trailing window, the entropy fraction that counts as saturated, the patience.
RULE_GRID = [StoppingRule(w, f, p) for w in (2, 3, 4, 6, 8) for f in (0.3, 0.4, 0.5, 0.6, 0.7) for p in (1, 2, 3, 4, 6)]


def chosen_step(turn, evaluated_steps, final_step: int) -> int:
    """No turn: the run trains to the end; else the last evaluated step at or before the turn (0: the starting
    model)."""
    return final_step if turn is None else max(s for s in evaluated_steps if s <= turn.step)


def gains(seeds: list[dict], rule: StoppingRule, final_step: int) -> list[float]:
    """Per run: held-out greedy accuracy of the checkpoint ``rule`` chooses minus the final one's."""
    return [s["accuracy"][chosen_step(find_turn(s["rows"], rule), s["accuracy"], final_step)]
            - s["accuracy"][final_step] for s in seeds]


def fit_and_judge(result: dict, fit_seeds: list[int]) -> dict:
    """Fit the rule's settings on the runs of ``fit_seeds`` (every arm; the largest mean chosen − final, ties to the
    shipped default, then to the grid's order), and judge the fitted rule beside the default on the other seeds' runs,
    which the fit never saw."""
    final_step, default = result["final_step"], StoppingRule()
    fit = [s for arm in result["arms"].values() for s in arm["seeds"] if s["seed"] in fit_seeds]
    if not fit:
        raise SystemExit(f"study_stopping: no run of seeds {fit_seeds} to fit on")
    candidates = [default, *(r for r in RULE_GRID if r != default)]
    scored = [(float(np.mean(gains(fit, r, final_step))), r) for r in candidates]
    best_score = max(score for score, _ in scored)
    fitted = next(r for score, r in scored if score == best_score)
    judged = {}
    for name, arm in result["arms"].items():
        seeds = [s for s in arm["seeds"] if s["seed"] not in fit_seeds]
        if seeds:
            judged[name] = {"method": arm["method"], "seeds": [s["seed"] for s in seeds],
                            **{label: gains(seeds, rule, final_step)
                               for label, rule in (("default", default), ("fitted", fitted))}}
    return {"fit_seeds": list(fit_seeds), "fit_runs": len(fit), "default": asdict(default), "fitted": asdict(fitted),
            "fit_gain": {"default": scored[0][0], "fitted": best_score},
            "judged": judged}


def judged_lines(fj: dict) -> list[str]:
    def cell(values: list[float]) -> str:
        return f"{np.mean(values):+.3f} ({', '.join(f'{v:+.3f}' for v in values)})"

    rule = ", ".join(f"{k} {v:g}" for k, v in fj["fitted"].items())
    lines = ["", f"## The rule fitted on seeds {fj['fit_seeds']}, judged on the others", "",
             f"Fitted on the {fj['fit_runs']} runs of seeds {fj['fit_seeds']} (every arm), over "
             f"{len(RULE_GRID)} settings of window x entropy fraction x patience: **{rule}** (mean chosen − final "
             f"there {fj['fit_gain']['fitted']:+.3f}; the shipped default {fj['fit_gain']['default']:+.3f}). Judged "
             "below on runs the fit never saw: held-out greedy of the chosen checkpoint minus the final, mean over "
             "those seeds (per seed).", "",
             "| method | judged seeds | default rule | fitted rule |", "|---|---|---|---|"]
    for a in fj["judged"].values():
        lines.append(f"| {a['method']} | {a['seeds']} | {cell(a['default'])} | {cell(a['fitted'])} |")
    for label in ("default", "fitted"):
        means = [np.mean(a[label]) for a in fj["judged"].values()]
        lines += ["", f"{label.capitalize()} rule on the judged runs: no worse than the final in "
                     f"{sum(m >= 0 for m in means)} of {len(means)} arms, better in {sum(m > 0 for m in means)}; "
                     f"mean over arms {np.mean(means):+.3f}."]
    return lines


def summarise(result: dict) -> dict:
    """Per arm: chosen, final, best in hindsight (means over seeds), chosen - final with its interval; equal tokens."""
    final_step, benchmarks = result["final_step"], result["benchmarks"]
    ref_seeds = result["arms"][result["reference"]]["seeds"]
    budget = float(np.mean([s["tokens"][max(s["tokens"])] for s in ref_seeds]))
    out = {}
    for name, arm in result["arms"].items():
        seeds = arm["seeds"]
        chosen = pooled([s["dirs"][s["chosen"]] for s in seeds], benchmarks)
        final = pooled([s["dirs"][final_step] for s in seeds], benchmarks)
        boot = bootstrap_methods({"chosen": chosen, "final": final})
        best = [max(s["accuracy"].values()) for s in seeds]
        equal = []
        for s in seeds:  # the last evaluated step whose cumulative tokens stay within the reference's budget
            within = [st for st in s["dirs"] if s["tokens"].get(st, np.inf) <= budget * 1.0001]
            equal.append(max(within) if within else 0)
        at_equal = pooled([s["dirs"][st] for s, st in zip(seeds, equal)], benchmarks)
        out[name] = {
            "method": arm["method"], "chosen_steps": [s["chosen"] for s in seeds],
            "turn_steps": [None if s["turn"] is None else s["turn"]["step"] for s in seeds],
            "reasons": [None if s["turn"] is None else s["turn"]["reason"] for s in seeds],
            "chosen": float(chosen.mean()), "final": float(final.mean()), "best": float(np.mean(best)),
            "best_steps": [max(s["accuracy"], key=s["accuracy"].get) for s in seeds],
            "chosen_minus_final": {"mean": float(chosen.mean() - final.mean()),
                                   "ci": _interval(boot["chosen"] - boot["final"])},
            "tokens_total": float(np.mean([s["tokens"][max(s["tokens"])] for s in seeds])),
            "equal_token_steps": equal, "at_equal_tokens": float(at_equal.mean()),
            "accuracy_by_step": {st: float(np.mean([s["accuracy"][st] for s in seeds])) for st in seeds[0]["accuracy"]},
        }
    return {"budget_tokens": budget, "arms": out}


def report(summary: dict, result: dict, meta: dict, fitted: dict | None = None) -> str:
    missing = result["missing"]
    lines = ["# Label-free stopping, judged against gold after the fact", "",
             *([f"**Interim: {len(missing)} runs missing** ({', '.join(missing)}); every figure is over the runs "
                "done so far.", ""] if missing else []),
             f"Held-out greedy accuracy, {' + '.join(result['benchmarks'])} pooled, mean over seeds. 'chosen': the "
             "last checkpoint at or before the turn the stopping rule found in the run's own metrics (0 = the "
             f"starting model); 'final': step {result['final_step']}; 'best': the best evaluated checkpoint in "
             "hindsight (the starting model included). Interval: 95% two-level bootstrap (seeds, then problems), "
             "paired by problem.", "", format_provenance(meta["provenance"]), "",
             "| method | turn (per seed) | chosen step | chosen | final | best (steps) | chosen − final |",
             "|---|---|---|---|---|---|---|"]
    for a in summary["arms"].values():
        d = a["chosen_minus_final"]
        lines.append(f"| {a['method']} | {a['turn_steps']} | {a['chosen_steps']} | {a['chosen']:.3f} | "
                     f"{a['final']:.3f} | {a['best']:.3f} ({a['best_steps']}) | {d['mean']:+.3f} "
                     f"[{d['ci'][0]:+.3f}, {d['ci'][1]:+.3f}] |")
    lines += ["", f"## At equal generated tokens (the `{result['reference']}` arm's budget: "
              f"{summary['budget_tokens']:,.0f} completion tokens per run)", "",
              "| method | tokens per run | step within the budget (per seed) | greedy there | greedy final |",
              "|---|---|---|---|---|"]
    for a in summary["arms"].values():
        lines.append(f"| {a['method']} | {a['tokens_total']:,.0f} | {a['equal_token_steps']} | "
                     f"{a['at_equal_tokens']:.3f} | {a['final']:.3f} |")
    lines += ["", "Why each run turned (the rule's own words, per seed):", ""]
    for a in summary["arms"].values():
        lines.append(f"- {a['method']}: " + "; ".join(r or "no turn" for r in a["reasons"]))
    if fitted is not None:
        lines += judged_lines(fitted)
    lines += ["", "![accuracy by checkpoint](accuracy_by_checkpoint.png)"]
    return "\n".join(lines) + "\n"


def plot(summary: dict, result: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(12, 4.2))
    for i, (name, a) in enumerate(summary["arms"].items()):
        steps = sorted(a["accuracy_by_step"])
        acc = [a["accuracy_by_step"][s] for s in steps]
        tokens = [np.mean([s_["tokens"].get(s, np.nan) for s_ in result["arms"][name]["seeds"]]) for s in steps]
        axes[0].plot(steps, acc, marker=".", color=f"C{i}", label=a["method"])
        axes[1].plot(tokens, acc, marker=".", color=f"C{i}")
        for chosen in a["chosen_steps"]:
            axes[0].plot([chosen], [a["accuracy_by_step"][chosen]], marker="v", color=f"C{i}", markersize=9)
    axes[0].set(xlabel="optimizer step (v: the stopping rule's choice, per seed)", ylabel="held-out greedy accuracy")
    axes[1].set(xlabel="completion tokens generated", ylabel="held-out greedy accuracy")
    for ax in axes:
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--sweep", required=True)
    p.add_argument("--block", default="heldout-greedy", help="the sweep's greedy eval block")
    p.add_argument("--reference", default="empo", help="the arm whose generated tokens set the equal budget")
    p.add_argument("--store", default=None, help="read the runs and their checkpoint evals from this sweep store")
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--fit-seeds", type=int, nargs="+", default=None,
                   help="fit the rule's settings on these seeds' runs and judge it beside the default on the others")
    args = p.parse_args(argv)
    from empo.model import set_threads

    set_threads(args.threads)
    sweep = Sweep.from_yaml(args.sweep)
    store = Store(args.store) if args.store else None
    result = study(sweep, args.block, args.reference, store=store)
    summary = summarise(result)
    fitted = fit_and_judge(result, args.fit_seeds) if args.fit_seeds else None
    out = (store.root if store else Path(sweep.output_root)) / "stopping"
    meta = {"provenance": provenance(["python", "scripts/study_stopping.py", *(argv or sys.argv[1:])])}
    serialisable = {name: {**arm, "seeds": [{k: v for k, v in s.items() if k not in ("dirs", "rows")}
                                            for s in arm["seeds"]]} for name, arm in result["arms"].items()}
    atomic_write_json(out / "stopping.json", {**meta, "summary": summary, "fitted": fitted, "runs": serialisable,
                                              "missing": result["missing"]})
    plot(summary, result, out / "accuracy_by_checkpoint.png")
    atomic_write_text(out / "report.md", report(summary, result, meta, fitted))
    print((out / "report.md").read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())

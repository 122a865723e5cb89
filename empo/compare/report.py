"""What a comparison shows: ``report.md`` (tables with intervals, what each run's reward taught) and the plots
(``accuracy.png``, ``accuracy_vs_pseudo_label.png``, ``training_curves.png``)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from empo.compare.runs import Run
from empo.compare.stats import CONTROLS, RIVALS
from empo.io import read_jsonl
from empo.provenance import format_provenance

CURVES = [("reward", "reward (mean)"), ("empo/entropy_mean", "semantic entropy (nats)"),
          ("empo/kept_fraction", "kept-group fraction"), ("empo/majority_ratio_mean", "majority ratio"),
          ("empo/pseudo_label_accuracy", "pseudo-label accuracy (kept groups)"),
          ("empo/gold_sign_disagreement", "advantage sign vs gold: disagreement"),
          ("completions/mean_length", "completion length (tokens)")]


SMOOTHING = 5  # steps in the trailing mean of the training curves


def curves(runs: list[Run]) -> dict[str, dict[str, list[list[float]]]]:
    """method -> metric -> per-seed series of (step, value) from metrics.jsonl."""
    out: dict[str, dict[str, list]] = {}
    for r in runs:
        path = r.path / "metrics.jsonl"
        rows = [x for x in read_jsonl(path) if "reward" in x] if path.exists() else []
        for key, _ in CURVES:
            series = [[x["step"], float(x[key])] for x in rows if x.get(key) is not None]
            out.setdefault(r.method, {}).setdefault(key, []).append(series)
    return out


def _signed(d: dict | None) -> str:
    return "-" if d is None else f"{d['mean']:+.3f} [{d['ci'][0]:+.3f}, {d['ci'][1]:+.3f}]"


def _share(d: dict | None) -> str:
    if d is None or d["mean"] is None:
        return "-"
    return f"{d['mean']:.0%}" + (f" [{d['ci'][0]:.0%}, {d['ci'][1]:.0%}]" if d["ci"] else "")


def _over_seeds(values: list[float | None], fmt: str = ".3f") -> str:
    values = [v for v in values if v is not None]
    short = ".0f" if fmt == ".0f" else ".2f"
    return "-" if not values else f"{np.mean(values):{fmt}}" + (
        f" ({' '.join(f'{v:{short}}' for v in values)})" if len(values) > 1 else "")


def format_report(comparison: dict, meta: dict) -> str:
    lines = ["# empo compare", "", f"Base model `{meta['base_model']}`; methods differ only in the reward and the "
             f"entropy filter (settings checked; allowed differences: {', '.join(meta['allowed']) or 'none'}).", "",
             "Intervals: 95% two-level bootstrap (seeds, then problems); differences are paired by problem. "
             "'− base', '− random', '− format': the method's mean minus theirs. 'gold share': the share of the "
             "gold reward's gain over base that the method recovers, given only where that gain's interval is "
             "above 0.", "", format_provenance(meta["provenance"]), ""]
    for m, info in comparison["methods"].items():
        lines.append(f"- `{m}`: seeds {info['seeds']}")
    for t in comparison["tables"]:
        present = [c for c in ("base", *CONTROLS) if c in t["methods"]]
        limit = next(b.get("seeds") for b in meta["eval_blocks"] if b["name"] == t["block"])
        seeds = f", seeds {limit} only" if limit is not None else ""
        lines += ["", f"## {t['benchmark']} -- {t['metric']} (eval block `{t['block']}`{seeds})", "",
                  "| method | mean | 95% CI | per seed | " + " | ".join(f"− {c}" for c in present) + " | gold share |",
                  "|---|---|---|---|" + "---|" * len(present) + "---|"]
        for m, s in t["methods"].items():
            lines.append(f"| {m} | {s['mean']:.3f} | [{s['ci'][0]:.3f}, {s['ci'][1]:.3f}] | "
                         + " ".join(f"{v:.3f}" for v in s["per_seed"]) + " | "
                         + " | ".join(_signed(s.get(f"minus_{c}")) for c in present)
                         + f" | {_share(s.get('gold_share'))} |")
        for m, s in t["methods"].items():
            versus = [f"{m} − {r}: {_signed(s[f'minus_{r}'])} (ahead in {s[f'minus_{r}']['p_ahead']:.0%} of draws)"
                      for r in RIVALS if f"minus_{r}" in s]
            if versus:
                lines += ["", "; ".join(versus) + "."]
        if "gold_gain" in t and t["gold_gain"]["ci"][0] <= 0:
            g = t["gold_gain"]
            lines += ["", f"The gold reward did not gain over the base model here ({g['mean']:+.3f}, "
                      f"[{g['ci'][0]:+.3f}, {g['ci'][1]:+.3f}]): no share to recover."]
    lines += ["", "## What the rewards taught (trained groups, graded against the gold answers afterwards)", "",
              "Mean over seeds (per seed in brackets). Pseudo-label accuracy: share of trained groups whose majority "
              "answer is the gold one. Sign disagreement: share of completions whose advantage points against the "
              "gold reward's (both nonzero). Same advantages: share of trained groups whose advantages equal the "
              "gold reward's. Kept: trained groups / all groups sampled. Skipped steps: every group filtered. "
              "Tokens / step: completion tokens generated per optimizer step, every generation round counted; "
              "rounds: generation rounds per step (dynamic sampling).", "",
              "| method | pseudo-label acc | sign disagreement | same advantages | kept | skipped steps "
              "| tokens / step | rounds |",
              "|---|---|---|---|---|---|---|---|"]
    for m, info in comparison["methods"].items():
        runs = [r for r in info["training"] if r is not None]
        cells = [[r["pseudo_label_accuracy"] for r in runs], [r["sign_disagreement"] for r in runs],
                 [r["agreement"]["same"] for r in runs], [r["kept_groups"] / r["groups"] for r in runs],
                 [r["skipped_step_share"] for r in runs]]
        compute = [[r.get("generated_tokens_per_step") for r in runs], [r.get("sampling_rounds") for r in runs]]
        lines.append(f"| {m} | " + " | ".join(_over_seeds(c) for c in cells) + " | "
                     + " | ".join(_over_seeds(c, ".0f" if i == 0 else ".2f") for i, c in enumerate(compute)) + " |")
    lines += ["", "![accuracy](accuracy.png)", "", "![accuracy vs pseudo-label accuracy](accuracy_vs_pseudo_label.png)",
              "", "![training curves](training_curves.png)"]
    return "\n".join(lines) + "\n"


def plot(comparison: dict, curve_data: dict, output: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    tables = comparison["tables"]
    colours = {m: f"C{i}" for i, m in enumerate(["base", *comparison["methods"]])}
    fig, axes = plt.subplots(1, len(tables), figsize=(4.2 * len(tables), 3.8), squeeze=False)
    for ax, t in zip(axes[0], tables):
        names = list(t["methods"])
        means = [t["methods"][m]["mean"] for m in names]
        err = np.array([[m_ - t["methods"][m]["ci"][0], t["methods"][m]["ci"][1] - m_]
                        for m, m_ in zip(names, means)]).T
        ax.bar(names, means, yerr=err, capsize=4, color=[colours[m] for m in names])
        for i, m in enumerate(names):
            ax.scatter([i] * len(t["methods"][m]["per_seed"]), t["methods"][m]["per_seed"], color="k", s=8, zorder=3)
        ax.set_title(f"{t['benchmark']}: {t['metric']}", fontsize=9)
        ax.set_ylim(0, 1)
        ax.tick_params(axis="x", rotation=30, labelsize=8)
    fig.tight_layout()
    fig.savefig(output / "accuracy.png", dpi=90)
    plt.close(fig)

    # final accuracy against pseudo-label accuracy, a panel per metric of the first block's pooled benchmarks (else
    # its first benchmark)
    block = [t for t in tables if t["block"] == tables[0]["block"]]
    focus = next((t["benchmark"] for t in block if " + " in t["benchmark"]), block[0]["benchmark"])
    first = [t for t in block if t["benchmark"] == focus]
    fig, axes = plt.subplots(1, len(first), figsize=(4.4 * len(first), 4.0), squeeze=False)
    for ax, t in zip(axes[0], first):
        ax.axhline(t["methods"]["base"]["mean"], color=colours["base"], ls="--", lw=1, label="base")
        for m, info in comparison["methods"].items():
            if m not in t["methods"]:
                continue
            training = dict(zip(info["seeds"], info["training"]))
            points = [(training[seed]["pseudo_label_accuracy"], acc)
                      for seed, acc in zip(t["seeds"][m], t["methods"][m]["per_seed"]) if training[seed] is not None]
            if points:
                x, y = zip(*points)
                ax.scatter(x, y, color=colours[m], s=18, alpha=0.6)
                ax.scatter([np.mean(x)], [np.mean(y)], color=colours[m], s=70, marker="D", edgecolor="k", label=m)
        ax.set_xlabel("pseudo-label accuracy (trained groups)")
        ax.set_ylabel(f"held-out {t['metric']}")
        ax.set_title(t["benchmark"], fontsize=9)
        ax.grid(alpha=0.3)
    axes[0][0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(output / "accuracy_vs_pseudo_label.png", dpi=90)
    plt.close(fig)

    columns = 4
    rows = -(-len(CURVES) // columns)
    fig, axes = plt.subplots(rows, columns, figsize=(4 * columns, 3.2 * rows), squeeze=False)
    for ax, (key, title) in zip(axes.flat, CURVES):
        for method, metrics in sorted(curve_data.items()):
            series = [dict((int(s), v) for s, v in run) for run in metrics.get(key, []) if run]
            steps = sorted(set.intersection(*(set(s) for s in series))) if series else []
            if not steps:
                continue
            values = _trailing_mean(np.array([[s[x] for x in steps] for s in series]), SMOOTHING)
            ax.plot(steps, values.mean(axis=0), color=colours.get(method), label=method)
            ax.fill_between(steps, values.min(axis=0), values.max(axis=0), color=colours.get(method), alpha=0.2)
        ax.set_title(title, fontsize=9)
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[len(CURVES):]:
        ax.axis("off")
    axes[0][0].legend(fontsize=7)
    fig.suptitle(f"training curves: mean over seeds of the trailing {SMOOTHING}-step mean, band = min-max over seeds",
                 fontsize=9)
    fig.tight_layout()
    fig.savefig(output / "training_curves.png", dpi=90)
    plt.close(fig)


def _trailing_mean(values: np.ndarray, window: int) -> np.ndarray:
    """Each row's mean over the last ``window`` points (fewer at the start): per-step values over a couple of
    groups are too noisy to read."""
    cumulative = np.cumsum(values, axis=1)
    shifted = np.concatenate([np.zeros((values.shape[0], window)), cumulative[:, :-window]], axis=1)
    shifted = shifted[:, :values.shape[1]]
    counts = np.minimum(np.arange(1, values.shape[1] + 1), window)
    return (cumulative - shifted) / counts

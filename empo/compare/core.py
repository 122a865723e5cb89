"""``empo compare``: runs that differ only in the reward, evaluated side by side with honest statistics.

Each run directory is an ``empo train`` output (``empo_run.json``, ``metrics.jsonl``, ``samples.jsonl``, the final
adapter). A run's *method* is its ``reward_funcs`` (with ``reward_weights``) and its entropy filter (``empo``,
``empo[no filter]``, ``empo[H in (0.5, 2.0)]``: the paper's ablation is a method, not a nuisance setting); its
*replicate* is its seed (``seed``, ``random_reward_seed``). Runs that differ in any other setting are refused,
with the differences listed, unless those keys are allowed explicitly.

Every final adapter, and the base model, is evaluated with ``empo eval`` (cached and resumable under
``<run>/eval/<block>`` and ``<output>/base/<block>``), with the prompt the runs were trained with.
Metrics: greedy accuracy, and with sampled completions avg@n and maj@n (majority vote over the n samples, the
training clustering). Intervals are 95% percentile intervals of a two-level bootstrap: seeds resampled with
replacement, then problems; so they cover both seed-to-seed and problem-to-problem variation. With one seed they
are problem intervals only. Every method is set against the base model (its gain), the controls that never see
the answer's correctness (``random``, ``format``: a label-free method must beat them) and, where the gold reward
gained, the share of that gain it recovers; the differences are paired by problem.

What each run was taught is read from its ``samples.jsonl`` against the gold answers (``empo.training.pseudo_labels``):
pseudo-label accuracy (share of trained groups whose majority answer was right), the share of completions whose
advantage had the opposite sign of the gold reward's, and how often its advantages were exactly the gold reward's.

Outputs in ``--output``: ``report.md``, ``comparison.json``, ``accuracy.png`` (held-out accuracy per
method with error bars), ``accuracy_vs_pseudo_label.png`` (final accuracy against pseudo-label accuracy, one
point per run) and ``training_curves.png`` (reward, semantic entropy, kept fraction, majority ratio, pseudo-label
accuracy, sign disagreement and completion length, mean over seeds with the min-max band).
"""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import MISSING, asdict, dataclass, field, fields
from pathlib import Path

import numpy as np

from empo.evaluation.benchmarks import get_benchmark
from empo.errors import CompareError, ConfigError
from empo.evaluation.evaluate import EvalConfig, group_samples, maj_scores, run_eval
from empo.io import atomic_write_json, atomic_write_text, read_jsonl
from empo.provenance import format_provenance, provenance

#: Settings that name or place a run rather than change what it learns.
BOOKKEEPING = {"training.output_dir", "training.logging_dir", "training.run_name", "training.resume_from_checkpoint",
               "training.hub_model_id", "training.overwrite_output_dir", "empo.num_threads"}
#: The replicate variable.
SEED_KEYS = {"training.seed", "training.data_seed", "empo.random_reward_seed"}
#: The intended variable: the reward, and the entropy filter (switching it off is the paper's ablation).
METHOD_KEYS = {"empo.reward_funcs", "training.reward_weights", "empo.entropy_filter", "empo.delta_low",
               "empo.delta_high"}
#: Methods that never see whether an answer is right (what a label-free method has to beat) and the supervised one.
CONTROLS = ("random", "format")
#: the other label-free rewards every EMPO method is also measured against (TTRL's and Intuitor's)
RIVALS = ("majority_vote", "self_certainty")
GOLD = "gold_accuracy"

CURVES = [("reward", "reward (mean)"), ("empo/entropy_mean", "semantic entropy (nats)"),
          ("empo/kept_fraction", "kept-group fraction"), ("empo/majority_ratio_mean", "majority ratio"),
          ("empo/pseudo_label_accuracy", "pseudo-label accuracy (kept groups)"),
          ("empo/gold_sign_disagreement", "advantage sign vs gold: disagreement"),
          ("completions/mean_length", "completion length (tokens)")]
BOOTSTRAP = 2000
SMOOTHING = 5  # steps in the trailing mean of the training curves


@dataclass
class Run:
    path: Path
    method: str
    seed: int
    settings: dict

    @property
    def name(self) -> str:
        return self.path.name


def load_run(path: str | Path) -> Run:
    path = Path(path)
    config = path / "empo_run.json"
    if not config.is_file():
        raise CompareError(f"'{path}' is not an empo training run (no empo_run.json)")
    raw = json.loads(config.read_text(encoding="utf-8"))
    settings = {f"{section}.{k}": v for section in ("empo", "model", "training") for k, v in raw[section].items()}
    return Run(path, method_name(raw), int(raw["training"]["seed"]), settings)


def method_name(record: dict) -> str:
    """``empo``, ``empo+format@1.0,0.5``, ``empo[no filter]``, ``empo[H in (0.2, 1.5)]``: the reward(s), then the
    entropy filter when it is not the default (off, or another band)."""
    from empo.configs import EmpoArguments

    empo, defaults = record["empo"], EmpoArguments()
    name = "+".join(empo["reward_funcs"])
    if record["training"].get("reward_weights"):
        name += "@" + ",".join(str(w) for w in record["training"]["reward_weights"])
    if not empo.get("entropy_filter", defaults.entropy_filter):
        return name + "[no filter]"
    band = (empo.get("delta_low", defaults.delta_low), empo.get("delta_high", defaults.delta_high))
    if band != (defaults.delta_low, defaults.delta_high):
        return name + f"[H in ({band[0]}, {'log G' if band[1] is None else band[1]})]"
    return name


def setting_differences(runs: list[Run], allow: set[str] = frozenset()) -> dict[str, dict[str, object]]:
    """Settings (other than method, seed and bookkeeping) whose value is not the same in every run."""
    ignored = BOOKKEEPING | SEED_KEYS | METHOD_KEYS | set(allow)
    keys = sorted({k for r in runs for k in r.settings} - ignored)
    diffs = {}
    for k in keys:
        values = {r.name: r.settings.get(k) for r in runs}
        if len({json.dumps(v, sort_keys=True) for v in values.values()}) > 1:
            diffs[k] = values
    return diffs


def check_comparable(runs: list[Run], allow: set[str] = frozenset()) -> None:
    if not runs:
        raise CompareError("no runs to compare")
    seen = {}
    for r in runs:
        if (r.method, r.seed) in seen:
            raise CompareError(f"runs '{seen[(r.method, r.seed)]}' and '{r.path}' are the same method and seed "
                               f"({r.method}, seed {r.seed})")
        seen[(r.method, r.seed)] = r.path
    diffs = setting_differences(runs, allow)
    if diffs:
        lines = [f"  {k}: " + ", ".join(f"{run}={v!r}" for run, v in values.items()) for k, values in diffs.items()]
        raise CompareError("the runs differ in more than the reward and the seed:\n" + "\n".join(lines)
                           + "\n(pass --allow-diff " + ",".join(diffs) + " to compare them anyway)")


# --------------------------------------------------------------------------------------------------
# Evaluation and statistics
# --------------------------------------------------------------------------------------------------

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


# --------------------------------------------------------------------------------------------------
# The comparison
# --------------------------------------------------------------------------------------------------

@dataclass
class EvalBlock:
    """One evaluation applied to every run and the base model (e.g. 'arith' sampled, 'gsm8k' greedy)."""

    name: str = field(metadata={"help": "Folder name of this block's evals."})
    benchmarks: str = field(default="arith", metadata={"help": "Comma-separated benchmark names."})
    data_dir: str | None = field(default=None, metadata={
        "help": "Benchmark directory (default: the repository's data/benchmarks; 'hub': the hub)."})
    limit: int | None = field(default=None, metadata={"help": "First N problems of each benchmark."})
    greedy: bool = field(default=True, metadata={"help": "Greedy pass."})
    n: int = field(default=0, metadata={"help": "Sampled completions per problem."})
    temperature: float = field(default=0.8, metadata={"help": "Temperature of the sampled pass."})
    top_p: float = field(default=1.0, metadata={"help": "Top-p of the sampled pass."})
    max_new_tokens: int = field(default=256, metadata={"help": "Completion length cap."})
    seed: int = field(default=0, metadata={"help": "Sampling seed of the eval."})
    batch_size: int = field(default=16, metadata={"help": "Prompts per generate call."})
    seeds: list[int] | None = field(default=None, metadata={
        "help": "Evaluate only the runs of these seeds (a costly block, e.g. many samples, on fewer replicates); "
                "default: every run."})

    def includes(self, run: "Run") -> bool:
        return self.seeds is None or run.seed in self.seeds

    def modes(self) -> list[str]:
        return (["greedy"] if self.greedy else []) + (["sample"] if self.n else [])

    def metrics(self) -> list[tuple[str, str]]:
        """(metric key of ``METRICS``, its title) for each table this block gives."""
        sampled = f"@{self.n} (T={self.temperature})"
        return ([("greedy", "greedy accuracy")] if self.greedy else []) + \
            ([("avg", "avg" + sampled), ("maj", "maj" + sampled)] if self.n else [])


def eval_dirs(runs: list[Run], blocks: list[EvalBlock], output: Path) -> dict[str, dict[str, Path]]:
    """Where each target's eval of each block lives: ``<output>/base/<block>``, ``<run>/eval/<block>`` (a block
    limited to some seeds has no dir for the other runs)."""
    dirs = {"base": {b.name: output / "base" / b.name for b in blocks}}
    for r in runs:
        dirs[r.name] = {b.name: r.path / "eval" / b.name for b in blocks if b.includes(r)}
    return dirs


def evaluate_all(runs: list[Run], blocks: list[EvalBlock], output: Path, progress: bool = True) -> dict:
    """Evaluate the base model and every run's final adapter for every block (cached); return eval dirs."""
    from empo.model import load_model, load_tokenizer
    from empo.rollout.hf import HFGenerator

    base_model = runs[0].settings["model.model_name_or_path"]
    prompt = runs[0].settings["empo.prompt"]
    dtype = runs[0].settings.get("model.dtype") or "float32"
    tokenizer = load_tokenizer(base_model)
    adapters = {"base": None, **{r.name: r.path for r in runs}}
    blocks_by_name = {b.name: b for b in blocks}
    dirs = eval_dirs(runs, blocks, output)
    for label, block_dirs in dirs.items():
        adapter = adapters[label]
        if adapter is not None and not (adapter / "adapter_config.json").exists():
            raise CompareError(f"run '{adapter}' has no final adapter (adapter_config.json): is it finished?")
        generator = None
        for name, out in block_dirs.items():
            fields = {k: v for k, v in asdict(blocks_by_name[name]).items() if k not in ("name", "seeds")}
            config = EvalConfig(model=base_model, adapter=str(adapter) if adapter else None, prompt=prompt,
                                dtype=dtype, output_dir=str(out), **fields)
            if generator is None:
                generator = HFGenerator(load_model(base_model, dtype=dtype, adapter=config.adapter), tokenizer)
            if progress:
                print(f"[empo] compare: evaluating {label} on {name}", file=sys.stderr)
            run_eval(config, generator, progress=progress)
    return dirs


def build_comparison(runs: list[Run], blocks: list[EvalBlock], dirs: dict[str, dict[str, Path]]) -> dict:
    """Per block, benchmark and metric: the statistics of every method (base included); per method, what its
    runs were taught (``training_diagnostics``)."""
    by_method: dict[str, list[Run]] = {}
    for r in sorted(runs, key=lambda r: (r.method, r.seed)):
        by_method.setdefault(r.method, []).append(r)
    result = {"methods": {m: {"seeds": [r.seed for r in rs], "runs": [str(r.path) for r in rs],
                              "training": [training_diagnostics(r) for r in rs]}
                          for m, rs in by_method.items()}, "tables": []}
    for block in blocks:
        benches = [b.strip() for b in block.benchmarks.split(",") if b.strip()]
        evaluated = {m: [r for r in rs if block.includes(r)] for m, rs in by_method.items()}
        evaluated = {m: rs for m, rs in evaluated.items() if rs}
        for metric, title in block.metrics():
            per_bench = []
            for bench in benches:
                matrices = {"base": score_matrix([dirs["base"][block.name]], bench, metric)}
                for method, rs in evaluated.items():
                    matrices[method] = score_matrix([dirs[r.name][block.name] for r in rs], bench, metric)
                per_bench.append(matrices)
            tables = list(zip(benches, per_bench))
            if len(benches) > 1:  # the block's benchmarks as one set of problems (each problem weighs the same)
                pooled = {m: np.hstack([matrices[m] for matrices in per_bench]) for m in per_bench[0]}
                tables.append((" + ".join(benches), pooled))
            for bench, matrices in tables:
                result["tables"].append({"block": block.name, "benchmark": bench, "metric": title,
                                         "seeds": {m: [r.seed for r in rs] for m, rs in evaluated.items()},
                                         **compare_block(matrices)})
    return result


def training_diagnostics(run: Run) -> dict | None:
    """What a run's reward taught, against the gold answers of its trained groups (``empo.training.pseudo_labels``). None
    without math-graded samples (free-form runs are judged by their judge, not here)."""
    from empo.training.pseudo_labels import run_diagnostics

    samples = run.path / "samples.jsonl"
    if run.settings.get("empo.clustering.math_clusters", "math") != "math" or not samples.exists():
        return None
    return run_diagnostics(read_jsonl(samples), run.settings.get("training.reward_weights"))


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


def _over_seeds(values: list[float | None]) -> str:
    values = [v for v in values if v is not None]
    return "-" if not values else f"{np.mean(values):.3f}" + (
        f" ({' '.join(f'{v:.2f}' for v in values)})" if len(values) > 1 else "")


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
                         + " | ".join(_signed(s.get(f"minus_{c}")) for c in present) + f" | {_share(s.get('gold_share'))} |")
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
              "gold reward's. Kept: trained groups / all groups. Skipped steps: every group filtered.", "",
              "| method | pseudo-label acc | sign disagreement | same advantages | kept | skipped steps |",
              "|---|---|---|---|---|---|"]
    for m, info in comparison["methods"].items():
        runs = [r for r in info["training"] if r is not None]
        cells = [[r["pseudo_label_accuracy"] for r in runs], [r["sign_disagreement"] for r in runs],
                 [r["agreement"]["same"] for r in runs], [r["kept_groups"] / r["groups"] for r in runs],
                 [r["skipped_step_share"] for r in runs]]
        lines.append(f"| {m} | " + " | ".join(_over_seeds(c) for c in cells) + " |")
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
        err = np.array([[m_ - t["methods"][m]["ci"][0], t["methods"][m]["ci"][1] - m_] for m, m_ in zip(names, means)]).T
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
    shifted = np.concatenate([np.zeros((values.shape[0], window)), cumulative[:, :-window]], axis=1)[:, :values.shape[1]]
    counts = np.minimum(np.arange(1, values.shape[1] + 1), window)
    return (cumulative - shifted) / counts


def compare(run_dirs: list[str | Path], blocks: list[EvalBlock], output: str | Path, allow: set[str] = frozenset(),
            evaluate: bool = True, progress: bool = True) -> dict:
    """Check, evaluate (cached) and compare the runs; write report.md, comparison.json and the plots."""
    runs = [load_run(p) for p in run_dirs]
    check_comparable(runs, allow)
    output = Path(output)
    output.mkdir(parents=True, exist_ok=True)
    if evaluate:
        dirs = evaluate_all(runs, blocks, output, progress=progress)
    else:
        dirs = eval_dirs(runs, blocks, output)
        missing = [str(d) for block_dirs in dirs.values() for d in block_dirs.values()
                   if not (d / "samples.jsonl").exists()]
        if missing:
            raise CompareError(f"no eval in {', '.join(missing)} (run without --no-eval to evaluate)")
    comparison = build_comparison(runs, blocks, dirs)
    meta = {"base_model": runs[0].settings["model.model_name_or_path"], "allowed": sorted(allow),
            "eval_blocks": [asdict(b) for b in blocks], "provenance": provenance()}
    atomic_write_json(output / "comparison.json", {**meta, **comparison})
    plot(comparison, curves(runs), output)
    atomic_write_text(output / "report.md", format_report(comparison, meta))
    return comparison


# --------------------------------------------------------------------------------------------------
# Sweeps: rewards x seeds from one recipe
# --------------------------------------------------------------------------------------------------

@dataclass
class Method:
    """One arm of a sweep: its reward(s) and the recipe keys that make it this method (e.g. the filter off)."""

    name: str = field(metadata={"help": "Names the runs: <output_root>/<name>-seed<seed>."})
    reward_funcs: list[str] | None = field(default=None, metadata={"help": "The run's reward_funcs (default: [name])."})
    overrides: dict = field(default_factory=dict, metadata={
        "help": "Recipe keys of this method, set after the sweep's own overrides (e.g. entropy_filter: false)."})

    def __post_init__(self):
        self.reward_funcs = self.reward_funcs or [self.name]


@dataclass
class Sweep:
    """A sweep spec (YAML): one recipe trained with each method and seed, then compared."""

    recipe: str = field(metadata={"help": "The recipe every run starts from."})
    output_root: str = field(metadata={"help": "Runs go to <output_root>/<method>-seed<seed>; the report to "
                                               "<output_root>/compare."})
    methods: list = field(default_factory=lambda: ["empo", "gold_accuracy", "random"], metadata={
        "help": "One entry per method: a reward name, or a mapping of Method fields (name, reward_funcs, overrides)."})
    seeds: list[int] = field(default_factory=lambda: [0, 1, 2], metadata={"help": "Replicates."})
    overrides: dict = field(default_factory=dict, metadata={"help": "Recipe keys set in every run."})
    evals: list[dict] = field(default_factory=list, metadata={"help": "EvalBlock fields, one mapping per block."})

    @classmethod
    def from_yaml(cls, path: str | Path) -> "Sweep":
        from empo import resources
        from empo.io import read_yaml

        path = resources.resolve(path, "recipes") or path  # a file, or a shipped sweep (recipes/<model>/sweeps/x.yaml)
        raw = read_yaml(path, "sweep spec")
        if not isinstance(raw, dict):
            raise CompareError(f"sweep spec '{path}' is not a YAML mapping")
        unknown = set(raw) - set(cls.__dataclass_fields__)
        if unknown:
            raise CompareError(f"sweep spec '{path}': unknown key(s) {sorted(unknown)}; "
                               f"known: {sorted(cls.__dataclass_fields__)}")
        missing = [f.name for f in fields(cls) if f.name not in raw
                   and f.default is MISSING and f.default_factory is MISSING]
        if missing:
            raise CompareError(f"sweep spec '{path}' needs {', '.join(missing)}")
        sweep = cls(**raw)
        sweep.blocks()
        sweep.arms()
        return sweep

    def blocks(self) -> list[EvalBlock]:
        known = set(EvalBlock.__dataclass_fields__)
        for b in self.evals:
            if set(b) - known or "name" not in b:
                raise CompareError(f"sweep eval block {b}: needs 'name'; unknown key(s) {sorted(set(b) - known)}")
        return [EvalBlock(**b) for b in self.evals] or [EvalBlock(name="arith")]

    def arms(self) -> list[Method]:
        known = set(Method.__dataclass_fields__)
        arms = []
        for m in self.methods:
            if isinstance(m, str):
                m = {"name": m}
            if not isinstance(m, dict) or "name" not in m or set(m) - known:
                raise CompareError(f"sweep method {m!r}: a reward name, or a mapping with 'name' and optionally "
                                   f"'reward_funcs', 'overrides'")
            arms.append(Method(**m))
        names = [a.name for a in arms]
        if len(set(names)) < len(names):
            raise CompareError(f"sweep methods: a name appears twice in {names}")
        return arms

    def run_dir(self, method: Method, seed: int) -> Path:
        return Path(self.output_root) / f"{method.name}-seed{seed}"

    def max_steps(self) -> int | None:
        """The runs' max_steps (the recipe's, with the sweep's overrides), to tell a finished run from a shorter one."""
        from empo.recipe import load_recipe

        try:
            recipe = load_recipe(self.recipe, _flags(self.overrides), check_machine=False)
        except ConfigError as e:
            raise CompareError(f"sweep recipe: {e}") from None
        return recipe.training.max_steps if recipe.training.max_steps > 0 else None

    def train_command(self, method: Method, seed: int) -> list[str]:
        return [sys.executable, "-m", "empo.train", "--config", self.recipe, "--reward_funcs", *method.reward_funcs,
                "--seed", str(seed), "--random_reward_seed", str(seed), "--output_dir", str(self.run_dir(method, seed)),
                *_flags({**self.overrides, **method.overrides})]


def _flags(overrides: dict) -> list[str]:
    """Recipe keys as ``empo train`` flags: ``{"max_steps": 4, "reward_funcs": [a, b]}`` -> ``--max_steps 4 ...``."""
    flags = []
    for k, v in overrides.items():
        flags += [f"--{k}", *(map(str, v) if isinstance(v, list) else [str(v)])]
    return flags


def finished(run: Path, max_steps: int | None) -> bool:
    """A final adapter is saved, from a run that reached ``max_steps`` (a longer sweep resumes the shorter runs)."""
    from transformers.trainer_utils import get_last_checkpoint

    if not (run / "adapter_config.json").exists():
        return False
    if max_steps is None:
        return True
    last = get_last_checkpoint(str(run))
    return last is not None and int(last.rsplit("-", 1)[-1]) >= max_steps


def run_sweep(sweep: Sweep, allow: set[str] = frozenset(), progress: bool = True) -> dict:
    """Train every (method, seed) not finished yet (a killed run resumes from its checkpoint), then compare."""
    arms, max_steps = sweep.arms(), sweep.max_steps()
    for method in arms:
        for seed in sweep.seeds:
            run = sweep.run_dir(method, seed)
            if finished(run, max_steps):
                continue
            print(f"[empo] sweep: training {run}", file=sys.stderr)
            rc = subprocess.run(sweep.train_command(method, seed), check=False).returncode
            if rc != 0:  # its own message (e.g. a refused resume) is on stderr just above
                raise CompareError(f"training {run} failed (exit status {rc}); the sweep stops here")
    dirs = [sweep.run_dir(m, s) for m in arms for s in sweep.seeds]
    return compare(dirs, sweep.blocks(), Path(sweep.output_root) / "compare", allow=allow, progress=progress)

"""``empo compare``: runs that differ only in the reward, evaluated side by side with honest statistics.

Each run directory is an ``empo train`` output (``empo_run.json``, ``metrics.jsonl``, the final adapter).
A run's *method* is its ``reward_funcs`` (with ``reward_weights``); its *replicate* is its seed
(``seed``, ``random_reward_seed``). Runs that differ in any other setting are refused, with the
differences listed, unless those keys are allowed explicitly.

Every final adapter, and the base model, is evaluated with ``empo eval`` (cached and resumable under
``<run>/eval/<block>`` and ``<output>/base/<block>``), with the prompt the runs were trained with.
Intervals are 95% percentile intervals of a two-level bootstrap: seeds resampled with replacement, then
problems; so they cover both seed-to-seed and problem-to-problem variation. With one seed they are
problem intervals only.

Outputs in ``--output``: ``report.md``, ``comparison.json``, ``accuracy.png`` (held-out accuracy per
method with error bars) and ``training_curves.png`` (reward, semantic entropy, kept fraction, majority
ratio and completion length, mean over seeds with the min-max band).
"""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import MISSING, asdict, dataclass, field, fields
from pathlib import Path

import numpy as np

from empo.evaluation import EvalConfig, group_samples, run_eval
from empo.io import atomic_write_json, atomic_write_text, read_jsonl
from empo.provenance import format_provenance, provenance

#: Settings that name or place a run rather than change what it learns.
BOOKKEEPING = {"training.output_dir", "training.logging_dir", "training.run_name", "training.resume_from_checkpoint",
               "training.hub_model_id", "training.overwrite_output_dir", "empo.num_threads"}
#: The replicate variable.
SEED_KEYS = {"training.seed", "training.data_seed", "empo.random_reward_seed"}
#: The intended variable.
METHOD_KEYS = {"empo.reward_funcs", "training.reward_weights"}

CURVES = [("reward", "reward (mean)"), ("empo/entropy_mean", "semantic entropy (nats)"),
          ("empo/kept_fraction", "kept-group fraction"), ("empo/majority_ratio_mean", "majority ratio"),
          ("completions/mean_length", "completion length (tokens)")]
BOOTSTRAP = 2000


class CompareError(ValueError):
    """Runs that cannot be compared as asked."""


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
    method = "+".join(raw["empo"]["reward_funcs"])
    if raw["training"].get("reward_weights"):
        method += "@" + ",".join(str(w) for w in raw["training"]["reward_weights"])
    return Run(path, method, int(raw["training"]["seed"]), settings)


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

def problem_scores(eval_dir: Path, benchmark: str, mode: str) -> dict[str, float]:
    """Per-problem score of one eval: correctness (greedy) or the mean over the samples (sampled)."""
    problems = group_samples(eval_dir / "samples.jsonl").get((benchmark, mode), {})
    return {pid: sum(s["correct"] for s in samples) / len(samples) for pid, samples in problems.items()}


def score_matrix(eval_dirs: list[Path], benchmark: str, mode: str) -> np.ndarray:
    """seeds x problems (problems in one fixed order, those every eval has)."""
    scores = [problem_scores(d, benchmark, mode) for d in eval_dirs]
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


def compare_block(matrices: dict[str, np.ndarray], base: str = "base", gold: str = "gold_accuracy",
                  empo: str = "empo", control: str = "random") -> dict:
    """Means, intervals, the EMPO-minus-control difference and EMPO's share of the gold-reward gain."""
    boot = bootstrap_methods(matrices)
    out = {"methods": {m: {"mean": float(x.mean()), "ci": _interval(boot[m]), "seeds": int(x.shape[0]),
                           "problems": int(x.shape[1]), "per_seed": [float(v) for v in x.mean(axis=1)]}
                       for m, x in matrices.items()}}
    if empo in matrices and control in matrices:
        d = boot[empo] - boot[control]
        out["empo_minus_control"] = {"control": control, "mean": float(matrices[empo].mean() - matrices[control].mean()),
                                     "ci": _interval(d), "p_empo_better": float((d > 0).mean())}
    if empo in matrices and gold in matrices and base in matrices:
        gain = matrices[gold].mean() - matrices[base].mean()
        with np.errstate(divide="ignore", invalid="ignore"):
            share = (boot[empo] - boot[base]) / (boot[gold] - boot[base])
        gain_ci = _interval(boot[gold] - boot[base])
        out["recovered_share"] = {  # a share of a gain only means something when gold gained
            "mean": float((matrices[empo].mean() - matrices[base].mean()) / gain) if gain_ci[0] > 0 else None,
            "gold_gain_ci": gain_ci,
            "ci": _interval(share[np.isfinite(share)]) if np.isfinite(share).any() else None,
            "gold_gain": float(gain)}
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

    def modes(self) -> list[str]:
        return (["greedy"] if self.greedy else []) + (["sample"] if self.n else [])


def eval_dirs(runs: list[Run], blocks: list[EvalBlock], output: Path) -> dict[str, dict[str, Path]]:
    """Where each target's eval of each block lives: ``<output>/base/<block>``, ``<run>/eval/<block>``."""
    targets = {"base": output / "base", **{r.name: r.path / "eval" for r in runs}}
    return {label: {b.name: root / b.name for b in blocks} for label, root in targets.items()}


def evaluate_all(runs: list[Run], blocks: list[EvalBlock], output: Path, progress: bool = True) -> dict:
    """Evaluate the base model and every run's final adapter for every block (cached); return eval dirs."""
    from empo.model import load_model, load_tokenizer
    from empo.rollout import HFGenerator

    base_model = runs[0].settings["model.model_name_or_path"]
    prompt = runs[0].settings["empo.prompt"]
    dtype = runs[0].settings.get("model.dtype") or "float32"
    tokenizer = load_tokenizer(base_model)
    targets = [("base", None, output / "base")] + [(r.name, r.path, r.path / "eval") for r in runs]
    dirs: dict[str, dict[str, Path]] = {}
    for label, adapter, root in targets:
        if adapter is not None and not (adapter / "adapter_config.json").exists():
            raise CompareError(f"run '{adapter}' has no final adapter (adapter_config.json): is it finished?")
        generator = None
        for block in blocks:
            fields = {k: v for k, v in asdict(block).items() if k != "name"}
            config = EvalConfig(model=base_model, adapter=str(adapter) if adapter else None, prompt=prompt,
                                dtype=dtype, output_dir=str(root / block.name), **fields)
            if generator is None:
                generator = HFGenerator(load_model(base_model, dtype=dtype, adapter=config.adapter), tokenizer)
            if progress:
                print(f"[empo] compare: evaluating {label} on {block.name}", file=sys.stderr)
            run_eval(config, generator, progress=progress)
            dirs.setdefault(label, {})[block.name] = root / block.name
    return dirs


def build_comparison(runs: list[Run], blocks: list[EvalBlock], dirs: dict[str, dict[str, Path]]) -> dict:
    """Per block, benchmark and metric: the statistics of every method (base included)."""
    by_method: dict[str, list[Run]] = {}
    for r in sorted(runs, key=lambda r: (r.method, r.seed)):
        by_method.setdefault(r.method, []).append(r)
    result = {"methods": {m: {"seeds": [r.seed for r in rs], "runs": [str(r.path) for r in rs]}
                          for m, rs in by_method.items()}, "tables": []}
    for block in blocks:
        for bench in [b.strip() for b in block.benchmarks.split(",") if b.strip()]:
            for mode in block.modes():
                metric = "greedy accuracy" if mode == "greedy" else f"avg@{block.n} (T={block.temperature})"
                matrices = {"base": score_matrix([dirs["base"][block.name]], bench, mode)}
                for method, rs in by_method.items():
                    matrices[method] = score_matrix([dirs[r.name][block.name] for r in rs], bench, mode)
                result["tables"].append({"block": block.name, "benchmark": bench, "metric": metric,
                                         **compare_block(matrices)})
    return result


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


def format_report(comparison: dict, meta: dict) -> str:
    lines = ["# empo compare", "", f"Base model `{meta['base_model']}`; methods differ only in the reward "
             f"(settings checked; allowed differences: {', '.join(meta['allowed']) or 'none'}).", "",
             "Intervals: 95% two-level bootstrap (seeds, then problems).", "",
             format_provenance(meta["provenance"]), ""]
    for m, info in comparison["methods"].items():
        lines.append(f"- `{m}`: seeds {info['seeds']}")
    for t in comparison["tables"]:
        lines += ["", f"## {t['benchmark']} -- {t['metric']} (eval block `{t['block']}`)", "",
                  "| method | mean | 95% CI | per seed | problems |", "|---|---|---|---|---|"]
        for m, s in t["methods"].items():
            lines.append(f"| {m} | {s['mean']:.3f} | [{s['ci'][0]:.3f}, {s['ci'][1]:.3f}] | "
                         + " ".join(f"{v:.3f}" for v in s["per_seed"]) + f" | {s['problems']} |")
        if "empo_minus_control" in t:
            d = t["empo_minus_control"]
            lines += ["", f"EMPO − {d['control']}: **{d['mean']:+.3f}** [{d['ci'][0]:+.3f}, {d['ci'][1]:+.3f}]; "
                      f"EMPO ahead in {d['p_empo_better']:.0%} of bootstrap draws."]
        if "recovered_share" in t:
            s = t["recovered_share"]
            if s["mean"] is None:
                lines.append(f"Gold reward did not gain over the base model here ({s['gold_gain']:+.3f}, "
                             f"[{s['gold_gain_ci'][0]:+.3f}, {s['gold_gain_ci'][1]:+.3f}]): no share to recover.")
            else:
                ci = f" [{s['ci'][0]:.0%}, {s['ci'][1]:.0%}]" if s["ci"] else ""
                lines.append(f"EMPO recovers **{s['mean']:.0%}**{ci} of the gold-reward gain "
                             f"({s['gold_gain']:+.3f} over base).")
    lines += ["", "![accuracy](accuracy.png)", "", "![training curves](training_curves.png)"]
    return "\n".join(lines) + "\n"


def plot(comparison: dict, curve_data: dict, output: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    tables = comparison["tables"]
    fig, axes = plt.subplots(1, len(tables), figsize=(4.2 * len(tables), 3.8), squeeze=False)
    for ax, t in zip(axes[0], tables):
        names = list(t["methods"])
        means = [t["methods"][m]["mean"] for m in names]
        err = np.array([[m_ - t["methods"][m]["ci"][0], t["methods"][m]["ci"][1] - m_] for m, m_ in zip(names, means)]).T
        ax.bar(names, means, yerr=err, capsize=4, color=[f"C{i}" for i in range(len(names))])
        for i, m in enumerate(names):
            ax.scatter([i] * len(t["methods"][m]["per_seed"]), t["methods"][m]["per_seed"], color="k", s=8, zorder=3)
        ax.set_title(f"{t['benchmark']}: {t['metric']}", fontsize=9)
        ax.set_ylim(0, 1)
        ax.tick_params(axis="x", rotation=30, labelsize=8)
    fig.tight_layout()
    fig.savefig(output / "accuracy.png", dpi=90)
    plt.close(fig)

    fig, axes = plt.subplots(1, len(CURVES), figsize=(4 * len(CURVES), 3.4))
    for ax, (key, title) in zip(axes, CURVES):
        for i, (method, metrics) in enumerate(sorted(curve_data.items())):
            series = [dict((int(s), v) for s, v in run) for run in metrics.get(key, []) if run]
            steps = sorted(set.intersection(*(set(s) for s in series))) if series else []
            if not steps:
                continue
            values = np.array([[s[x] for x in steps] for s in series])
            ax.plot(steps, values.mean(axis=0), color=f"C{i + 1}", label=method)
            ax.fill_between(steps, values.min(axis=0), values.max(axis=0), color=f"C{i + 1}", alpha=0.2)
        ax.set_title(title, fontsize=9)
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(output / "training_curves.png", dpi=90)
    plt.close(fig)


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
class Sweep:
    """A sweep spec (YAML): one recipe trained with each reward and seed, then compared."""

    recipe: str = field(metadata={"help": "The recipe every run starts from."})
    output_root: str = field(metadata={"help": "Runs go to <output_root>/<reward>-seed<seed>; the report to "
                                               "<output_root>/compare."})
    rewards: list[str] = field(default_factory=lambda: ["empo", "gold_accuracy", "random"], metadata={
        "help": "One method per entry (reward_funcs of the run)."})
    seeds: list[int] = field(default_factory=lambda: [0, 1, 2], metadata={"help": "Replicates."})
    overrides: dict = field(default_factory=dict, metadata={"help": "Recipe keys set in every run."})
    evals: list[dict] = field(default_factory=list, metadata={"help": "EvalBlock fields, one mapping per block."})

    @classmethod
    def from_yaml(cls, path: str | Path) -> "Sweep":
        from empo.io import read_yaml

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
        return sweep

    def blocks(self) -> list[EvalBlock]:
        known = set(EvalBlock.__dataclass_fields__)
        for b in self.evals:
            if set(b) - known or "name" not in b:
                raise CompareError(f"sweep eval block {b}: needs 'name'; unknown key(s) {sorted(set(b) - known)}")
        return [EvalBlock(**b) for b in self.evals] or [EvalBlock(name="arith")]

    def run_dir(self, reward: str, seed: int) -> Path:
        return Path(self.output_root) / f"{reward}-seed{seed}"

    def train_command(self, reward: str, seed: int) -> list[str]:
        cmd = [sys.executable, "-m", "empo.train", "--config", self.recipe, "--reward_funcs", reward,
               "--seed", str(seed), "--random_reward_seed", str(seed), "--output_dir", str(self.run_dir(reward, seed))]
        for k, v in self.overrides.items():
            cmd += [f"--{k}", *(map(str, v) if isinstance(v, list) else [str(v)])]
        return cmd


def run_sweep(sweep: Sweep, allow: set[str] = frozenset(), progress: bool = True) -> dict:
    """Train every (reward, seed) not finished yet (a killed run resumes from its checkpoint), then compare."""
    for reward in sweep.rewards:
        for seed in sweep.seeds:
            run = sweep.run_dir(reward, seed)
            if (run / "adapter_config.json").exists():
                continue
            print(f"[empo] sweep: training {run}", file=sys.stderr)
            rc = subprocess.run(sweep.train_command(reward, seed), check=False).returncode
            if rc != 0:  # its own message (e.g. a refused resume) is on stderr just above
                raise CompareError(f"training {run} failed (exit status {rc}); the sweep stops here")
    dirs = [sweep.run_dir(r, s) for r in sweep.rewards for s in sweep.seeds]
    return compare(dirs, sweep.blocks(), Path(sweep.output_root) / "compare", allow=allow, progress=progress)

"""``empo compare``: runs that differ only in the reward, evaluated side by side with honest statistics.

Each run directory is an ``empo train`` output (``empo_run.json``, ``metrics.jsonl``, ``samples.jsonl``, the final
adapter). A run's *method* is its ``reward_funcs`` (with ``reward_weights``) and its entropy filter (``empo``,
``empo[no filter]``, ``empo[H in (0.5, 2.0)]``: the paper's ablation is a method, not a nuisance setting); its
*replicate* is its seed (``seed``; the ``random`` reward draws from it). Runs that differ in any other setting are
refused, with the differences listed, unless those keys are allowed explicitly.

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
accuracy, sign disagreement and completion length, mean over seeds with the min-max band)."""

from __future__ import annotations

import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from empo.compare.report import curves, format_report, plot
from empo.compare.runs import Run, check_comparable, load_run
from empo.compare.stats import compare_block, score_matrix
from empo.errors import CompareError
from empo.evaluation.evaluate import EvalConfig, run_eval
from empo.io import atomic_write_json, atomic_write_text, read_jsonl
from empo.provenance import provenance


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

    def includes(self, run: Run) -> bool:
        return self.seeds is None or run.seed in self.seeds

    def modes(self) -> list[str]:
        return (["greedy"] if self.greedy else []) + (["sample"] if self.n else [])

    def metrics(self) -> list[tuple[str, str]]:
        """(metric key of ``METRICS``, its title) for each table this block gives."""
        sampled = f"@{self.n} (T={self.temperature})"
        return ([("greedy", "greedy accuracy")] if self.greedy else []) + \
            ([("avg", "avg" + sampled), ("maj", "maj" + sampled)] if self.n else [])


def eval_dirs(runs: list[Run], blocks: list[EvalBlock], output: Path,
              base_root: Path | None = None) -> dict[str, dict[str, Path]]:
    """Where each target's eval of each block lives: ``<base_root>/<block>`` (default ``<output>/base``),
    ``<run>/eval/<block>`` (a block limited to some seeds has no dir for the other runs)."""
    base_root = output / "base" if base_root is None else base_root
    dirs = {"base": {b.name: base_root / b.name for b in blocks}}
    for r in runs:
        dirs[r.name] = {b.name: r.path / "eval" / b.name for b in blocks if b.includes(r)}
    return dirs


def evaluate_target(settings: dict, adapter: Path | None, block_dirs: dict[str, Path], blocks: list[EvalBlock],
                    label: str, progress: bool = True) -> None:
    """Evaluate one target (the base model: ``adapter`` None; else a final adapter or a checkpoint) on each block
    into its dir (cached and resumable, ``empo eval``), with the model, prompt and dtype a run was trained with."""
    import torch

    from empo.rollout.generator import make_generator

    if adapter is not None and not (adapter / "adapter_config.json").exists():
        raise CompareError(f"'{adapter}' has no adapter (adapter_config.json): is the run finished?")
    base_model, prompt = settings["model.model_name_or_path"], settings["empo.prompt"]
    dtype = settings.get("model.dtype") or "float32"
    threads = torch.get_num_threads()  # as empo compare set them (--threads)
    blocks_by_name = {b.name: b for b in blocks}
    generator = None
    for name, out in block_dirs.items():
        fields = {k: v for k, v in asdict(blocks_by_name[name]).items() if k not in ("name", "seeds")}
        config = EvalConfig(model=base_model, adapter=str(adapter) if adapter else None, prompt=prompt,
                            dtype=dtype, output_dir=str(out), **fields)
        if generator is None:
            generator = make_generator(config.backend, base_model, config.adapter, dtype, threads, seed=config.seed)
        if progress:
            print(f"[empo] compare: evaluating {label} on {name}", file=sys.stderr)
        run_eval(config, generator, progress=progress)


def evaluate_all(runs: list[Run], blocks: list[EvalBlock], output: Path, progress: bool = True) -> dict:
    """Evaluate the base model and every run's final adapter for every block (cached); return eval dirs."""
    dirs = eval_dirs(runs, blocks, output)
    adapters = {"base": None, **{r.name: r.path for r in runs}}
    for label, block_dirs in dirs.items():
        evaluate_target(runs[0].settings, adapters[label], block_dirs, blocks, label, progress)
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
    """What a run's reward taught, against the gold answers of its trained groups (``empo.training.pseudo_labels``).
    None without math-graded samples (free-form runs are judged by their judge, not here)."""
    from empo.training.pseudo_labels import run_diagnostics

    samples = run.path / "samples.jsonl"
    if run.settings.get("empo.clustering", "math") != "math" or not samples.exists():
        return None
    taught = run_diagnostics(read_jsonl(samples), run.settings.get("training.reward_weights"))
    if taught is None:
        return None
    # the compute each optimizer step cost: completion tokens generated (all rounds) and generation rounds
    from empo.training.report import step_rows

    rows = step_rows(run.path / "metrics.jsonl")
    per_step = {key: [r[key] for r in rows if isinstance(r.get(key), (int, float))]
                for key in ("empo/generated_tokens", "empo/sampling_rounds")}
    return {**taught, "generated_tokens_per_step": float(np.mean(per_step["empo/generated_tokens"]))
            if per_step["empo/generated_tokens"] else None,
            "sampling_rounds": float(np.mean(per_step["empo/sampling_rounds"])) if per_step["empo/sampling_rounds"]
            else 1.0}


def compare(run_dirs: list[str | Path], blocks: list[EvalBlock], output: str | Path, allow: set[str] = frozenset(),
            evaluate: bool = True, progress: bool = True, base_root: Path | None = None,
            source: dict | None = None) -> dict:
    """Check, evaluate (cached) and compare the runs; write report.md, comparison.json and the plots.

    ``base_root``: where the base model's evals are (default ``<output>/base``). ``source``: the provenance to
    report (a sweep's store gives its bundles'; default: this process's)."""
    runs = [load_run(p) for p in run_dirs]
    check_comparable(runs, allow)
    output = Path(output)
    output.mkdir(parents=True, exist_ok=True)
    if evaluate:
        dirs = evaluate_all(runs, blocks, output, progress=progress)
    else:
        dirs = eval_dirs(runs, blocks, output, base_root)
        missing = [str(d) for block_dirs in dirs.values() for d in block_dirs.values()
                   if not (d / "samples.jsonl").exists()]
        if missing:
            raise CompareError(f"no eval in {', '.join(missing)} (run without --no-eval to evaluate)")
    comparison = build_comparison(runs, blocks, dirs)
    meta = {"base_model": runs[0].settings["model.model_name_or_path"], "allowed": sorted(allow),
            "eval_blocks": [asdict(b) for b in blocks], "provenance": source or provenance()}
    atomic_write_json(output / "comparison.json", {**meta, **comparison})
    plot(comparison, curves(runs), output)
    atomic_write_text(output / "report.md", format_report(comparison, meta))
    return comparison

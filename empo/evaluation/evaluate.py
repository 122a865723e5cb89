"""``empo eval``: a model (or checkpoint, or LoRA adapter) on math and multiple-choice benchmarks, greedy and sampled.

Default protocol = the EMPO paper's: one prompt template for base and trained models, greedy decoding,
accuracy = pass@1. ``--n N`` adds N sampled completions per problem for avg@N, pass@k and maj@k.

The output directory holds ``samples.jsonl`` (one row per completion, appended batch by batch),
``summary.json`` and ``report.md`` (both written atomically) and ``config.json`` (what produced them).
Started again with the same command, a killed eval continues: batches are fixed slices of each benchmark,
seeded by their first problem, so a resumed eval generates what an uninterrupted one would have.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from empo.errors import ConfigError, RunDirectoryError
from empo.evaluation.benchmarks import (
    PAPER_BENCHMARKS,
    extract_prediction,
    get_benchmark,
    grade,
    load_benchmark,
    prompt_text,
    vote_labels,
)
from empo.evaluation.metrics import maj_at_k, mean_with_ci, pass_at_k
from empo.io import JsonlAppender, atomic_write_json, atomic_write_text, read_jsonl
from empo.prompts import build_messages, get_prompt_config
from empo.provenance import format_provenance
from empo.rollout.hf import SamplingConfig


@dataclass
class EvalConfig:
    """What ``empo eval`` runs. Fields marked ``resume_key`` must match to continue an output directory."""

    model: str = field(default="smollm2-135m-instruct", metadata={"help": "Hub id, local directory or alias.",
                                                                   "resume_key": True})
    adapter: str | None = field(default=None, metadata={"help": "LoRA adapter directory.", "resume_key": True})
    benchmarks: str = field(default="arith", metadata={"help": "Comma-separated benchmark names."})
    data_dir: str | None = field(default=None, metadata={
        "help": "Directory with one <benchmark>.jsonl each (id, problem, answer); default: the repository's "
                "data/benchmarks (the hub for a benchmark it lacks); 'hub': the hub."})
    limit: int | None = field(default=None, metadata={"help": "First N problems of each benchmark."})
    prompt: str = field(default="boxed-example", metadata={"help": "Prompt preset or file.", "resume_key": True})
    greedy: bool = field(default=True, metadata={"help": "Run the greedy pass (the paper's pass@1).",
                                                 "resume_key": True})
    n: int = field(default=0, metadata={"help": "Sampled completions per problem (0: none).", "resume_key": True})
    temperature: float = field(default=0.6, metadata={"help": "Temperature of the sampled pass.", "resume_key": True})
    top_p: float = field(default=0.95, metadata={"help": "Top-p of the sampled pass.", "resume_key": True})
    max_new_tokens: int = field(default=512, metadata={"help": "Completion length cap.", "resume_key": True})
    seed: int = field(default=0, metadata={"help": "Sampling seed.", "resume_key": True})
    batch_size: int = field(default=16, metadata={"help": "Prompts per generate call (sampled: problems)."})
    backend: str = field(default="hf", metadata={
        "help": "'hf' (transformers generate) or 'vllm'. A resume key: the two sample with different RNGs.",
        "resume_key": True})
    dtype: str = field(default="float32", metadata={"help": "Model dtype.", "resume_key": True})
    output_dir: str = field(default="runs/eval", metadata={"help": "Where samples, summary and report go."})
    suite: str | None = field(default=None, metadata={
        "help": "Suite file (eval/suites/*.yaml) the protocol came from; flags given beside it override it."})

    def benchmark_names(self) -> list[str]:
        names = [b.strip() for b in self.benchmarks.split(",") if b.strip()]
        for name in names:
            get_benchmark(name)  # unknown names fail here, before any model is loaded
        return names

    def modes(self) -> list[tuple[str, SamplingConfig]]:
        out = []
        if self.greedy:
            out.append(("greedy", SamplingConfig(1, 0.0, 1.0, self.max_new_tokens, self.seed)))
        if self.n > 0:
            out.append(("sample", SamplingConfig(self.n, self.temperature, self.top_p, self.max_new_tokens, self.seed)))
        if not out:
            raise ConfigError("nothing to evaluate: --no-greedy needs --n > 0")
        return out


#: What a suite file may set: the protocol, not the model under test or where the results go.
SUITE_KEYS = ("benchmarks", "data_dir", "limit", "prompt", "greedy", "n", "temperature", "top_p", "max_new_tokens",
              "seed", "batch_size", "backend", "dtype")


def load_suite(path: str | Path) -> dict:
    """An evaluation protocol from a YAML file (``eval/suites/``): a mapping of ``SUITE_KEYS``; unknown keys are
    named."""
    from empo import resources
    from empo.io import read_yaml
    from empo.recipe import check_known_keys

    path = resources.resolve(path, "suites") or Path(path)  # a file, or a shipped suite (eval/suites/x.yaml, x)
    suite = read_yaml(path, "suite file")  # missing, unreadable or malformed: one line naming the file
    if not isinstance(suite, dict):
        raise ConfigError(f"suite file '{path}' must be a mapping of {', '.join(SUITE_KEYS)}")
    try:
        check_known_keys(suite, set(SUITE_KEYS), "suite")
    except ValueError as e:
        raise ConfigError(f"{path}: {e}") from None
    if isinstance(suite.get("benchmarks"), list):
        suite["benchmarks"] = ",".join(suite["benchmarks"])
    return suite


def load_data(config: EvalConfig) -> dict[str, list[dict]]:
    """Every benchmark's rows (bad names and rows fail here, before generation starts)."""
    return {name: load_benchmark(name, config.data_dir, config.limit) for name in config.benchmark_names()}


def check_resumable(config: EvalConfig, output_dir: Path) -> None:
    """Refuse to mix samples from different settings in one output directory."""
    path = output_dir / "config.json"
    if not path.exists():
        return
    before = json.loads(path.read_text(encoding="utf-8"))
    now = asdict(config)
    diffs = [f"{k}: {before.get(k)!r} -> {now[k]!r}" for k, f in EvalConfig.__dataclass_fields__.items()
             if f.metadata.get("resume_key") and before.get(k) != now[k]]
    if diffs:
        raise RunDirectoryError(f"{output_dir} holds an eval with other settings ({'; '.join(diffs)}); "
                         "use another --output-dir")


def _complete(samples_path: Path, modes: dict[str, int]) -> set[tuple[str, str, str]]:
    """(benchmark, mode, id) of the problems whose every sample is on file (a kill can tear a problem)."""
    if not samples_path.exists():
        return set()
    seen: dict[tuple[str, str, str], set[int]] = {}
    for r in read_jsonl(samples_path):
        seen.setdefault((r["benchmark"], r["mode"], r["id"]), set()).add(r["sample"])
    return {key for key, idx in seen.items() if len(idx) >= modes.get(key[1], 1)}


def generate_and_grade(config: EvalConfig, data: dict[str, list[dict]], generator, progress: bool = True) -> dict:
    """Generate every (benchmark, mode, problem) not yet in ``samples.jsonl``; return per-benchmark timings."""
    from tqdm.auto import tqdm

    samples_path = Path(config.output_dir) / "samples.jsonl"
    prompt = get_prompt_config(config.prompt)
    done = _complete(samples_path, {mode: s.num_generations for mode, s in config.modes()})
    timings = {}
    with JsonlAppender(samples_path) as sink:
        for name, rows in data.items():
            bench = get_benchmark(name)
            for mode, sampling in config.modes():
                per_call = max(1, config.batch_size // sampling.num_generations)
                batches = [rows[i:i + per_call] for i in range(0, len(rows), per_call)]
                todo = [b for b in batches if any((name, mode, r["id"]) not in done for r in b)]
                tokens, seconds = 0, 0.0
                bar = tqdm(total=len(rows), initial=len(rows) - sum(map(len, todo)), unit="problem",
                           desc=f"{name} {mode}", disable=not progress)
                for batch in todo:
                    t0 = time.perf_counter()
                    groups = generator.generate_groups([build_messages(prompt_text(bench, r), prompt) for r in batch],
                                                       sampling, seed_key=f"{name}:{batch[0]['id']}")
                    seconds += time.perf_counter() - t0
                    for row, samples in zip(batch, groups):
                        tokens += sum(s.num_tokens for s in samples)
                        sink.write_many(_sample_row(name, mode, row, j, s, bench) for j, s in enumerate(samples))
                    bar.update(len(batch))
                    bar.set_postfix(tok_s=f"{tokens / seconds:.0f}")
                bar.close()
                timings[f"{name}/{mode}"] = {"generated_tokens": tokens, "generation_seconds": round(seconds, 2),
                                             "tokens_per_second": tokens / seconds if seconds else None}
    return timings


def _sample_row(name: str, mode: str, row: dict, index: int, sample, bench) -> dict:
    answer = extract_prediction(bench, sample.text)
    return {"benchmark": name, "mode": mode, "id": row["id"], "sample": index, "completion": sample.text,
            "answer": answer, "gold": row["answer"], "correct": grade(bench, answer, row),
            "tokens": sample.num_tokens, "truncated": sample.truncated}


# --------------------------------------------------------------------------------------------------
# Summaries
# --------------------------------------------------------------------------------------------------

def group_samples(samples_path: Path) -> dict[tuple[str, str], dict[str, list[dict]]]:
    """(benchmark, mode) -> problem id -> its sample rows by index (the last write of an index wins)."""
    out: dict[tuple[str, str], dict[str, dict[int, dict]]] = {}
    for r in read_jsonl(samples_path):
        out.setdefault((r["benchmark"], r["mode"]), {}).setdefault(r["id"], {})[r["sample"]] = r
    return {key: {pid: [s[i] for i in sorted(s)] for pid, s in problems.items()} for key, problems in out.items()}


def _ks(n: int) -> list[int]:
    return sorted({k for k in (1, 2, 4, 8, 16, 32, 64, 128, 256, n) if k <= n})


def summarize_benchmark(name: str, rows: list[dict], grouped: dict[tuple[str, str], dict[str, list[dict]]],
                        n: int) -> dict:
    """Metrics of one benchmark over ``rows`` (its problems), from the graded samples."""
    bench = get_benchmark(name)
    out: dict = {"problems": len(rows)}
    greedy = grouped.get((name, "greedy"), {})
    if greedy:
        scores = [float(greedy[r["id"]][0]["correct"]) for r in rows if r["id"] in greedy]
        out["greedy"] = mean_with_ci(scores)
        answered = [greedy[r["id"]][0]["answer"] is not None for r in rows if r["id"] in greedy]
        out["greedy"]["boxed_rate"] = _mean(answered)
        out["greedy"]["mean_tokens"] = _mean([greedy[r["id"]][0]["tokens"] for r in rows if r["id"] in greedy])
        for key in bench.breakdown:
            out.setdefault("by_" + key, {})
            for value, ids in _split_by(rows, key).items():
                out["by_" + key][value] = {"problems": len(ids),
                                           "greedy": _mean([greedy[i][0]["correct"] for i in ids if i in greedy])}
    sampled = grouped.get((name, "sample"), {})
    if sampled:
        problems = [sampled[r["id"]] for r in rows if r["id"] in sampled]
        out[f"avg@{n}"] = mean_with_ci([_mean([s["correct"] for s in p]) for p in problems])
        out["pass@k"], out["maj@k"] = {}, {}
        ks = _ks(n)
        maj = [maj_scores(bench, p, ks) for p in problems]
        for j, k in enumerate(ks):
            out["pass@k"][str(k)] = mean_with_ci([pass_at_k(n, sum(s["correct"] for s in p), k) for p in problems])
            out["maj@k"][str(k)] = mean_with_ci([scores[j] for scores in maj])
        out["sample_boxed_rate"] = _mean([s["answer"] is not None for p in problems for s in p])
        out["sample_mean_tokens"] = _mean([s["tokens"] for p in problems for s in p])
        for key in bench.breakdown:
            for value, ids in _split_by(rows, key).items():
                out.setdefault("by_" + key, {}).setdefault(value, {"problems": len(ids)})[f"avg@{n}"] = _mean(
                    [s["correct"] for i in ids if i in sampled for s in sampled[i]])
    return out


def maj_scores(bench, samples: list[dict], ks: list[int]) -> list[float]:
    """One problem's maj@k for each k from its graded samples (votes: ``benchmarks.vote_labels``, clustered once)."""
    labels = vote_labels(bench, [s["answer"] for s in samples])
    return [maj_at_k(labels, [s["correct"] for s in samples], k) for k in ks]


def _split_by(rows: list[dict], key: str) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for r in rows:
        out.setdefault(str(r.get(key)), []).append(r["id"])
    return dict(sorted(out.items()))


def _mean(xs) -> float | None:
    xs = [float(x) for x in xs]
    return sum(xs) / len(xs) if xs else None


def summarize(config: EvalConfig, data: dict[str, list[dict]]) -> dict:
    samples_path = Path(config.output_dir) / "samples.jsonl"
    grouped = group_samples(samples_path) if samples_path.exists() else {}
    per_bench = {name: summarize_benchmark(name, rows, grouped, config.n) for name, rows in data.items()}
    summary = {"config": asdict(config), "benchmarks": per_bench}
    head = "greedy" if config.greedy else f"avg@{config.n}"
    if all(b in per_bench for b in PAPER_BENCHMARKS):
        scores = [_headline(per_bench[b], head) for b in PAPER_BENCHMARKS]
        summary["paper_average"] = {"metric": head, "value": _mean(scores), "limited": config.limit is not None}
    return summary


def _headline(bench_summary: dict, head: str) -> float | None:
    block = bench_summary.get(head)
    return block["mean"] if block else None


def format_report(summary: dict) -> str:
    """A markdown table per benchmark (and breakdowns), from ``summarize``'s output."""
    config = summary["config"]
    n = config["n"]
    lines = [f"# empo eval: `{config['model']}`" + (f" + adapter `{config['adapter']}`" if config["adapter"] else ""),
             "", f"prompt `{config['prompt']}`, max {config['max_new_tokens']} new tokens"
             + (f", sampled n={n} at T={config['temperature']}, top-p {config['top_p']}" if n else "")
             + (f", first {config['limit']} problems of each benchmark" if config["limit"] else "")
             + ". Intervals: 95% bootstrap over problems.", ""]
    if "provenance" in summary:
        lines += [format_provenance(summary["provenance"]), ""]
    cols = ["benchmark", "problems"]
    if config["greedy"]:
        cols += ["greedy acc", "boxed", "tokens"]
    if n:
        cols += [f"avg@{n}", f"pass@{n}", f"maj@{n}"]
    lines += ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for name, b in summary["benchmarks"].items():
        cells = [name, str(b["problems"])]
        if config["greedy"]:
            g = b.get("greedy")
            cells += [_ci(g), _num(g and g["boxed_rate"]), _num(g and g["mean_tokens"], ".0f")]
        if n:
            cells += [_ci(b.get(f"avg@{n}")), _ci(b.get("pass@k", {}).get(str(n))), _ci(b.get("maj@k", {}).get(str(n)))]
        lines.append("| " + " | ".join(cells) + " |")
    if "paper_average" in summary:
        avg = summary["paper_average"]
        lines += ["", f"Average over {', '.join(PAPER_BENCHMARKS)} ({avg['metric']}): **{_num(avg['value'])}**"
                  + (" (on limited subsets: not comparable with full-benchmark numbers)" if avg["limited"] else "")]
    for name, b in summary["benchmarks"].items():
        for key in [k for k in b if k.startswith("by_")]:
            metrics = (["greedy"] if config["greedy"] else []) + ([f"avg@{n}"] if n else [])
            lines += ["", f"### {name} by {key[3:]}", "", f"| {key[3:]} | problems | " + " | ".join(metrics) + " |",
                      "|---|---|" + "---|" * len(metrics)]
            for value, cell in b[key].items():
                cells = " | ".join(_num(cell.get(m)) for m in metrics)
                lines.append(f"| {value} | {cell['problems']} | {cells} |")
    return "\n".join(lines) + "\n"


def _num(x, fmt: str = ".3f") -> str:
    return "-" if x is None else format(x, fmt)


def _ci(block: dict | None) -> str:
    if not block:
        return "-"
    return f"{block['mean']:.3f} [{block['ci_low']:.3f}, {block['ci_high']:.3f}]"


def prepare(config: EvalConfig) -> dict[str, list[dict]]:
    """Check the settings and load the data, so that bad input fails before a model is loaded."""
    config.modes()
    get_prompt_config(config.prompt)  # a bad preset name or prompt file
    check_resumable(config, Path(config.output_dir))
    return load_data(config)


def run_eval(config: EvalConfig, generator, data: dict[str, list[dict]] | None = None, progress: bool = True,
             command: list[str] | None = None) -> dict:
    """Generate what is missing, then write summary.json and report.md (with their provenance); return the summary."""
    from empo.provenance import provenance

    out = Path(config.output_dir)
    data = prepare(config) if data is None else data
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_json(out / "config.json", asdict(config))
    timings = generate_and_grade(config, data, generator, progress=progress)
    summary = summarize(config, data)
    summary["this_run"] = timings
    summary["provenance"] = provenance(command)
    atomic_write_json(out / "summary.json", summary)
    atomic_write_text(out / "report.md", format_report(summary))
    return summary

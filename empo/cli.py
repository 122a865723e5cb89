"""The ``empo`` command line: one subcommand per stage (``rollout``, ``train``, ``eval``, ``compare``, ``merge``,
``data``, ``recipes``, ``rewards``, ``reward check``, ``launch``); every bad input is one line
(:func:`empo.errors.report_errors`)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from empo.errors import ConfigError, report_errors
from empo.rollout.generator import BACKENDS, make_generator


def _add_rollout(sub) -> None:
    p = sub.add_parser("rollout", help="Sample G completions per question, cluster answers, entropy and keep/drop.")
    p.add_argument("--model", default="smollm2-135m-instruct", help="hub id, local directory or alias")
    p.add_argument("--adapter", default=None, help="LoRA adapter directory to apply")
    p.add_argument("--dataset", default="arith", help="'arith[:levels]', a .jsonl/.json/.parquet file or a hub id")
    p.add_argument("--split", default="test")
    p.add_argument("--question-field", default="problem")
    p.add_argument("--answer-field", default="answer", help="gold column, logged only ('' if unlabeled)")
    p.add_argument("--id-field", default="id")
    p.add_argument("--limit", type=int, default=32, help="number of questions")
    p.add_argument("--data-seed", type=int, default=0)
    p.add_argument("--prompt", default="boxed-example", help="prompt preset: boxed-example | qwen-math")
    p.add_argument("-G", "--num-generations", type=int, default=8)
    p.add_argument("--temperature", type=float, default=0.8)
    p.add_argument("--top-p", type=float, default=1.0)
    p.add_argument("--max-new-tokens", type=int, default=64)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--batch-size", type=int, default=8, help="questions per generate call")
    p.add_argument("--delta-low", type=float, default=0.0, help="keep groups with entropy above this (nats)")
    p.add_argument("--delta-high", type=float, default=None, help="keep groups with entropy below this (default log G)")
    p.add_argument("--backend", choices=BACKENDS, default="hf",
                   help="hf: transformers generate; vllm: vLLM offline engine")
    p.add_argument("--dtype", default="float32", help="model dtype (float32 on CPU; bfloat16 on GPU)")
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: all cores)")
    p.add_argument("--output", default="runs/rollout/rollout.jsonl")
    p.set_defaults(func=_rollout)


def _rollout(args) -> int:
    from empo.data import DataSpec, load_questions
    from empo.model import check_adapter, check_model_spec, set_threads
    from empo.prompts import get_prompt_config
    from empo.rollout.hf import SamplingConfig
    from empo.rollout.run import format_summary, run_rollout

    check_model_spec(args.model)
    check_adapter(args.adapter)
    spec = DataSpec(name=args.dataset, split=args.split, question_field=args.question_field,
                    answer_field=args.answer_field or None, id_field=args.id_field or None, limit=args.limit,
                    seed=args.data_seed)
    questions = load_questions(spec)
    prompt = get_prompt_config(args.prompt)
    sampling = SamplingConfig(num_generations=args.num_generations, temperature=args.temperature, top_p=args.top_p,
                              max_new_tokens=args.max_new_tokens, seed=args.seed)
    threads = set_threads(args.threads)
    generator = make_generator(args.backend, args.model, args.adapter, args.dtype, threads, seed=args.seed)
    print(f"[empo] rollout: {len(questions)} questions x G={sampling.num_generations}, model {args.model}, "
          f"{args.backend} backend, {threads} threads -> {args.output}", file=sys.stderr)
    summary = run_rollout(questions, generator, prompt, sampling, args.output,
                          batch_size=args.batch_size, delta_low=args.delta_low, delta_high=args.delta_high)
    print(format_summary(summary))
    run = summary["this_run"]
    if run["tokens_per_second"]:
        print(f"generated {run['generated_tokens']} tokens in {run['generation_seconds']:.1f} s "
              f"({run['tokens_per_second']:.0f} tok/s); summary: {Path(args.output).with_suffix('.summary.json')}")
    return 0


def _add_eval(sub, suite: dict | None = None) -> None:
    from empo.evaluation.benchmarks import BENCHMARKS
    from empo.evaluation.evaluate import EvalConfig

    d = EvalConfig(**(suite or {}))
    p = sub.add_parser("eval", help="Evaluate a model, checkpoint or LoRA adapter on math and multiple-choice "
                                    "benchmarks (greedy pass@1; --n for avg@n, pass@k, maj@k).")
    p.add_argument("--model", default=d.model, help="hub id, local directory or alias")
    p.add_argument("--adapter", default=None, help="LoRA adapter directory (e.g. a training output_dir)")
    p.add_argument("--benchmarks", default=d.benchmarks, help=f"comma-separated, from: {', '.join(BENCHMARKS)}")
    p.add_argument("--data-dir", default=d.data_dir, help="directory with <benchmark>.jsonl files (default: the "
                                                           "shipped data/benchmarks; 'hub': the hub)")
    p.add_argument("--limit", type=int, default=d.limit, help="first N problems of each benchmark")
    p.add_argument("--prompt", default=d.prompt, help="prompt preset (boxed-example | qwen-math) or file")
    p.add_argument("--greedy", action=argparse.BooleanOptionalAction, default=d.greedy,
                   help="run the greedy pass (the paper's pass@1); --no-greedy skips it")
    p.add_argument("--n", type=int, default=d.n, help="sampled completions per problem (0: greedy only)")
    p.add_argument("--temperature", type=float, default=d.temperature)
    p.add_argument("--top-p", type=float, default=d.top_p)
    p.add_argument("--max-new-tokens", type=int, default=d.max_new_tokens)
    p.add_argument("--seed", type=int, default=d.seed)
    p.add_argument("--batch-size", type=int, default=d.batch_size, help="prompts per generate call")
    p.add_argument("--backend", choices=BACKENDS, default=d.backend,
                   help="hf: transformers generate; vllm: vLLM offline engine")
    p.add_argument("--dtype", default=d.dtype)
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: all cores)")
    p.add_argument("--output-dir", default=d.output_dir)
    p.add_argument("--suite", default=None, help="evaluation protocol file (eval/suites/*.yaml); flags override it")
    p.set_defaults(func=_eval)


def _eval(args) -> int:
    from empo.evaluation.evaluate import (
        EvalConfig,
        check_resumable,
        format_report,
        prepare,
        run_eval,
    )
    from empo.io import DirectoryLock
    from empo.model import check_adapter, check_model_spec, set_threads

    fields = EvalConfig.__dataclass_fields__
    config = EvalConfig(**{k: v for k, v in vars(args).items() if k in fields})
    check_model_spec(config.model)
    check_adapter(config.adapter)
    data = prepare(config)  # bad names, rows or settings fail here, before the model loads
    lock = DirectoryLock(config.output_dir, "empo eval").acquire()  # noqa: F841 - one writer, held until exit
    check_resumable(config, Path(config.output_dir))  # again, now that no other eval can write there
    threads = set_threads(args.threads)
    generator = make_generator(config.backend, config.model, config.adapter, config.dtype, threads, seed=config.seed)
    print(f"[empo] eval: {', '.join(f'{k} ({len(v)})' for k, v in data.items())}; model {config.model}"
          f"{' + ' + config.adapter if config.adapter else ''}, {threads} threads -> {config.output_dir}",
          file=sys.stderr)
    summary = run_eval(config, generator, data, command=["empo", *args.argv])
    print(format_report(summary))
    for key, t in summary["this_run"].items():
        if t["tokens_per_second"]:
            print(f"{key}: {t['generated_tokens']} tokens in {t['generation_seconds']:.1f} s "
                  f"({t['tokens_per_second']:.0f} tok/s)")
    return 0


def _add_train(sub) -> None:
    p = sub.add_parser("train", add_help=False,
                       help="GRPO training with EMPO (or baseline) rewards from a recipe; no arguments: the CPU "
                            "default. "
                            "Takes --config RECIPE.yaml and any GRPOConfig/ModelConfig/EmpoArguments flag.")
    p.set_defaults(func=_train)


def _train(args, rest: list[str]) -> int:
    from empo.train import main as train_main

    return train_main(rest)


def _add_compare(sub) -> None:
    from empo.compare.comparison import EvalBlock

    d = EvalBlock(name="eval")
    p = sub.add_parser("compare", help="Evaluate runs that differ only in the reward (and the base model) and "
                                       "write a report with confidence intervals and plots.")
    p.add_argument("runs", nargs="*", help="training output directories")
    p.add_argument("--sweep", default=None,
                   help="sweep spec YAML (rewards x seeds): train what is missing, then compare")
    p.add_argument("--store", default=None,
                   help="with --sweep: keep each finished run's results (no weights) in this directory, train and "
                        "evaluate only what it lacks, and write the report from it (<store>/compare)")
    p.add_argument("--time-budget", type=float, default=None, metavar="MINUTES",
                   help="with --store: start no run that its finished siblings say would end past this budget")
    p.add_argument("--status", action="store_true",
                   help="with --store: list the sweep's done, stale and missing runs and the time left; run nothing")
    p.add_argument("--interim", action="store_true",
                   help="with --store: write the report of the runs done so far to <store>/interim; run nothing")
    p.add_argument("--output", default="runs/compare", help="report directory (sweeps: <output_root>/compare)")
    p.add_argument("--allow-diff", default="", help="comma-separated setting keys allowed to differ between runs")
    p.add_argument("--no-eval", dest="evaluate", action="store_false", help="use the evals already on disk")
    p.add_argument("--benchmarks", default=d.benchmarks)
    p.add_argument("--data-dir", default=None)
    p.add_argument("--limit", type=int, default=None)
    p.add_argument("--n", type=int, default=4, help="sampled completions per problem (0: greedy only)")
    p.add_argument("--temperature", type=float, default=d.temperature)
    p.add_argument("--max-new-tokens", type=int, default=d.max_new_tokens)
    p.add_argument("--threads", type=int, default=None)
    p.set_defaults(func=_compare)


def _compare(args) -> int:
    from empo.compare.comparison import EvalBlock, compare
    from empo.compare.sweep import Sweep, run_sweep
    from empo.model import set_threads

    allow = {k.strip() for k in args.allow_diff.split(",") if k.strip()}
    set_threads(args.threads)
    if (args.store is None) and (args.time_budget is not None or args.status or args.interim):
        raise ConfigError("--time-budget, --status and --interim need --sweep SPEC --store DIR")
    if args.store is not None and not args.sweep:
        raise ConfigError("--store needs --sweep SPEC")
    if args.sweep:
        if args.runs:
            raise ConfigError("give run directories or --sweep, not both")
        sweep = Sweep.from_yaml(args.sweep)
        if args.store is not None:
            return _stored_sweep(sweep, args, allow)
        run_sweep(sweep, allow=allow)
        output = Path(sweep.output_root) / "compare"
    else:
        if not args.runs:
            raise ConfigError("no runs given: pass training output directories or --sweep SPEC.yaml")
        block = EvalBlock(name="eval", benchmarks=args.benchmarks, data_dir=args.data_dir, limit=args.limit,
                          n=args.n, temperature=args.temperature, max_new_tokens=args.max_new_tokens)
        compare(args.runs, [block], args.output, allow=allow, evaluate=args.evaluate)
        output = Path(args.output)
    print((output / "report.md").read_text(encoding="utf-8"))
    return 0


def _stored_sweep(sweep, args, allow: set[str]) -> int:
    from empo.compare.store import Store, format_status
    from empo.compare.sweep import run_stored_sweep, sweep_states

    store = Store(args.store)
    if args.status:
        print(format_status(sweep_states(sweep, store)))
        return 0
    command = ["empo", "compare", "--sweep", args.sweep, "--store", args.store]
    if args.interim:
        from empo.compare.sweep import write_interim

        states, out = write_interim(sweep, store, command, allow=allow)
        if out is None:
            print(f"0 of {len(states)} runs done: no interim report yet")
            return 0
        print((out / "report.md").read_text(encoding="utf-8"))
        print(f"[empo] compare: interim report of {sum(s.state == 'done' for s in states)} of {len(states)} runs in "
              f"{out}", file=sys.stderr)
        return 0
    budget = None if args.time_budget is None else args.time_budget * 60
    states, comparison = run_stored_sweep(sweep, store, allow=allow, time_budget=budget, command=command)
    done = sum(s.state == "done" for s in states)
    if comparison is None:
        print(f"{done} of {len(states)} runs done; the same command continues "
              f"(status: {' '.join(command)} --status)")
        return 0
    print((store.report_path() / "report.md").read_text(encoding="utf-8"))
    print(f"[empo] compare: {done} of {len(states)} runs, report in {store.report_path()}", file=sys.stderr)
    return 0


def _add_merge(sub) -> None:
    p = sub.add_parser("merge", help="Merge a LoRA adapter into its base model and save a plain checkpoint.")
    p.add_argument("adapter", help="adapter directory (a training output_dir or checkpoint)")
    p.add_argument("output", help="where to write the merged model")
    p.add_argument("--model", default=None, help="base model spec (default: the one recorded in the adapter)")
    p.set_defaults(func=_merge)


def _merge(args) -> int:
    from empo.model import merge_adapter

    print(merge_adapter(args.adapter, args.output, base=args.model))
    return 0


def _add_data(sub) -> None:
    p = sub.add_parser("data", help="The repository's data files: check them against data/manifest.json, or "
                                    "rebuild one from its hub source.")
    p.add_argument("action", choices=["check", "prepare"], help="check: rows and sha256 of the committed files; "
                                                               "prepare: rebuild NAME from the hub and verify it")
    p.add_argument("name", nargs="?", default=None, help="file name without .jsonl (e.g. gsm8k, numina_math_20k)")
    p.set_defaults(func=_data)


def _data(args) -> int:
    from empo import manifest

    if args.action == "prepare":
        if not args.name:
            raise ConfigError(f"prepare needs a NAME; known: {', '.join(sorted(manifest.load_manifest()))}")
        print(f"wrote {manifest.prepare(args.name)} (matches data/manifest.json)")
        return 0
    problems = manifest.check(args.name)
    for line in problems:
        print(line)
    if not problems:
        print(f"{args.name or 'all data files'}: rows and sha256 match data/manifest.json")
    return 1 if problems else 0


def _add_recipes(sub) -> None:
    p = sub.add_parser("recipes", help="List the shipped recipes: train or launch one by this name from any directory.")
    p.set_defaults(func=_recipes)


def _recipes(args) -> int:
    from empo import resources

    for name in resources.recipe_names():
        first = resources.resolve(name, "recipes").read_text(encoding="utf-8").splitlines()[:1]
        about = first[0].lstrip("# ").strip() if first and first[0].startswith("#") else ""
        print(f"{name}\n    {about}" if about else name)
    return 0


def _add_rewards(sub) -> None:
    p = sub.add_parser("rewards", help="List every reward a recipe can name: where it comes from, whether it is "
                                       "label-free, the token statistics it reads, its options.")
    p.add_argument("specs", nargs="*", help="also these reward_funcs entries (import paths, files)")
    p.set_defaults(func=_rewards)
    p = sub.add_parser("reward", help="Certify a reward: 'empo reward check SPEC' runs the test kit (empo.testing) on "
                                      "it, one line per property; exit 0 all hold, 1 one fails, 2 a bad spec.")
    p.add_argument("action", choices=["check"])
    p.add_argument("spec", help="a reward_funcs entry: a name, mypkg.rewards:novelty, or path/to/reward.py:novelty")
    p.add_argument("--options", default=None, help="the reward's options, a JSON object")
    p.add_argument("--property", action="append", default=None, help="check only this property (repeatable)")
    p.add_argument("-G", "--num-generations", type=int, default=4)
    p.set_defaults(func=_reward_check)


def _rewards(args) -> int:
    from empo.rewards.registry import entry_points, resolve, shipped

    names = [*shipped(), *(n for n in entry_points() if n not in shipped()), *args.specs]
    shadowed = [n for n in entry_points() if n in shipped()]
    for name in names:
        source = resolve(name)
        t = source.traits
        accepted, _, any_keyword = source.option_names()
        options = "any" if any_keyword else ", ".join(sorted(accepted - {"clusterer"})) or "none"
        kind = "label-free" if t.label_free else "supervised"
        extra = f"; token statistics: {', '.join(t.token_statistics)}" if t.token_statistics else ""
        extra += "; order-dependent" if t.order_dependent else ""
        print(f"{source.name:<16} {kind:<11} {source.origin}{extra}\n{'':<16} options: {options}")
    for name in shadowed:
        print(f"[empo] note: the entry point '{name}' is shadowed by empo's own reward of that name", file=sys.stderr)
    return 0


def _reward_check(args) -> int:
    from empo.configs import parse_options
    from empo.rewards.kit import PROPERTIES, check_reward

    results = check_reward(args.spec, parse_options(args.options), properties=args.property or PROPERTIES,
                           raise_on_failure=False, num_generations=args.num_generations)
    for r in results:
        print(r.line())
    failed = [r.property for r in results if r.status == "fail"]
    print(f"{args.spec}: " + (f"FAILED {', '.join(failed)}" if failed else
                              f"every property holds ({sum(r.status == 'ok' for r in results)} checked, "
                              f"{sum(r.status == 'skip' for r in results)} not applicable)"))
    return 1 if failed else 0


def build_parser(eval_suite: dict | None = None) -> argparse.ArgumentParser:
    """The CLI; ``eval_suite`` (a loaded suite file) becomes ``empo eval``'s defaults, so flags still override it."""
    parser = argparse.ArgumentParser(prog="empo", description="Label-free RL post-training (EMPO) on TRL.")
    sub = parser.add_subparsers(dest="command", required=True)
    _add_rollout(sub)
    _add_train(sub)
    _add_eval(sub, eval_suite)
    _add_compare(sub)
    _add_merge(sub)
    _add_data(sub)
    _add_recipes(sub)
    _add_rewards(sub)
    from empo.launch import add_parser as _add_launch

    _add_launch(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["train"]:  # everything after 'train' belongs to TRL's parser
        return report_errors("train", lambda: _train(None, argv[1:]))
    overrides = []
    if argv[:1] == ["launch"] and "--" in argv:  # recipe overrides after '--' reach empo train untouched
        argv, overrides = argv[:argv.index("--")], argv[argv.index("--") + 1:]
    args = build_parser().parse_args(argv)
    if overrides:
        args.overrides = overrides
    return report_errors(args.command, lambda: _dispatch(args, argv))


def _dispatch(args, argv: list[str]) -> int:
    if getattr(args, "suite", None):  # the suite's settings become the defaults; flags given beside it still win
        from empo.evaluation.evaluate import load_suite

        args = build_parser(eval_suite=load_suite(args.suite)).parse_args(argv)
    args.argv = argv  # recorded with published results
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())

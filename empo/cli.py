"""The ``empo`` command line: ``empo rollout`` (and the later stages as they land)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


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
    p.add_argument("--backend", choices=["hf"], default="hf")
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: all cores)")
    p.add_argument("--output", default="runs/rollout/rollout.jsonl")
    p.set_defaults(func=_rollout)


def _rollout(args) -> int:
    from empo.data import DataSpec, load_questions
    from empo.model import load_model, load_tokenizer, set_threads
    from empo.prompts import get_prompt_config
    from empo.rollout import HFGenerator, SamplingConfig, format_summary, run_rollout

    spec = DataSpec(name=args.dataset, split=args.split, question_field=args.question_field,
                    answer_field=args.answer_field or None, id_field=args.id_field or None, limit=args.limit,
                    seed=args.data_seed)
    questions = load_questions(spec)
    prompt = get_prompt_config(args.prompt)
    sampling = SamplingConfig(num_generations=args.num_generations, temperature=args.temperature, top_p=args.top_p,
                              max_new_tokens=args.max_new_tokens, seed=args.seed)
    threads = set_threads(args.threads)
    tokenizer = load_tokenizer(args.model)
    model = load_model(args.model, adapter=args.adapter)
    print(f"[empo] rollout: {len(questions)} questions x G={sampling.num_generations}, model {args.model}, "
          f"{threads} threads -> {args.output}", file=sys.stderr)
    summary = run_rollout(questions, HFGenerator(model, tokenizer), prompt, sampling, args.output,
                          batch_size=args.batch_size, delta_low=args.delta_low, delta_high=args.delta_high)
    print(format_summary(summary))
    run = summary["this_run"]
    if run["tokens_per_second"]:
        print(f"generated {run['generated_tokens']} tokens in {run['generation_seconds']:.1f} s "
              f"({run['tokens_per_second']:.0f} tok/s); summary: {Path(args.output).with_suffix('.summary.json')}")
    return 0


def _add_train(sub) -> None:
    p = sub.add_parser("train", add_help=False,
                       help="GRPO training with EMPO (or baseline) rewards from a recipe; no arguments: the CPU default. "
                            "Takes --config RECIPE.yaml and any GRPOConfig/ModelConfig/EmpoArguments flag.")
    p.set_defaults(func=_train)


def _train(args, rest: list[str]) -> int:
    from empo.train import main as train_main

    return train_main(rest)


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


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="empo", description="Label-free RL post-training (EMPO) on TRL.")
    sub = parser.add_subparsers(dest="command", required=True)
    _add_rollout(sub)
    _add_train(sub)
    _add_merge(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["train"]:  # everything after 'train' belongs to TRL's parser
        return _train(None, argv[1:])
    args = build_parser().parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())

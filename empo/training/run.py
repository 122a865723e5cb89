"""One training run from a parsed recipe: the dataset and prompts, the rewards and the clusterer they share, the
run directory's record and lock (checked before any model loads), the EmpoTrainer, the resume from the last
checkpoint, and the end-of-run summary with its plot."""

from __future__ import annotations

import sys
import time
from pathlib import Path


def build_dataset(empo_args):
    import datasets

    from empo.data import DataSpec, load_questions
    from empo.prompts import build_messages, get_prompt_config

    spec = DataSpec(name=empo_args.dataset_name, split=empo_args.dataset_split, subset=empo_args.dataset_subset,
                    question_field=empo_args.question_field, answer_field=empo_args.answer_field,
                    id_field=empo_args.id_field, limit=empo_args.dataset_limit, seed=empo_args.arith_seed)
    prompt = get_prompt_config(empo_args.prompt)
    questions = load_questions(spec)
    rows = [{"id": q["id"], "prompt": build_messages(q["problem"], prompt), "answer": q["answer"]} for q in questions]
    if empo_args.clustering != "math":  # free-form judges read the bare question (not the templated prompt)
        rows = [dict(r, problem=q["problem"]) for r, q in zip(rows, questions)]
    if not rows:
        from empo.data import DataError

        raise DataError(f"dataset '{empo_args.dataset_name}' has no rows")
    return datasets.Dataset.from_list(rows)


def build_rewards(empo_args, num_generations: int, clusterer=None):
    """The recipe's rewards; the group rewards get ``clusterer`` (the trainer's, so a judge model loads once)."""
    from empo.training.rewards import build_reward

    cluster_options = {"clusterer": clusterer, "min_majority_share": empo_args.min_majority_share}
    options = {"empo": {"no_answer_reward": empo_args.no_answer_reward, **cluster_options},
               "majority_vote": cluster_options,
               "random": {"seed": empo_args.random_reward_seed},
               "gold_accuracy": {"gold_field": "answer"}}
    return [build_reward(name, num_generations, **options.get(name, {})) for name in empo_args.reward_funcs]


def claim_run_directory(empo_args, training_args, model_args):
    """Lock ``output_dir`` (one writer) and check or start its record (see empo.training.run_dir), before any model
    loads.

    Under torchrun/accelerate only rank 0 locks and writes; the other ranks check the record read-only.
    Returns the lock, held for the life of the process.
    """
    from empo.io import DirectoryLock, is_main_launcher_process
    from empo.training.run_dir import (
        check_run_directory,
        prepare_run_directory,
        run_record,
    )

    out = Path(training_args.output_dir)
    record = run_record(empo_args, training_args, model_args)
    lock = None
    with training_args.main_process_first(local=False, desc="empo run directory"):
        if is_main_launcher_process():
            lock = DirectoryLock(out, "empo train").acquire()
            try:
                moved = prepare_run_directory(out, record, restart=empo_args.restart)
            except BaseException:
                lock.release()
                raise
            if moved is not None:
                print(f"[empo] restart: moved the previous run in {out} to {moved}", file=sys.stderr)
        elif not empo_args.restart:
            check_run_directory(out, record)
    return lock


def train(recipe) -> int:
    """Train the run a parsed recipe (:class:`empo.recipe.Recipe`) describes; resume it when its output_dir holds
    a checkpoint. Returns the process's exit status."""
    empo_args, training_args, model_args = recipe.empo, recipe.training, recipe.model

    from transformers.trainer_callback import ProgressCallback
    from transformers.trainer_utils import get_last_checkpoint
    from trl import get_peft_config

    from empo.clustering.math_clusters import clusterer_from_args, set_limits
    from empo.model import check_model_spec, load_model, load_tokenizer, set_threads
    from empo.training.callbacks import JsonlMetricsCallback
    from empo.training.stopping import StoppingCallback, StoppingRule
    from empo.training.trainer import EmpoTrainer

    check_model_spec(model_args.model_name_or_path)
    set_threads(empo_args.num_threads)
    set_limits(timeout=empo_args.math_timeout, group_budget=empo_args.group_time_budget)
    dataset = build_dataset(empo_args)
    if "gold_accuracy" not in empo_args.reward_funcs and empo_args.answer_field is None:
        dataset = dataset.remove_columns("answer")
    lock = claim_run_directory(empo_args, training_args, model_args)  # noqa: F841 - held until exit
    tokenizer = load_tokenizer(model_args.model_name_or_path)
    model = load_model(model_args.model_name_or_path, dtype=model_args.dtype or "float32")
    model.train()
    clusterer = clusterer_from_args(empo_args)
    trainer = EmpoTrainer(
        model=model,
        reward_funcs=build_rewards(empo_args, training_args.num_generations, clusterer),
        args=training_args,
        train_dataset=dataset,
        processing_class=tokenizer,
        peft_config=get_peft_config(model_args),
        callbacks=[JsonlMetricsCallback(),
                   StoppingCallback(empo_args.stopping, StoppingRule(empo_args.stopping_window,
                                                                     empo_args.stopping_entropy_fraction,
                                                                     empo_args.stopping_patience))],
        empo_args=empo_args,
        clusterer=clusterer,
    )
    warn_if_fsdp_dropped(trainer)
    if trainer.pop_callback(ProgressCallback) is not None:  # a bar with live figures instead of one dict per step
        from empo.training.report import LiveProgress

        trainer.add_callback(LiveProgress())
    out = Path(training_args.output_dir)
    checkpoint = training_args.resume_from_checkpoint
    if checkpoint is None and out.is_dir():
        checkpoint = get_last_checkpoint(str(out))
        if checkpoint:
            print(f"[empo] resuming from {checkpoint}", file=sys.stderr)
    first_step = _checkpoint_step(checkpoint)
    started = time.perf_counter()
    try:
        trainer.train(resume_from_checkpoint=checkpoint)
    except KeyboardInterrupt:
        if trainer.accelerator.is_main_process:
            _report(trainer, empo_args, first_step, time.perf_counter() - started, interrupted=True)
        return 130
    trainer.save_model(str(out))
    if trainer.accelerator.is_main_process:
        tokenizer.save_pretrained(str(out))
        _report(trainer, empo_args, first_step, time.perf_counter() - started)
    return 0


def warn_if_fsdp_dropped(trainer) -> bool:
    """Say so when the accelerate config asked for FSDP but the run is not sharded: accelerate 1.x turns FSDP on only
    for GPU-like devices and runs a CPU launch as plain data parallel, silently (tests/helpers/fsdp_on_cpu.py is how the
    tests shard on CPU). Returns whether it warned."""
    import os

    asked = os.environ.get("ACCELERATE_USE_FSDP", "").strip().lower() in ("1", "true", "yes")
    if not asked or getattr(trainer, "is_fsdp_enabled", False):
        return False
    if trainer.accelerator.is_main_process:
        print(f"[empo] warning: the accelerate config asks for FSDP, but accelerate runs this "
              f"{trainer.accelerator.distributed_type.value} launch unsharded (it enables FSDP only on GPU-like "
              "devices): every process holds the whole model", file=sys.stderr)
    return True


def _checkpoint_step(checkpoint) -> int:
    """The global step a run resumes from: N of '.../checkpoint-N' (0 for a fresh run)."""
    tail = str(checkpoint or "").rstrip("/").rsplit("-", 1)[-1]
    return int(tail) if tail.isdigit() else 0


def _report(trainer, empo_args, first_step: int, seconds: float, interrupted: bool = False) -> None:
    """The end of a run: training_curves.png, then the summary on stdout (main process only)."""
    from transformers.trainer_utils import get_last_checkpoint

    from empo.training.report import format_summary, plot_training_curves, summarize_run

    out = Path(trainer.args.output_dir)
    if (out / "metrics.jsonl").exists():
        plot_training_curves(out / "metrics.jsonl", out / "training_curves.png", title=out.name)
    summary = summarize_run(out, first_step, seconds, interrupted=interrupted,
                            checkpoint=get_last_checkpoint(str(out)) if out.is_dir() else None)
    print("\n" + format_summary(summary, prompt=empo_args.prompt, dataset=empo_args.dataset_name,
                                clustering=empo_args.clustering), flush=True)

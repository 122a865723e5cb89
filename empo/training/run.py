"""One training run from a parsed recipe: the dataset and prompts, the rewards and the clusterer they share, the
run directory's record and lock (checked before any model loads), the EmpoTrainer, the resume from the last
checkpoint, and the end-of-run summary with its plot."""

from __future__ import annotations

import sys
import time
from pathlib import Path

from empo.training.preemption import RECORD


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


def build_rewards(empo_args, training_args, clusterer=None, base_dirs=()):
    """The recipe's rewards with their ``reward_options`` (:mod:`empo.rewards.registry`) and the run's context: the
    group rewards get ``clusterer`` (the trainer's, so a judge model loads once) and ``min_majority_share``, seeded
    rewards the run's ``seed``."""
    from empo.rewards.registry import build_rewards as build

    context = {"clusterer": clusterer, "min_majority_share": empo_args.min_majority_share, "seed": training_args.seed}
    return build(empo_args.reward_funcs, training_args.num_generations, empo_args.reward_options, context, base_dirs)


def claim_run_directory(empo_args, training_args, model_args) -> tuple:
    """Lock ``output_dir`` (one writer), check or start its record (see empo.training.run_dir) and find where the
    run resumes, before any model loads: the newest complete checkpoint (``empo.training.checkpoints``; incomplete
    ones are set aside, named on stderr), with both logs cut back to it, so each step is logged once.

    A run that label-free stopping ended (``stopping: stop``, its final model saved) is left as it is: it has nothing
    left to train (empo.training.stopping.stopped_run).

    Under torchrun/accelerate only rank 0 locks, writes and moves; the other ranks read, after it.
    Returns (the lock, held for the life of the process; the checkpoint to resume from, or None; the stopping record
    of a run that already stopped, or None).
    """
    from empo.io import DirectoryLock, is_main_launcher_process
    from empo.training import checkpoints
    from empo.training.run_dir import check_run_directory, prepare_run_directory, run_record
    from empo.training.stopping import stopped_run

    out = Path(training_args.output_dir)
    record = run_record(empo_args, training_args, model_args)
    lock = None
    with training_args.main_process_first(local=False, desc="empo run directory"):
        if is_main_launcher_process():
            lock = DirectoryLock(out, "empo train").acquire()
            try:
                moved = prepare_run_directory(out, record, restart=empo_args.restart)
                if moved is not None:
                    print(f"[empo] restart: moved the previous run in {out} to {moved}", file=sys.stderr)
                stopped = stopped_run(out, empo_args.stopping)
                if stopped is not None:  # nothing to resume, nothing to cut
                    return lock, None, stopped
                checkpoint, set_aside = checkpoints.resume_point(out)
                for folder, dest in set_aside:
                    print(f"[empo] {folder.name} is incomplete (a save was interrupted): set aside in {dest}",
                          file=sys.stderr)
                cut_logs(out, checkpoints.step_of(checkpoint) if checkpoint else 0)
                (out / RECORD).unlink(missing_ok=True)  # running again: no longer preempted
            except BaseException:
                lock.release()
                raise
        else:
            if not empo_args.restart:
                check_run_directory(out, record)
            stopped = stopped_run(out, empo_args.stopping)
            if stopped is not None:
                return lock, None, stopped
            checkpoint = checkpoints.last_complete(out)
    if training_args.resume_from_checkpoint:  # an explicit choice wins
        checkpoint = Path(training_args.resume_from_checkpoint)
    return lock, checkpoint, None


def cut_logs(out: Path, step: int) -> None:
    """Cut metrics.jsonl and samples.jsonl back to a resume from ``step`` (0: a fresh start): the rows of later steps
    will be logged again, so they move to ``<log>.superseded.jsonl``, and so does the end-of-training row of an
    earlier invocation (a preempted one writes one). (Readers of older runs keep the last row of a step, the same
    rule.) metrics rows carry the step they end, samples rows the step they were generated at."""
    from empo.io import cut_jsonl

    # transformers' end-of-training row (train_runtime, train_loss) closes an invocation, not a step: the resumed one
    # writes its own at its end
    cut_jsonl(out / "metrics.jsonl", lambda row: row.get("step", 0) <= step and "train_runtime" not in row)
    cut_jsonl(out / "samples.jsonl", lambda row: row.get("step", 0) < step)


def train(recipe, callbacks=()) -> int:
    """Train the run a parsed recipe (:class:`empo.recipe.Recipe`) describes; resume it from the newest complete
    checkpoint in its output_dir. Returns the process's exit status: 0, 130 (Ctrl-C), or :data:`REQUEUE_EXIT` after a
    preemption signal (:mod:`empo.training.preemption`). ``callbacks``: more ``TrainerCallback``s, for scripts that
    measure a run (scripts/gpu_check.py)."""
    empo_args, training_args, model_args = recipe.empo, recipe.training, recipe.model

    from transformers.trainer_callback import ProgressCallback
    from trl import get_peft_config

    from empo.clustering.math_clusters import clusterer_from_args, set_limits
    from empo.io import is_main_launcher_process
    from empo.model import check_model_spec, load_model, load_tokenizer, set_threads
    from empo.training.callbacks import JsonlMetricsCallback
    from empo.training.preemption import Preemption, PreemptionCallback
    from empo.training.stopping import StoppingCallback, StoppingRule, read_record
    from empo.training.trainer import EmpoTrainer
    from empo.versions import check_installed

    preemption = Preemption().install()  # from here on a SIGTERM/SIGUSR1 saves and requeues instead of killing
    # an error where empo is known to fail (every process); a warning per version outside the tested ranges (once)
    check_installed(warn=None if is_main_launcher_process() else lambda line: None)
    check_model_spec(model_args.model_name_or_path)
    node_preflight(recipe)
    set_threads(empo_args.num_threads)
    set_limits(timeout=empo_args.math_timeout, group_budget=empo_args.group_time_budget)
    dataset = build_dataset(empo_args)
    if empo_args.answer_field is None:
        dataset = dataset.remove_columns("answer")
    lock, checkpoint, stopped = claim_run_directory(empo_args, training_args, model_args)  # noqa: F841 - lock held
    if stopped is not None:
        if is_main_launcher_process():
            print(f"[empo] {training_args.output_dir} already stopped: label-free stopping ended it at step "
                  f"{stopped['fired_at']} (the turn at step {stopped['step']}: {stopped['reason']}; chosen checkpoint: "
                  f"{stopped['checkpoint'] or 'the starting model'}). Nothing to train; its final model is in "
                  f"{training_args.output_dir} (--restart starts it afresh)", flush=True)
        return 0
    turn = read_record(training_args.output_dir)
    if checkpoint is not None and empo_args.stopping == "stop" and turn and turn.get("mode") == "stop" \
            and turn["fired_at"] <= _checkpoint_step(checkpoint):
        # the rule ended the run at this checkpoint's step before a preemption kept it from finishing: nothing is
        # left to train, only the final model to write (from this checkpoint, as the uninterrupted run wrote it)
        training_args.max_steps = _checkpoint_step(checkpoint)
    clusterer = clusterer_from_args(empo_args)
    rewards = build_rewards(empo_args, training_args, clusterer, base_dirs=(recipe.path.parent,))  # before the model
    tokenizer = load_tokenizer(model_args.model_name_or_path)
    model = load_model(model_args.model_name_or_path, dtype=model_args.dtype or "float32")
    model.train()
    stop_for_signal = PreemptionCallback(preemption)
    trainer = EmpoTrainer(
        model=model,
        reward_funcs=rewards,
        args=training_args,
        train_dataset=dataset,
        processing_class=tokenizer,
        peft_config=get_peft_config(model_args),
        callbacks=[JsonlMetricsCallback(), stop_for_signal,
                   StoppingCallback(empo_args.stopping, StoppingRule(empo_args.stopping_window,
                                                                     empo_args.stopping_entropy_fraction,
                                                                     empo_args.stopping_patience)),
                   *callbacks],
        empo_args=empo_args,
        clusterer=clusterer,
    )
    warn_if_fsdp_dropped(trainer)
    if trainer.pop_callback(ProgressCallback) is not None:  # a bar with live figures instead of one dict per step
        from empo.training.report import LiveProgress

        trainer.add_callback(LiveProgress())
    out = Path(training_args.output_dir)
    if checkpoint is not None:
        print(f"[empo] resuming from {checkpoint}", file=sys.stderr)
    first_step = _checkpoint_step(checkpoint)
    started = time.perf_counter()
    if preemption.signal is not None:  # signalled while loading: nothing new to save
        return _preempted(trainer, empo_args, preemption.signal, first_step, started)
    try:
        trainer.train(resume_from_checkpoint=str(checkpoint) if checkpoint else None)
    except KeyboardInterrupt:
        if trainer.accelerator.is_main_process:
            _report(trainer, empo_args, first_step, time.perf_counter() - started, interrupted=True)
        return 130
    if stop_for_signal.signal is not None:
        return _preempted(trainer, empo_args, stop_for_signal.signal, first_step, started)
    save_final(trainer, tokenizer, out)
    if trainer.accelerator.is_main_process:
        _report(trainer, empo_args, first_step, time.perf_counter() - started)
    return 0


def node_preflight(recipe) -> None:
    """Under a multi-GPU launcher, the first process of each node checks its node (empo.launch.preflight: versions,
    CUDA, driver, compiler, dataset, output directory) before any model loads; one line names what fails."""
    import os

    import torch

    from empo.errors import PreflightError
    from empo.launch import preflight

    if int(os.environ.get("WORLD_SIZE", "1")) < 2 or not torch.cuda.is_available() or \
            os.environ.get("LOCAL_RANK", "0") != "0":
        return
    deepspeed = os.environ.get("ACCELERATE_USE_DEEPSPEED", "").lower() in ("1", "true")
    checks = [preflight.versions(recipe.training.use_vllm, deepspeed), preflight.cuda(1), preflight.driver(),
              preflight.compiler(), preflight.dataset(recipe.empo), preflight.output_dir(recipe.training.output_dir)]
    failed = [c for c in checks if not c.ok]
    if failed:
        raise PreflightError("preflight failed on this node: " + "; ".join(f"{c.check}: {c.message}" for c in failed))


def save_final(trainer, tokenizer, out: Path) -> None:
    """The final model (a LoRA adapter, or full weights) into ``out``, atomically: written into a private folder, then
    moved in file by file, the config last (``adapter_config.json`` / ``config.json`` is what says a run is done)."""
    import os
    import shutil

    staging = out / ".final"
    if trainer.accelerator.is_main_process:
        shutil.rmtree(staging, ignore_errors=True)
    trainer.accelerator.wait_for_everyone()
    trainer.save_model(str(staging))
    if trainer.accelerator.is_main_process:
        tokenizer.save_pretrained(str(staging))
        last = {"adapter_config.json", "config.json"}
        for path in sorted(staging.iterdir(), key=lambda p: p.name in last):
            os.replace(path, out / path.name)
        staging.rmdir()
    trainer.accelerator.wait_for_everyone()


def _preempted(trainer, empo_args, signum: int, first_step: int, started: float) -> int:
    """After a preemption signal: the checkpoint of this step is saved; record it, say so, exit to be requeued."""
    import signal as signals

    from empo.io import atomic_write_json
    from empo.training import checkpoints
    from empo.training.preemption import RECORD, REQUEUE_EXIT

    out = Path(trainer.args.output_dir)
    trainer.accelerator.wait_for_everyone()
    if trainer.accelerator.is_main_process:
        checkpoint = checkpoints.last_complete(out)
        atomic_write_json(out / RECORD, {"signal": signals.Signals(signum).name, "step": trainer.state.global_step,
                                         "checkpoint": str(checkpoint) if checkpoint else None,
                                         "exit_status": REQUEUE_EXIT,
                                         "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())})
        _report(trainer, empo_args, first_step, time.perf_counter() - started,
                preempted=signals.Signals(signum).name)
    return REQUEUE_EXIT


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


def _report(trainer, empo_args, first_step: int, seconds: float, interrupted: bool = False,
            preempted: str | None = None) -> None:
    """The end of a run: training_curves.png, then the summary on stdout (main process only)."""
    from empo.training import checkpoints
    from empo.training.report import format_summary, plot_training_curves, summarize_run

    out = Path(trainer.args.output_dir)
    if (out / "metrics.jsonl").exists():
        plot_training_curves(out / "metrics.jsonl", out / "training_curves.png", title=out.name)
    last = checkpoints.last_complete(out)
    summary = summarize_run(out, first_step, seconds, interrupted=interrupted or bool(preempted),
                            checkpoint=str(last) if last else None, preempted=preempted)
    print("\n" + format_summary(summary, prompt=empo_args.prompt, dataset=empo_args.dataset_name,
                                clustering=empo_args.clustering), flush=True)

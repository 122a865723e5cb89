"""A training run directory records the settings that define it; a resume must use the same ones.

``empo train`` writes ``<output_dir>/empo_run.json`` = ``{"empo": ..., "model": ..., "training": ...}`` (the three
recipe dataclasses; ``empo compare`` reads the same file). Started again on a directory that has one, it compares
the *defining* settings first, before any model loads:

* equal -> the run resumes (from its last checkpoint, if any) and the record is rewritten atomically, so the
  non-defining settings it holds (e.g. an extended ``max_steps``) are the latest ones;
* different -> :class:`~empo.errors.RunDirectoryError` listing every ``key: old -> new``; the record and the
  directory are left untouched. (A record with no training output beside it -- no checkpoint, metrics, samples
  or adapter: a start that failed before its first step -- describes nothing and is simply replaced.) To go on, pick a
  new ``output_dir``, or pass ``--restart true``, which moves everything in the directory into
  ``<output_dir>.replaced-<UTC time>/`` (nothing is deleted) and starts afresh.

A directory with checkpoints but no record is refused the same way: nothing says what made them.

Defining = every setting except the ones in :data:`NOT_DEFINING` (a deny-list, so that a setting added to TRL or
to the recipe later is defining until someone decides otherwise). What is left out names, places, logs, saves or
schedules a run, or sets the machine, and cannot change what a given step computes:
"""

from __future__ import annotations

import functools
import json
import os
import time
from pathlib import Path

from empo.errors import RunDirectoryError
from empo.io import DirectoryLock, atomic_write_json

RECORD = "empo_run.json"

#: Settings that may change between a run and its resume. Everything else defines the run.
NOT_DEFINING: dict[str, frozenset[str]] = {
    "training": frozenset({
        # where the run lives and what it is called
        "output_dir", "run_name", "project", "resume_from_checkpoint", "overwrite_output_dir", "logging_dir",
        # how long it goes on: extending max_steps (or epochs) is what a resume is for
        "max_steps", "num_train_epochs",
        # logging and progress display
        "logging_steps", "logging_strategy", "logging_first_step", "logging_nan_inf_filter", "log_level",
        "log_level_replica", "log_on_each_node", "log_completions", "log_completions_hub_repo", "log_unique_prompts",
        "log_multimodal", "num_completions_to_print", "disable_tqdm", "report_to", "skip_memory_metrics",
        "include_num_input_tokens_seen", "trackio_space_id", "trackio_bucket_id", "trackio_static_space_id",
        # checkpoints and the hub
        "save_steps", "save_strategy", "save_total_limit", "save_only_model", "save_on_each_node",
        "enable_jit_checkpoint", "push_to_hub", "hub_model_id", "hub_strategy", "hub_token", "hub_private_repo",
        "hub_always_push", "hub_revision",
        # evaluation during training (does not touch the training batches)
        "do_eval", "do_predict", "eval_strategy", "eval_steps", "eval_delay", "eval_on_start",
        "per_device_eval_batch_size", "num_generations_eval", "eval_accumulation_steps",
        # machine and process plumbing
        "do_train", "local_rank", "ddp_timeout", "debug", "torch_empty_cache_steps", "dataloader_num_workers",
        "dataloader_prefetch_factor", "dataloader_pin_memory", "dataloader_persistent_workers",
        "dataloader_multiprocessing_context", "vllm_server_host", "vllm_server_port", "vllm_server_base_url",
        "vllm_server_timeout", "vllm_group_port",
    }),
    "empo": frozenset({
        # machine: threads; and wall-clock limits of the grader, which depend on the machine (when they bind is
        # logged per step: empo/math_timeouts, empo/groups_over_budget)
        "num_threads", "math_timeout", "group_time_budget",
        # logs
        "log_samples_every",
        # label-free stopping: it watches the run and may end it early, as max_steps does; no step computes anything
        # else (collapse_*: the monitor it replaced, in older records)
        "stopping", "stopping_window", "stopping_entropy_fraction", "stopping_patience",
        "collapse_early_stop", "collapse_patience",
    }),
    "model": frozenset(),
}
#: New name -> old name, per section: a library renamed a setting and keeps the old one as an alias (transformers 5.2x).
RENAMED = {"training": {"activation_checkpointing": "gradient_checkpointing",
                        "activation_checkpointing_kwargs": "gradient_checkpointing_kwargs"}}
#: EmpoArguments fields that are actions of one invocation, never recorded.
NOT_RECORDED = frozenset({"restart"})

__doc__ += "\n" + "\n".join(f"* ``{section}``: {', '.join(sorted(keys)) or '(none)'}"
                            for section, keys in NOT_DEFINING.items()) + "\n"


def run_record(empo_args, training_args, model_args) -> dict:
    """The record as it will be read back from disk (JSON types)."""
    record = {"empo": {k: v for k, v in vars(empo_args).items() if k not in NOT_RECORDED},
              "model": vars(model_args),
              "training": json.loads(training_args.to_json_string())}
    return json.loads(json.dumps(record, default=str))


def defining_differences(old: dict, new: dict) -> list[str]:
    """``section.key: old -> new`` for every defining setting that differs, both records completed by
    :func:`complete_record` first. A setting only the old record has (a field the installed library dropped) still
    differs: nothing says what its absence does now."""
    old, new = complete_record(old), complete_record(new)
    diffs = []
    for section in ("empo", "model", "training"):
        before, now = old.get(section, {}) or {}, new.get(section, {}) or {}
        for key in sorted((before.keys() | now.keys()) - NOT_DEFINING.get(section, frozenset())):
            if key in NOT_RECORDED:
                continue
            a, b = before.get(key, "<unset>"), now.get(key, "<unset>")
            if json.dumps(a, sort_keys=True) != json.dumps(b, sort_keys=True):
                diffs.append(f"{key}: {a!r} -> {b!r}")
    return diffs


def complete_record(record: dict) -> dict:
    """The record with every setting it lacks -- added to empo, TRL or transformers after it was written -- filled
    in: a library's new name of a setting the record holds (:data:`RENAMED`) as that setting, any other as its
    default in the installed class (a new field's default keeps the behaviour the library had before it existed).
    What a resume and a comparison of runs read, so a record written under transformers 5.19 reads the same
    under 5.25 (which added ``activation_checkpointing``)."""
    out = dict(record)
    for section in ("empo", "model", "training"):
        held = dict(record.get(section) or {})
        filled = {**_field_defaults(section),
                  **{new_name: held[old_name] for new_name, old_name in RENAMED.get(section, {}).items()
                     if old_name in held}}
        out[section] = {**{k: v for k, v in filled.items() if k not in NOT_RECORDED}, **held}
    return out


@functools.cache  # the installed classes do not change in a process; callers only read it
def _field_defaults(section: str) -> dict:
    """The installed class's default of each field of a record section, as the record writes it (JSON; an enum
    by its value, as ``TrainingArguments.to_json_string`` writes it). Fields without a default are left out. The
    class's, not an instance's: ``GRPOConfig()`` depends on the machine (its bf16 default fails without a GPU)."""
    import dataclasses
    import enum

    from empo.configs import EmpoArguments

    if section == "empo":
        cls = EmpoArguments
    else:
        from trl import GRPOConfig, ModelConfig

        cls = GRPOConfig if section == "training" else ModelConfig
    defaults = {}
    for field in dataclasses.fields(cls):
        if field.default is not dataclasses.MISSING:
            value = field.default
        elif field.default_factory is not dataclasses.MISSING:
            value = field.default_factory()
        else:
            continue
        defaults[field.name] = value.value if isinstance(value, enum.Enum) else value
    return json.loads(json.dumps(defaults, default=str))


#: Files a run writes once it trains (besides checkpoint-* directories).
OUTPUTS = ("metrics.jsonl", "samples.jsonl", "adapter_config.json", "model.safetensors")


def _has_checkpoints(out: Path) -> bool:
    return any(p.is_dir() and p.name.startswith("checkpoint-") for p in out.iterdir())


def _has_training_output(out: Path) -> bool:
    return _has_checkpoints(out) or any((out / name).exists() for name in OUTPUTS)


def _move_aside(out: Path) -> Path | None:
    """Move every entry of ``out`` except the lock into ``<out>.replaced-<UTC time>/``; None when empty."""
    entries = [p for p in out.iterdir() if p.name != DirectoryLock.FILENAME]
    if not entries:
        return None
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    dest = out.with_name(f"{out.name}.replaced-{stamp}")
    n = 1
    while dest.exists():
        n += 1
        dest = out.with_name(f"{out.name}.replaced-{stamp}-{n}")
    dest.mkdir(parents=True)
    for p in entries:
        os.replace(p, dest / p.name)
    return dest


def check_run_directory(out: str | os.PathLike, record: dict) -> None:
    """Raise :class:`RunDirectoryError` unless ``out`` is empty, absent, or holds a run with these settings."""
    out = Path(out)
    path = out / RECORD
    how = ("use a new --output_dir, or pass --restart true to move the old run to "
           f"{out.name}.replaced-<time>/ and start afresh")
    if path.is_file():
        try:
            before = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as e:
            raise RunDirectoryError(f"{path} cannot be read ({e}); {how}") from None
        diffs = defining_differences(before, record)
        if diffs and _has_training_output(out):
            raise RunDirectoryError(f"{out} holds a run with other settings ({'; '.join(diffs)}); "
                                    f"resuming would train it with settings it never recorded; {how}")
    elif out.is_dir() and _has_checkpoints(out):
        raise RunDirectoryError(f"{out} has checkpoints but no {RECORD} saying what made them; {how}")


def prepare_run_directory(out: str | os.PathLike, record: dict, restart: bool = False) -> Path | None:
    """Check ``out`` against ``record`` (or move the old run aside with ``restart``), then write the record.

    Call with the directory's lock held (main process only). Returns where an old run was moved, if it was.
    """
    out = Path(out)
    moved = None
    if restart and out.is_dir():
        moved = _move_aside(out)
    else:
        check_run_directory(out, record)
    atomic_write_json(out / RECORD, record)
    return moved

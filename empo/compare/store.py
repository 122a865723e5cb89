"""A sweep's results in a store, not in its run directories: a study outlives the machine that ran it.

A *bundle* is what a finished run leaves for the report, without weights (``<store>/runs/<method>-seed<seed>/``):

* ``empo_run.json``, ``metrics.jsonl``, ``stopping.json`` (when the run has one), as the run wrote them;
* ``samples.jsonl`` without the completions' text: per group and step the answers, clusters, rewards, advantages,
  whether it trained and the gold answer (what ``empo.training.pseudo_labels`` grades the pseudo-labels from);
* ``eval/<block>/`` for each of the sweep's eval blocks that covers the run (every question's result), and
  ``eval/checkpoint-<N>/<block>/`` for the blocks the sweep evaluates at every checkpoint (the stopping study's);
* ``bundle.json``, written last (a bundle without it is unfinished and ignored): the run's name, method and seed,
  each eval block's settings, the spec's hash, the commit its training started from (and the one it was bundled
  at, when the checkout moved on meanwhile), the machine and versions, the completion tokens
  the run generated, its wall time (training and evals, every invocation of the sweep that worked on it), and when.

The base model's evals live in ``<store>/base/<block>/`` with their own ``bundle.json``.

A bundle is **done** when its run's defining settings (``empo.training.run_dir.defining_differences``, an empo
setting that did not exist yet counting as its default), its ``max_steps``, and every needed eval block's settings
equal the spec's; otherwise it is **stale** -- named with the first difference, never used, replaced when the run is
made again. Code is not a setting: a bundle records the commit that made it, and a report lists every commit behind
its numbers. Bundles are written into a temporary directory and renamed into place, so a kill leaves either the old
bundle or the new one.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path

from empo.errors import CompareError
from empo.io import atomic_write_json, read_jsonl

BUNDLE = "bundle.json"
#: Copied as the run wrote them (when present).
RUN_FILES = ("empo_run.json", "metrics.jsonl", "stopping.json")
#: Dropped from each training samples.jsonl row: the completions' text (the report reads answers, not text).
DROPPED_SAMPLE_FIELDS = ("completions",)
FORMAT = 1


def block_settings(block) -> dict:
    """An eval block's settings that decide its results (its name and seed selection do not)."""
    return {k: v for k, v in asdict(block).items() if k not in ("name", "seeds")}


def spec_hash(spec_path: str | Path | None) -> str | None:
    """The spec file's hash (None for a sweep built in code, with no file)."""
    return hashlib.sha256(Path(spec_path).read_bytes()).hexdigest()[:16] if spec_path else None


@dataclass
class RunState:
    """A run of the sweep as the store sees it."""

    name: str
    method: str
    seed: int
    state: str                  # "done", "stale" or "missing"
    reason: str = ""            # why stale
    wall_seconds: float | None = None


class Store:
    def __init__(self, root: str | Path):
        self.root = Path(root)

    def run_path(self, name: str) -> Path:
        return self.root / "runs" / name

    def base_path(self, block_name: str) -> Path:
        return self.root / "base" / block_name

    def report_path(self) -> Path:
        return self.root / "compare"

    @staticmethod
    def read(path: Path) -> dict | None:
        file = path / BUNDLE
        if not file.is_file():
            return None
        try:
            return json.loads(file.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as e:
            raise CompareError(f"store: {file} cannot be read ({e}); delete that bundle to make it again") from None

    def bundles(self) -> list[dict]:
        runs = self.root / "runs"
        found = [self.read(p) for p in sorted(runs.iterdir()) if not p.name.startswith(".")] if runs.is_dir() else []
        return [b for b in found if b is not None]

    # --- writing ----------------------------------------------------------------------------------------------
    def write_run(self, run_dir: Path, info: dict, blocks: list, checkpoint_blocks: list) -> Path:
        """Bundle a finished, evaluated run (``blocks``: the eval blocks that cover it; ``checkpoint_blocks``: those
        evaluated at every checkpoint too) into ``runs/<run name>``, replacing any stale bundle."""
        dest = self.run_path(run_dir.name)

        def fill(tmp: Path) -> None:
            for name in RUN_FILES:
                if (run_dir / name).exists():
                    shutil.copy2(run_dir / name, tmp / name)
            samples = run_dir / "samples.jsonl"
            if samples.exists():
                rows = [{k: v for k, v in r.items() if k not in DROPPED_SAMPLE_FIELDS} for r in read_jsonl(samples)]
                (tmp / "samples.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
            for block in blocks:
                _copy_eval(run_dir / "eval" / block.name, tmp / "eval" / block.name)
            for block in checkpoint_blocks:
                for step, src in checkpoint_eval_dirs(run_dir, block.name).items():
                    _copy_eval(src, tmp / "eval" / f"checkpoint-{step}" / block.name)
            atomic_write_json(tmp / BUNDLE, {
                "format": FORMAT, **info, "evals": {b.name: block_settings(b) for b in blocks},
                "checkpoint_evals": {b.name: sorted(checkpoint_eval_dirs(tmp, b.name)) for b in checkpoint_blocks},
            })

        return self._replace(dest, fill)

    def write_base(self, eval_dir: Path, block, info: dict) -> Path:
        def fill(tmp: Path) -> None:
            _copy_eval(eval_dir, tmp)
            atomic_write_json(tmp / BUNDLE, {"format": FORMAT, **info, "settings": block_settings(block)})

        return self._replace(self.base_path(block.name), fill)

    @staticmethod
    def _replace(dest: Path, fill) -> Path:
        dest.parent.mkdir(parents=True, exist_ok=True)
        tmp = dest.with_name(f".{dest.name}.writing-{os.getpid()}")
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir()
        fill(tmp)
        if dest.exists():  # a stale bundle: out of the way first, so that the rename below is atomic
            old = dest.with_name(f".{dest.name}.old-{os.getpid()}")
            shutil.rmtree(old, ignore_errors=True)
            os.replace(dest, old)
            os.replace(tmp, dest)
            shutil.rmtree(old)
        else:
            os.replace(tmp, dest)
        return dest

    # --- reading against a spec -------------------------------------------------------------------------------
    def base_done(self, block, model: str) -> bool:
        bundle = self.read(self.base_path(block.name))
        return bundle is not None and bundle.get("settings") == block_settings(block) and bundle.get("model") == model

    def run_state(self, name: str, method: str, seed: int, record: dict, max_steps: int | None, blocks: list,
                  checkpoint_blocks: list) -> RunState:
        """Whether the bundle of this run is done (matches the spec), stale (and why) or missing."""
        from empo.training.run_dir import defining_differences

        path = self.run_path(name)
        bundle = self.read(path)
        if bundle is None:
            return RunState(name, method, seed, "missing")
        state = RunState(name, method, seed, "stale", wall_seconds=bundle.get("wall_seconds"))
        stored = json.loads((path / "empo_run.json").read_text(encoding="utf-8"))
        diffs = defining_differences(stored, record)
        if diffs:
            state.reason = "settings differ: " + "; ".join(diffs)
            return state
        if max_steps is not None and stored["training"].get("max_steps") != max_steps:
            state.reason = f"max_steps {stored['training'].get('max_steps')} -> {max_steps}"
            return state
        for block in blocks:
            had = bundle["evals"].get(block.name)
            if had != block_settings(block):
                state.reason = f"eval block '{block.name}' " + ("missing" if had is None else "settings differ")
                return state
        for block in checkpoint_blocks:
            if block.name not in bundle.get("checkpoint_evals", {}):
                state.reason = f"no checkpoint evals of block '{block.name}'"
                return state
        state.state, state.reason = "done", ""
        return state


def _copy_eval(src: Path, dest: Path) -> None:
    if not (src / "samples.jsonl").exists():
        raise CompareError(f"store: no eval in {src} to bundle")
    dest.mkdir(parents=True, exist_ok=True)
    for p in src.iterdir():
        if p.is_file():
            shutil.copy2(p, dest / p.name)


def checkpoint_eval_dirs(run_path: Path, block_name: str) -> dict[int, Path]:
    """step -> ``<run>/eval/checkpoint-<step>/<block>`` for each complete checkpoint eval (its summary written)."""
    out = {}
    evals = run_path / "eval"
    for p in evals.glob("checkpoint-*") if evals.is_dir() else []:
        d = p / block_name
        if p.name.split("-", 1)[1].isdigit() and (d / "summary.json").exists():
            out[int(p.name.split("-", 1)[1])] = d
    return dict(sorted(out.items()))


def bundle_info(name: str, method: str, seed: int, spec: str | Path | None, wall_seconds: float,
                generated_tokens: float | None, started_commit: str | None = None) -> dict:
    """``started_commit``: the checkout's commit when the run's training started (the code that trained it; a
    session may commit while a run trains). When the checkout moved on before the bundle, that commit is
    ``bundled_at_commit``."""
    from empo.provenance import provenance

    p = provenance()
    commit = started_commit or p["commit"]
    moved = {"bundled_at_commit": p["commit"]} if p["commit"] != commit else {}
    return {"name": name, "method": method, "seed": seed, "spec": spec and str(spec), "spec_hash": spec_hash(spec),
            "commit": commit, **moved, "machine": p["machine"], "versions": p["versions"], "date": p["date"],
            "wall_seconds": round(wall_seconds, 1), "generated_tokens": generated_tokens}


def store_provenance(store: Store, command: list[str], names: list[str]) -> dict:
    """The provenance of a report made from the store: every commit and machine behind its bundles (the base's
    included), their versions (the first bundle's, with any other values listed), and the latest bundle's date."""
    bundles = [store.read(store.run_path(n)) for n in names]
    base = store.root / "base"
    bundles += [store.read(p) for p in sorted(base.iterdir()) if not p.name.startswith(".")] if base.is_dir() else []
    bundles = [b for b in bundles if b is not None]
    commits = sorted({str(b.get("commit")) for b in bundles})
    machines = sorted({b.get("machine", "?") for b in bundles})
    versions: dict[str, str] = {}
    for b in bundles:
        for k, v in (b.get("versions") or {}).items():
            seen = versions.setdefault(k, v)
            if v not in seen.split(" / "):
                versions[k] = f"{seen} / {v}"
    return {"command": " ".join(command), "commit": ", ".join(commits) + f" ({len(bundles)} bundles)",
            "machine": "; ".join(machines), "versions": versions,
            "date": max((b.get("date", "") for b in bundles), default="")}


def estimate_seconds(states: list[RunState], method: str) -> float | None:
    """A missing run's wall time as its finished siblings say: the mean of its arm's done runs, else of all."""
    same = [s.wall_seconds for s in states if s.state == "done" and s.method == method and s.wall_seconds]
    every = [s.wall_seconds for s in states if s.state == "done" and s.wall_seconds]
    pool = same or every
    return sum(pool) / len(pool) if pool else None


def format_status(states: list[RunState]) -> str:
    lines = []
    for s in states:
        estimate = estimate_seconds(states, s.method)
        note = (f"{s.wall_seconds / 60:.1f} min" if s.state == "done" and s.wall_seconds else
                s.reason if s.state == "stale" else "")
        if s.state != "done" and estimate is not None:
            note += ("; " if note else "") + f"about {estimate / 60:.0f} min"
        lines.append(f"  {s.state:8s} {s.name:32s} {note}")
    todo = [s for s in states if s.state != "done"]
    estimates = [estimate_seconds(states, s.method) for s in todo]
    known = [e for e in estimates if e is not None]
    if not todo:
        left = "nothing left"
    elif not known:
        left = "no estimate of the time left yet (no run of the sweep is done)"
    else:
        left = f"about {sum(known) / 60:.0f} min left" + (
            f" (+{len(todo) - len(known)} runs without an estimate)" if len(known) < len(todo) else "") + \
            " (from finished siblings' wall time)"
    done = sum(s.state == "done" for s in states)
    stale = sum(s.state == "stale" for s in states)
    return "\n".join([f"{done} of {len(states)} runs done, {stale} stale, {len(states) - done - stale} missing; "
                      f"{left}", *lines])

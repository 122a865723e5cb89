"""Sweeps: one recipe trained with each method and seed (a YAML spec), what is missing trained first (a run shorter
than the spec's ``max_steps`` resumes), then compared."""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import MISSING, dataclass, field, fields
from pathlib import Path

from empo.compare.comparison import EvalBlock, compare
from empo.errors import CompareError, ConfigError


@dataclass
class Method:
    """One arm of a sweep: its reward(s) and the recipe keys that make it this method (e.g. the filter off)."""

    name: str = field(metadata={"help": "Names the runs: <output_root>/<name>-seed<seed>."})
    reward_funcs: list[str] | None = field(default=None, metadata={"help": "The run's reward_funcs (default: [name])."})
    overrides: dict = field(default_factory=dict, metadata={
        "help": "Recipe keys of this method, set after the sweep's own overrides (e.g. entropy_filter: false)."})

    def __post_init__(self):
        self.reward_funcs = self.reward_funcs or [self.name]


@dataclass
class Sweep:
    """A sweep spec (YAML): one recipe trained with each method and seed, then compared."""

    recipe: str = field(metadata={"help": "The recipe every run starts from."})
    output_root: str = field(metadata={"help": "Runs go to <output_root>/<method>-seed<seed>; the report to "
                                               "<output_root>/compare."})
    methods: list = field(default_factory=lambda: ["empo", "gold_accuracy", "random"], metadata={
        "help": "One entry per method: a reward name, or a mapping of Method fields (name, reward_funcs, overrides)."})
    seeds: list[int] = field(default_factory=lambda: [0, 1, 2], metadata={"help": "Replicates."})
    overrides: dict = field(default_factory=dict, metadata={"help": "Recipe keys set in every run."})
    evals: list[dict] = field(default_factory=list, metadata={"help": "EvalBlock fields, one mapping per block."})

    @classmethod
    def from_yaml(cls, path: str | Path) -> Sweep:
        from empo import resources
        from empo.io import read_yaml

        path = resources.resolve(path, "recipes") or path  # a file, or a shipped sweep (recipes/<model>/sweeps/x.yaml)
        raw = read_yaml(path, "sweep spec")
        if not isinstance(raw, dict):
            raise CompareError(f"sweep spec '{path}' is not a YAML mapping")
        unknown = set(raw) - set(cls.__dataclass_fields__)
        if unknown:
            raise CompareError(f"sweep spec '{path}': unknown key(s) {sorted(unknown)}; "
                               f"known: {sorted(cls.__dataclass_fields__)}")
        missing = [f.name for f in fields(cls) if f.name not in raw
                   and f.default is MISSING and f.default_factory is MISSING]
        if missing:
            raise CompareError(f"sweep spec '{path}' needs {', '.join(missing)}")
        sweep = cls(**raw)
        sweep.blocks()
        sweep.arms()
        return sweep

    def blocks(self) -> list[EvalBlock]:
        known = set(EvalBlock.__dataclass_fields__)
        for b in self.evals:
            if set(b) - known or "name" not in b:
                raise CompareError(f"sweep eval block {b}: needs 'name'; unknown key(s) {sorted(set(b) - known)}")
        return [EvalBlock(**b) for b in self.evals] or [EvalBlock(name="arith")]

    def arms(self) -> list[Method]:
        known = set(Method.__dataclass_fields__)
        arms = []
        for m in self.methods:
            if isinstance(m, str):
                m = {"name": m}
            if not isinstance(m, dict) or "name" not in m or set(m) - known:
                raise CompareError(f"sweep method {m!r}: a reward name, or a mapping with 'name' and optionally "
                                   f"'reward_funcs', 'overrides'")
            arms.append(Method(**m))
        names = [a.name for a in arms]
        if len(set(names)) < len(names):
            raise CompareError(f"sweep methods: a name appears twice in {names}")
        return arms

    def run_dir(self, method: Method, seed: int) -> Path:
        return Path(self.output_root) / f"{method.name}-seed{seed}"

    def max_steps(self) -> int | None:
        """The runs' max_steps (the recipe's, with the sweep's overrides), to tell a finished run from a shorter one."""
        from empo.recipe import load_recipe

        try:
            recipe = load_recipe(self.recipe, _flags(self.overrides), check_machine=False)
        except ConfigError as e:
            raise CompareError(f"sweep recipe: {e}") from None
        return recipe.training.max_steps if recipe.training.max_steps > 0 else None

    def train_command(self, method: Method, seed: int) -> list[str]:
        return [sys.executable, "-m", "empo.train", "--config", self.recipe, "--reward_funcs", *method.reward_funcs,
                "--seed", str(seed), "--output_dir", str(self.run_dir(method, seed)),
                *_flags({**self.overrides, **method.overrides})]


def _flags(overrides: dict) -> list[str]:
    """Recipe keys as ``empo train`` flags: ``{"max_steps": 4, "reward_funcs": [a, b]}`` -> ``--max_steps 4 ...``;
    a mapping as JSON: ``{"reward_options": {"random": {"seed": 1}}}`` -> ``--reward_options '{"random": ...}'``."""
    flags = []
    for k, v in overrides.items():
        value = [json.dumps(v)] if isinstance(v, dict) else map(str, v) if isinstance(v, list) else [str(v)]
        flags += [f"--{k}", *value]  # a mapping (reward_options) as the JSON object the flag takes
    return flags


def finished(run: Path, max_steps: int | None) -> bool:
    """A final adapter is saved, from a run that reached ``max_steps`` (a longer sweep resumes the shorter runs)."""
    from empo.training.checkpoints import last_complete, step_of

    if not (run / "adapter_config.json").exists():
        return False
    if max_steps is None:
        return True
    last = last_complete(run)
    return last is not None and step_of(last) >= max_steps


def run_sweep(sweep: Sweep, allow: set[str] = frozenset(), progress: bool = True) -> dict:
    """Train every (method, seed) not finished yet (a killed run resumes from its checkpoint), then compare."""
    arms, max_steps = sweep.arms(), sweep.max_steps()
    for method in arms:
        for seed in sweep.seeds:
            run = sweep.run_dir(method, seed)
            if finished(run, max_steps):
                continue
            print(f"[empo] sweep: training {run}", file=sys.stderr)
            rc = subprocess.run(sweep.train_command(method, seed), check=False).returncode
            if rc != 0:  # its own message (e.g. a refused resume) is on stderr just above
                raise CompareError(f"training {run} failed (exit status {rc}); the sweep stops here")
    dirs = [sweep.run_dir(m, s) for m in arms for s in sweep.seeds]
    return compare(dirs, sweep.blocks(), Path(sweep.output_root) / "compare", allow=allow, progress=progress)

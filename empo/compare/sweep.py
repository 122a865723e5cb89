"""Sweeps: one recipe trained with each method and seed (a YAML spec), what is missing trained first (a run shorter
than the spec's ``max_steps`` resumes), then compared.

With a store (``empo compare --sweep SPEC --store DIR``, :mod:`empo.compare.store`) a sweep spans machines: each run
that finishes is evaluated and bundled into the store; a sweep started anywhere reads the store, trains and evaluates
only the runs it lacks (or holds stale), and writes the report from the store alone. ``--time-budget`` starts no run
that its finished siblings say would not end in time; ``--status`` lists what is done, stale and missing.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
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
    path: Path | None = field(default=None, init=False, repr=False, metadata={
        "help": "The spec file (set by from_yaml; bundles record its hash)."})
    checkpoint_evals: list[str] = field(default_factory=list, metadata={
        "help": "Names of eval blocks also evaluated at every saved checkpoint before the final one (the stopping "
                "study's; a store keeps them, so it can be judged after the run directories are gone)."})

    @classmethod
    def from_yaml(cls, path: str | Path) -> Sweep:
        from empo import resources
        from empo.io import read_yaml

        path = resources.resolve(path, "recipes") or path  # a file, or a shipped sweep (recipes/<model>/sweeps/x.yaml)
        raw = read_yaml(path, "sweep spec")
        if not isinstance(raw, dict):
            raise CompareError(f"sweep spec '{path}' is not a YAML mapping")
        keys = {f.name for f in fields(cls) if f.init}
        unknown = set(raw) - keys
        if unknown:
            raise CompareError(f"sweep spec '{path}': unknown key(s) {sorted(unknown)}; known: {sorted(keys)}")
        missing = [f.name for f in fields(cls) if f.name not in raw
                   and f.default is MISSING and f.default_factory is MISSING]
        if missing:
            raise CompareError(f"sweep spec '{path}' needs {', '.join(missing)}")
        sweep = cls(**raw)
        sweep.path = Path(path)
        sweep.checkpoint_blocks()
        sweep.arms()
        return sweep

    def blocks(self) -> list[EvalBlock]:
        known = set(EvalBlock.__dataclass_fields__)
        for b in self.evals:
            if set(b) - known or "name" not in b:
                raise CompareError(f"sweep eval block {b}: needs 'name'; unknown key(s) {sorted(set(b) - known)}")
        return [EvalBlock(**b) for b in self.evals] or [EvalBlock(name="arith")]

    def checkpoint_blocks(self) -> list[EvalBlock]:
        blocks = {b.name: b for b in self.blocks()}
        unknown = [n for n in self.checkpoint_evals if n not in blocks]
        if unknown:
            raise CompareError(f"sweep checkpoint_evals {unknown}: not among the eval blocks {sorted(blocks)}")
        return [blocks[n] for n in self.checkpoint_evals]

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

    def train_flags(self, method: Method, seed: int) -> list[str]:
        """The recipe overrides of one run (after ``--config <recipe>``)."""
        return ["--reward_funcs", *method.reward_funcs, "--seed", str(seed),
                "--output_dir", str(self.run_dir(method, seed)), *_flags({**self.overrides, **method.overrides})]

    def train_command(self, method: Method, seed: int) -> list[str]:
        return [sys.executable, "-m", "empo.train", "--config", self.recipe, *self.train_flags(method, seed)]

    def run_record(self, method: Method, seed: int) -> dict:
        """The settings ``empo train`` will record for this run (``empo_run.json``), from the recipe and flags."""
        from empo.recipe import load_recipe
        from empo.training.run_dir import run_record

        try:
            recipe = load_recipe(self.recipe, self.train_flags(method, seed), check_machine=False)
        except ConfigError as e:
            raise CompareError(f"sweep recipe, method {method.name}: {e}") from None
        return run_record(recipe.empo, recipe.training, recipe.model)


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


clock = time.monotonic  # the sweep's clock (a test's fake one drives the time budget)


def train_run(sweep: Sweep, method: Method, seed: int) -> None:
    """Train one run of the sweep unless it is finished (a killed run resumes from its checkpoint)."""
    run = sweep.run_dir(method, seed)
    if finished(run, sweep.max_steps()):
        return
    print(f"[empo] sweep: training {run}", file=sys.stderr)
    rc = subprocess.run(sweep.train_command(method, seed), check=False).returncode
    if rc != 0:  # its own message (e.g. a refused resume) is on stderr just above
        raise CompareError(f"training {run} failed (exit status {rc}); the sweep stops here")


def run_sweep(sweep: Sweep, allow: set[str] = frozenset(), progress: bool = True) -> dict:
    """Train every (method, seed) not finished yet (a killed run resumes from its checkpoint), then compare."""
    arms = sweep.arms()
    for method in arms:
        for seed in sweep.seeds:
            train_run(sweep, method, seed)
    dirs = [sweep.run_dir(m, s) for m in arms for s in sweep.seeds]
    return compare(dirs, sweep.blocks(), Path(sweep.output_root) / "compare", allow=allow, progress=progress)


def evaluate_checkpoints(run: Path, settings: dict, block: EvalBlock, final_step: int | None,
                         progress: bool = True) -> None:
    """Evaluate each complete checkpoint before the final step on ``block`` into
    ``<run>/eval/checkpoint-<N>/<block>`` (cached: an eval whose summary is written is complete)."""
    from empo.compare.comparison import evaluate_target
    from empo.training.checkpoints import complete_checkpoints, step_of

    for checkpoint in complete_checkpoints(run):
        step = step_of(checkpoint)
        out = run / "eval" / checkpoint.name / block.name
        if (final_step is not None and step >= final_step) or (out / "summary.json").exists():
            continue
        evaluate_target(settings, checkpoint, {block.name: out}, [block], f"{run.name} {checkpoint.name}", progress)


def sweep_states(sweep: Sweep, store) -> list:
    """Every run of the sweep as the store sees it (:class:`empo.compare.store.RunState`)."""
    max_steps, blocks, checkpoint_blocks = sweep.max_steps(), sweep.blocks(), sweep.checkpoint_blocks()
    states = []
    for seed in sweep.seeds:  # seed-major: an unfinished sweep is a whole replicate before it is part of a second
        for method in sweep.arms():
            covering = [b for b in blocks if b.seeds is None or seed in b.seeds]
            states.append(store.run_state(sweep.run_dir(method, seed).name, method.name, seed,
                                          sweep.run_record(method, seed), max_steps, covering,
                                          [b for b in checkpoint_blocks if b in covering]))
    return states


def run_stored_sweep(sweep: Sweep, store, allow: set[str] = frozenset(), time_budget: float | None = None,
                     command: list[str] | None = None, progress: bool = True) -> tuple[list, dict | None]:
    """The sweep through a store: evaluate the base model on every block and bundle it (unless the store has it);
    for every run the store lacks or holds stale, train it here (resuming its run directory when there is one),
    evaluate it, bundle it; then write the report from the store, to ``<store>/compare``. ``time_budget``
    (seconds): start no run whose estimate (its finished siblings' wall time) would end past it. Returns the runs'
    states and the comparison (None while runs are missing)."""
    from empo.compare.comparison import evaluate_target
    from empo.compare.runs import method_name
    from empo.compare.store import bundle_info, estimate_seconds, store_provenance
    from empo.provenance import git_commit
    from empo.training.report import step_rows

    started = clock()
    arms, blocks, checkpoint_blocks = sweep.arms(), sweep.blocks(), sweep.checkpoint_blocks()
    states = sweep_states(sweep, store)
    first = sweep.run_record(arms[0], sweep.seeds[0])
    settings = _flat(first)
    for block in blocks:
        if not store.base_done(block, settings["model.model_name_or_path"]):
            out = Path(sweep.output_root) / "compare" / "base" / block.name
            evaluate_target(settings, None, {block.name: out}, [block], "base", progress)
            store.write_base(out, block, {**bundle_info("base", "base", 0, sweep.path, 0.0, None),
                                          "model": settings["model.model_name_or_path"]})
    by_name = {sweep.run_dir(m, s).name: (m, s) for m in arms for s in sweep.seeds}
    for state in states:
        if state.state == "done":
            continue
        estimate = estimate_seconds(states, state.method)
        if time_budget is not None and estimate is not None and clock() - started + estimate > time_budget:
            print(f"[empo] sweep: not starting {state.name} (about {estimate / 60:.0f} min; the time budget ends in "
                  f"{(time_budget - clock() + started) / 60:.0f} min)", file=sys.stderr)
            continue
        if state.state == "stale":
            print(f"[empo] sweep: {state.name} in the store is stale ({state.reason}); making it again",
                  file=sys.stderr)
        method, seed = by_name[state.name]
        run = sweep.run_dir(method, seed)
        t0 = clock()
        started_commit = git_commit()  # the code that trains it, even if the checkout moves on meanwhile
        try:
            train_run(sweep, method, seed)
            record = json.loads((run / "empo_run.json").read_text(encoding="utf-8"))
            run_settings = _flat(record)
            covering = [b for b in blocks if b.seeds is None or seed in b.seeds]
            evaluate_target(run_settings, run, {b.name: run / "eval" / b.name for b in covering}, covering,
                            run.name, progress)
            covering_checkpoints = [b for b in checkpoint_blocks if b in covering]
            for block in covering_checkpoints:
                evaluate_checkpoints(run, run_settings, block, sweep.max_steps(), progress)
        finally:  # an interrupted invocation's time counts too (Ctrl-C, or the run preempted), not only the last one's
            seconds = _add_wall_time(run, clock() - t0)
        tokens = sum(float(r.get("empo/generated_tokens") or 0.0) for r in step_rows(run / "metrics.jsonl"))
        store.write_run(run, bundle_info(run.name, method_name(record), seed, sweep.path, seconds, tokens,
                                         started_commit),
                        covering, covering_checkpoints)
        state.state, state.reason, state.wall_seconds = "done", "", seconds
        print(f"[empo] sweep: {run.name} bundled into {store.run_path(run.name)} ({seconds / 60:.1f} min)",
              file=sys.stderr)
    done = [s for s in states if s.state == "done"]
    if len(done) < len(states):
        return states, None
    names = [s.name for s in states]
    source = store_provenance(store, command or ["python", *sys.argv], names)
    comparison = compare([store.run_path(n) for n in names], blocks, store.report_path(), allow=allow,
                         evaluate=False, progress=progress, base_root=store.root / "base", source=source)
    return states, comparison


def write_interim(sweep: Sweep, store, command: list[str], allow: set[str] = frozenset(),
                  progress: bool = True) -> tuple[list, Path | None]:
    """The report of the runs the store has done so far, into ``<store>/interim`` (headed "interim: N of M runs",
    the missing ones named), while the sweep is unfinished: trains and evaluates nothing. ``command``: the one that
    continues the sweep. Returns the states and the report's directory (None when no run is done)."""
    from empo.compare.store import store_provenance
    from empo.io import atomic_write_text

    states = sweep_states(sweep, store)
    names = [s.name for s in states if s.state == "done"]
    if not names:
        return states, None
    out = store.root / "interim"
    compare([store.run_path(n) for n in names], sweep.blocks(), out, allow=allow, evaluate=False,
            progress=progress, base_root=store.root / "base",
            source=store_provenance(store, [*command, "--interim"], names))
    missing = [s.name for s in states if s.state != "done"]
    head, _, rest = (out / "report.md").read_text(encoding="utf-8").partition("\n")
    note = (f"**Interim: {len(names)} of {len(states)} runs** -- an arm with fewer seeds than the sweep's is not its "
            f"result yet. Missing: {', '.join(missing) or 'none'}. `{' '.join(command)}` continues the sweep; once "
            f"the store is full it writes the report to `{store.report_path().name}/`.")
    atomic_write_text(out / "report.md", f"{head}\n\n{note}\n{rest}")
    return states, out


def _flat(record: dict) -> dict:
    return {f"{section}.{k}": v for section in ("empo", "model", "training") for k, v in record[section].items()}


WALL_TIME = "sweep_wall_seconds.json"


def _add_wall_time(run: Path, seconds: float) -> float:
    """The run's wall time over every sweep invocation that worked on it (kept in its directory until bundled)."""
    from empo.io import atomic_write_json

    path = run / WALL_TIME
    if not run.is_dir():  # interrupted before the run made its directory: nothing to keep it in, little to count
        return seconds
    total = seconds + (json.loads(path.read_text(encoding="utf-8"))["seconds"] if path.exists() else 0.0)
    atomic_write_json(path, {"seconds": total})
    return total

"""A sweep through a store (``empo compare --sweep SPEC --store DIR``): bundles, continuation on another machine with
only the store, staleness, the time budget and the status. Training and evaluation are faked (deterministic per
run), everything else is the real code path: the spec's records, the store, the report."""

import hashlib
import importlib.util
import json
import shutil
import subprocess
from pathlib import Path

import pytest

import empo.compare.comparison as comparison_module
import empo.compare.sweep as sweep_module
import empo.provenance as provenance_module
from empo.cli import main as cli_main
from empo.compare.store import Store
from empo.compare.sweep import Sweep, run_stored_sweep, sweep_states
from empo.training.checkpoints import mark_complete

REAL_RUN = subprocess.run
CLOCK = [0.0]  # the sweep's clock, in seconds: a fake run takes its trainer's minutes
REPO = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location("study_stopping", REPO / "scripts" / "study_stopping.py")
study_stopping = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(study_stopping)
RECIPE = REPO / "recipes/SmolLM2-135M-Instruct/empo/config_arith_cpu.yaml"
SPEC = f"""recipe: {RECIPE}
output_root: runs/sweep
methods: [empo, random, {{name: empo-nofilter, reward_funcs: [empo], overrides: {{entropy_filter: false}}}}]
seeds: [0, 1]
overrides: {{max_steps: 4, save_steps: 2, num_threads: 2}}
evals:
  - {{name: greedy, benchmarks: arith, limit: 20, n: 0, max_new_tokens: 48}}
  - {{name: sampled, benchmarks: arith, limit: 20, n: 4, max_new_tokens: 48, seeds: [0]}}
checkpoint_evals: [greedy]
"""


def score(key: str, i: int) -> bool:
    return hashlib.sha256(f"{key}/{i}".encode()).digest()[0] < 140


class FakeTrainer:
    """``empo train`` as the sweep calls it: writes the record the real one would, metrics, samples, checkpoints and
    the final adapter, all determined by the run's name. ``interrupt_after``: a kill after that many runs."""

    def __init__(self, interrupt_after: int | None = None, minutes: float = 0.0):
        self.calls, self.interrupt_after, self.minutes = [], interrupt_after, minutes

    def __call__(self, cmd, check=False, **kwargs):
        if "empo.train" not in cmd:  # the module's subprocess is everyone's (git, for the provenance)
            return REAL_RUN(cmd, check=check, **kwargs)
        if self.interrupt_after is not None and len(self.calls) >= self.interrupt_after:
            raise KeyboardInterrupt
        from empo.recipe import load_recipe
        from empo.training.run_dir import run_record

        recipe = load_recipe(cmd[cmd.index("--config") + 1], cmd[cmd.index("--config") + 2:], check_machine=False)
        out = Path(recipe.training.output_dir)
        self.calls.append(out.name)
        CLOCK[0] += 60 * self.minutes
        out.mkdir(parents=True, exist_ok=True)
        (out / "empo_run.json").write_text(json.dumps(run_record(recipe.empo, recipe.training, recipe.model)))
        steps = recipe.training.max_steps
        rows = [{"step": s, "reward": score(out.name, s) * 1.0, "empo/entropy_mean": 1.0 / s,
                 "empo/generated_tokens": 100.0 + s, "completions/mean_length": 20.0} for s in range(1, steps + 1)]
        (out / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
        samples = [{"step": s, "id": f"q{s}", "kept": True, "completions": ["long text"] * 4,
                    "answers": ["1", "1", "2", "1"], "gold": "1" if score(out.name, s) else "2",
                    "rewards": {"empo": [0.75, 0.75, 0.25, 0.75]}, "advantages": [0.25, 0.25, -0.5, 0.25]}
                   for s in range(steps)]
        (out / "samples.jsonl").write_text("".join(json.dumps(r) + "\n" for r in samples))
        for s in range(2, steps + 1, 2):
            (out / f"checkpoint-{s}").mkdir(exist_ok=True)
            (out / f"checkpoint-{s}" / "adapter_config.json").write_text("{}")
            mark_complete(out / f"checkpoint-{s}")
        (out / "adapter_config.json").write_text("{}")
        return subprocess.CompletedProcess(cmd, 0)


def fake_evaluate(settings, adapter, block_dirs, blocks, label, progress=True):
    for name, out in block_dirs.items():
        block = next(b for b in blocks if b.name == name)
        out.mkdir(parents=True, exist_ok=True)
        key = f"{adapter}/{name}"
        rows = []
        for i in range(block.limit):
            rows.append({"benchmark": "arith", "mode": "greedy", "id": f"p{i}", "sample": 0, "answer": "1",
                         "completion": "text", "correct": score(key, i)})
            rows += [{"benchmark": "arith", "mode": "sample", "id": f"p{i}", "sample": j, "answer": "1",
                      "completion": "text", "correct": score(key, 100 * i + j)} for j in range(block.n)]
        (out / "samples.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
        (out / "summary.json").write_text("{}")


@pytest.fixture
def machine(monkeypatch):
    """Fake training and evaluation; a fixed clock in the provenance (bundles made a minute apart would differ)."""
    monkeypatch.setattr(comparison_module, "evaluate_target", fake_evaluate)
    monkeypatch.setattr(sweep_module, "clock", lambda: CLOCK[0])
    real = provenance_module.provenance
    monkeypatch.setattr(provenance_module, "provenance", lambda command=None: {**real(command), "date": "D"})
    trainers = []

    def new(interrupt_after=None, minutes=0.0):
        trainer = FakeTrainer(interrupt_after, minutes)
        monkeypatch.setattr(sweep_module.subprocess, "run", trainer)
        trainers.append(trainer)
        return trainer

    return new


def start(root: Path, monkeypatch, store_from: Path | None = None) -> Sweep:
    """A fresh checkout on a fresh machine: the spec, an empty runs/, and (optionally) a copy of the store."""
    root.mkdir()
    monkeypatch.chdir(root)
    (root / "sweep.yaml").write_text(SPEC)
    if store_from is not None:
        shutil.copytree(store_from, root / "store")
    return Sweep.from_yaml("sweep.yaml")


COMMAND = ["empo", "compare", "--sweep", "sweep.yaml", "--store", "store"]


def report_files(root: Path) -> dict[str, bytes]:
    out = root / "store" / "compare"
    return {name: (out / name).read_bytes() for name in ("report.md", "comparison.json", "accuracy.png")}


def test_a_sweep_interrupted_after_each_run_and_continued_elsewhere_from_the_store_reports_the_same(
        tmp_path, monkeypatch, machine):
    sweep = start(tmp_path / "whole", monkeypatch)
    machine()
    states, comparison = run_stored_sweep(sweep, Store("store"), command=COMMAND, progress=False)
    assert comparison is not None and all(s.state == "done" for s in states) and len(states) == 6
    reference = report_files(tmp_path / "whole")

    previous, sessions = None, 0
    while True:
        sessions += 1
        root = tmp_path / f"machine{sessions}"
        sweep = start(root, monkeypatch, previous)
        trainer = machine(interrupt_after=1)
        try:
            states, comparison = run_stored_sweep(sweep, Store("store"), command=COMMAND, progress=False)
        except KeyboardInterrupt:  # killed while starting its second run: that run's directory is lost with it
            assert len(trainer.calls) == 1
        else:
            break
        previous = root / "store"
    assert sessions == 6  # one run per machine; the one that finishes the last run writes the report
    assert report_files(root) == reference
    # a bundle: no weights, no completion text in the training samples, the checkpoints' evals for the study
    bundle = root / "store" / "runs" / "empo-seed0"
    assert not list(bundle.rglob("adapter_config.json")) and not list(bundle.glob("checkpoint-*"))
    assert "completions" not in json.loads((bundle / "samples.jsonl").read_text().splitlines()[0])
    assert sorted(p.name for p in (bundle / "eval").iterdir()) == ["checkpoint-2", "greedy", "sampled"]
    record = json.loads((bundle / "bundle.json").read_text())
    assert record["generated_tokens"] == 101 + 102 + 103 + 104 and record["checkpoint_evals"] == {"greedy": [2]}
    assert not (root / "store" / "runs" / "random-seed1" / "eval" / "sampled").exists()  # that block: seed 0 only
    # the stopping study from the store alone: this machine has only the last run's directory
    result = study_stopping.study(sweep, "greedy", "empo", progress=False, store=Store("store"))
    assert sorted(result["arms"]["empo"]["seeds"][0]["dirs"]) == [0, 2, 4]
    summary = study_stopping.summarise(result)
    assert summary["arms"]["random"]["tokens_total"] == 410 and summary["budget_tokens"] == 410
    # a store still filling: the study of the runs done so far, the missing ones named
    shutil.move("store/runs/random-seed1", "random-seed1-bundle")
    result = study_stopping.study(sweep, "greedy", "empo", progress=False, store=Store("store"))
    assert result["missing"] == ["random-seed1"] and [s["seed"] for s in result["arms"]["random"]["seeds"]] == [0]
    assert "**Interim: 1 runs missing** (random-seed1)" in study_stopping.report(
        study_stopping.summarise(result), result, {"provenance": study_stopping.provenance(["test"])})


def test_a_bundle_whose_settings_no_longer_match_the_spec_is_stale_named_and_made_again(
        tmp_path, monkeypatch, machine, capsys):
    sweep = start(tmp_path / "a", monkeypatch)
    machine()
    run_stored_sweep(sweep, Store("store"), command=COMMAND, progress=False)
    spec = Path("sweep.yaml")
    spec.write_text(SPEC.replace("overrides: {entropy_filter: false}", "overrides: {entropy_filter: false, "
                                 "min_majority_share: 0.5}").replace("limit: 20, n: 4", "limit: 10, n: 4"))
    sweep = Sweep.from_yaml(spec)
    states = {s.name: s for s in sweep_states(sweep, Store("store"))}
    assert states["empo-nofilter-seed0"].state == "stale"
    assert "min_majority_share" in states["empo-nofilter-seed0"].reason
    assert states["empo-seed0"].state == "stale" and "eval block 'sampled'" in states["empo-seed0"].reason
    assert states["empo-seed1"].state == "done"  # the sampled block covers seed 0 only
    assert cli_main(["compare", "--sweep", "sweep.yaml", "--store", "store", "--status"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("2 of 6 runs done, 4 stale, 0 missing")  # seed 0 of empo and random: the sampled block
    assert "stale    empo-nofilter-seed0" in out and "min_majority_share: 0.0 -> 0.5" in out
    # made again (the stale run's directory holds other settings: moved away first, as a user would)
    shutil.move("runs/sweep/empo-nofilter-seed0", "old-nofilter-seed0")
    shutil.move("runs/sweep/empo-nofilter-seed1", "old-nofilter-seed1")
    trainer = machine()
    states, comparison = run_stored_sweep(sweep, Store("store"), command=COMMAND, progress=False)
    assert sorted(trainer.calls) == ["empo-nofilter-seed0", "empo-nofilter-seed1"]
    assert comparison is not None and all(s.state == "done" for s in states)
    assert json.loads(Path("store/runs/empo-nofilter-seed0/empo_run.json").read_text())["empo"][
        "min_majority_share"] == 0.5


def test_the_time_budget_starts_no_run_its_siblings_say_will_not_end_in_time(tmp_path, monkeypatch, machine, capsys):
    sweep = start(tmp_path / "a", monkeypatch)
    machine(interrupt_after=2, minutes=10)
    with pytest.raises(KeyboardInterrupt):
        run_stored_sweep(sweep, Store("store"), command=COMMAND, progress=False)
    assert [json.loads((Path("store/runs") / n / "bundle.json").read_text())["wall_seconds"]
            for n in ("empo-seed0", "random-seed0")] == [600.0, 600.0]  # seed-major
    trainer = machine(minutes=10)
    assert cli_main(["compare", "--sweep", "sweep.yaml", "--store", "store", "--time-budget", "5"]) == 0
    assert trainer.calls == []
    assert capsys.readouterr().out.strip().startswith("2 of 6 runs done; the same command continues")
    assert cli_main(["compare", "--sweep", "sweep.yaml", "--store", "store", "--status"]) == 0
    assert "about 40 min left" in capsys.readouterr().out  # 4 missing runs x their siblings' 10 minutes
    assert cli_main(["compare", "--sweep", "sweep.yaml", "--store", "store", "--time-budget", "25"]) == 0
    assert len(trainer.calls) == 2  # two of the four fit in 25 minutes


def test_a_bundle_records_the_commit_its_training_started_from(tmp_path, monkeypatch, machine):
    sweep = start(tmp_path / "a", monkeypatch)
    machine(interrupt_after=2)
    head = ["aaaa"]
    monkeypatch.setattr(provenance_module, "git_commit", lambda: head[0])
    train_run = sweep_module.train_run

    def committing_meanwhile(*args):  # a session commits while the run trains
        train_run(*args)
        head[0] = "bbbb" if head[0] == "aaaa" else head[0]

    monkeypatch.setattr(sweep_module, "train_run", committing_meanwhile)
    with pytest.raises(KeyboardInterrupt):
        run_stored_sweep(sweep, Store("store"), command=COMMAND, progress=False)
    first, second = (json.loads((Path("store/runs") / n / "bundle.json").read_text())
                     for n in ("empo-seed0", "random-seed0"))
    assert (first["commit"], first["bundled_at_commit"]) == ("aaaa", "bbbb")
    assert second["commit"] == "bbbb" and "bundled_at_commit" not in second


def test_a_runs_wall_time_counts_an_interrupted_invocation_too(tmp_path, monkeypatch, machine):
    sweep = start(tmp_path / "a", monkeypatch)
    machine(minutes=10)
    evaluate = sweep_module.evaluate_checkpoints
    calls = []

    def interrupted_once(*args):  # Ctrl-C (or a preempted run's status) after 10 minutes of training
        calls.append(1)
        if len(calls) == 1:
            raise KeyboardInterrupt
        return evaluate(*args)

    monkeypatch.setattr(sweep_module, "evaluate_checkpoints", interrupted_once)
    with pytest.raises(KeyboardInterrupt):
        run_stored_sweep(sweep, Store("store"), command=COMMAND, progress=False)
    run_stored_sweep(sweep, Store("store"), command=COMMAND, progress=False)  # the run is trained: evals only
    assert json.loads(Path("store/runs/empo-seed0/bundle.json").read_text())["wall_seconds"] == 600.0


def test_a_run_killed_mid_way_resumes_from_its_directory_and_a_half_written_bundle_is_ignored(
        tmp_path, monkeypatch, machine):
    sweep = start(tmp_path / "a", monkeypatch)
    machine(interrupt_after=1)
    with pytest.raises(KeyboardInterrupt):
        run_stored_sweep(sweep, Store("store"), command=COMMAND, progress=False)
    half = Path("store/runs/.random-seed0.writing-1")
    shutil.copytree("store/runs/empo-seed0", half)  # a kill between writing a bundle and renaming it
    # the next run's directory survived (killed after its training): the sweep does not train it again
    machine()(sweep.train_command(sweep.arms()[0], 1), check=False)
    trainer = machine()
    states, comparison = run_stored_sweep(sweep, Store("store"), command=COMMAND, progress=False)
    assert "empo-seed1" not in trainer.calls and len(trainer.calls) == 4 and comparison is not None
    assert len(Store("store").bundles()) == 6


def test_an_interim_report_of_the_runs_done_so_far_trains_nothing(tmp_path, monkeypatch, machine, capsys):
    start(tmp_path / "a", monkeypatch)
    assert cli_main(["compare", "--sweep", "sweep.yaml", "--store", "store", "--interim"]) == 0
    assert "0 of 6 runs done: no interim report yet" in capsys.readouterr().out
    machine(interrupt_after=2)
    with pytest.raises(KeyboardInterrupt):
        run_stored_sweep(Sweep.from_yaml("sweep.yaml"), Store("store"), command=COMMAND, progress=False)
    trainer = machine()
    assert cli_main(["compare", "--sweep", "sweep.yaml", "--store", "store", "--interim"]) == 0
    assert trainer.calls == []  # nothing trained or evaluated
    report = Path("store/interim/report.md").read_text()
    assert "**Interim: 2 of 6 runs**" in report and "Missing: empo-nofilter-seed0, empo-seed1," in report
    assert "- `empo`: seeds [0]" in report and not Path("store/compare").exists()


def test_the_cli_refuses_store_options_without_a_store(tmp_path, monkeypatch, capsys):
    start(tmp_path / "a", monkeypatch)
    for option in ("--status", "--interim"):
        assert cli_main(["compare", "--sweep", "sweep.yaml", option]) == 2
        assert "--store" in capsys.readouterr().err

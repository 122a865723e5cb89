"""`empo eval`: metrics on scripted completions, resume after a kill, settings checks, and a real run."""

import json
from pathlib import Path

import pytest

from empo.cli import main as cli_main
from empo.errors import RunDirectoryError
from empo.evaluation.evaluate import EvalConfig, run_eval
from empo.io import read_jsonl
from empo.rollout.hf import Sample


class ScriptedGenerator:
    """Arithmetic answers by operator. Greedy: '+' right, '×' wrong, '-' unboxed. Sampled (n=4):
    samples 0 and 1 right, 2 wrong, 3 unboxed."""

    def __init__(self, fail_after: int | None = None):
        self.calls, self.prompts, self.fail_after = 0, 0, fail_after

    def generate_groups(self, messages, sampling, seed_key=""):
        if self.fail_after is not None and self.calls >= self.fail_after:
            raise KeyboardInterrupt("killed")
        self.calls += 1
        self.prompts += len(messages)
        groups = []
        for m in messages:
            q = m[-1]["content"].removeprefix("What is ").removesuffix("?")
            a, op, b = q.split(" ")
            right = {"+": int(a) + int(b), "-": int(a) - int(b), "×": int(a) * int(b)}[op]
            if sampling.temperature == 0:
                text = {"+": f"\\boxed{{{right}}}", "×": f"\\boxed{{{right + 1}}}", "-": f"{right}"}[op]
                groups.append([Sample(text, 5, False)])
            else:
                texts = [f"\\boxed{{{right}}}", f"so \\boxed{{{right}.0}}", f"\\boxed{{{right + 1}}}", "hmm"]
                groups.append([Sample(t, 7, t == "hmm") for t in texts[: sampling.num_generations]])
        return groups


def config(tmp_path, **kw):
    return EvalConfig(**{"output_dir": str(tmp_path / "eval"), "n": 4, "batch_size": 8, **kw})


def test_metrics_of_scripted_eval(tmp_path):
    summary = run_eval(config(tmp_path), ScriptedGenerator(), progress=False)
    arith = summary["benchmarks"]["arith"]
    levels = arith["by_level"]
    share = {lv: levels[lv]["problems"] / arith["problems"] for lv in levels}
    assert levels["add1"]["greedy"] == 1.0 and levels["mul1"]["greedy"] == 0.0 and levels["sub1"]["greedy"] == 0.0
    assert arith["greedy"]["mean"] == pytest.approx(share["add1"])
    assert arith["greedy"]["boxed_rate"] == pytest.approx(1 - share["sub1"])
    assert arith["greedy"]["ci_low"] < arith["greedy"]["mean"] < arith["greedy"]["ci_high"]
    assert arith["avg@4"]["mean"] == pytest.approx(0.5)
    assert {k: v["mean"] for k, v in arith["pass@k"].items()} == pytest.approx({"1": 0.5, "2": 5 / 6, "4": 1.0})
    # '7' and '7.0' form one cluster of 2 against one wrong vote: the majority is right for k=4;
    # k=1: right 2/4, wrong 1/4, abstain 1/4 -> 0.5
    assert arith["maj@k"]["4"]["mean"] == 1.0 and arith["maj@k"]["1"]["mean"] == pytest.approx(0.5)
    assert arith["sample_boxed_rate"] == 0.75
    rows = list(read_jsonl(tmp_path / "eval" / "samples.jsonl"))
    assert len(rows) == arith["problems"] * 5
    assert set(rows[0]) == {"benchmark", "mode", "id", "sample", "completion", "answer", "gold", "correct", "tokens",
                            "truncated"}
    report = (tmp_path / "eval" / "report.md").read_text()
    assert "| arith |" in report and "### arith by level" in report and "avg@4" in report
    assert json.loads((tmp_path / "eval" / "summary.json").read_text())["benchmarks"]["arith"] == arith


def test_killed_eval_resumes_where_it_stopped(tmp_path):
    whole = run_eval(config(tmp_path / "whole"), ScriptedGenerator(), progress=False)
    with pytest.raises(KeyboardInterrupt):
        run_eval(config(tmp_path), ScriptedGenerator(fail_after=3), progress=False)
    rerun = ScriptedGenerator()
    resumed = run_eval(config(tmp_path), rerun, progress=False)
    problems = whole["benchmarks"]["arith"]["problems"]
    # 3 greedy batches of 8 were done: only the rest is generated again
    assert rerun.prompts == (problems - 24) + problems
    rows = list(read_jsonl(tmp_path / "eval" / "samples.jsonl"))
    assert len(rows) == problems * 5 and len({(r["mode"], r["id"], r["sample"]) for r in rows}) == len(rows)
    assert resumed["benchmarks"] == whole["benchmarks"]
    again = ScriptedGenerator()
    run_eval(config(tmp_path), again, progress=False)
    assert again.calls == 0  # nothing left to do


def test_other_settings_in_the_same_directory_are_refused(tmp_path):
    run_eval(config(tmp_path, limit=4), ScriptedGenerator(), progress=False)
    with pytest.raises(RunDirectoryError, match="temperature: 0.6 -> 1.0"):
        run_eval(config(tmp_path, limit=4, temperature=1.0), ScriptedGenerator(), progress=False)
    # more problems or benchmarks with the same settings are fine
    run_eval(config(tmp_path, limit=8), ScriptedGenerator(), progress=False)
    with pytest.raises(ValueError, match="--no-greedy needs --n > 0"):
        run_eval(config(tmp_path / "x", greedy=False, n=0), ScriptedGenerator(), progress=False)


def test_cli_bad_input_fails_before_loading_a_model(tmp_path, capsys):
    assert cli_main(["eval", "--benchmarks", "arith,math5000", "--output-dir", str(tmp_path)]) == 2
    assert "unknown benchmark 'math5000'" in capsys.readouterr().err
    assert cli_main(["eval", "--benchmarks", "gsm8k", "--data-dir", str(tmp_path), "--output-dir",
                     str(tmp_path / "o")]) == 2
    assert "gsm8k.jsonl' does not exist" in capsys.readouterr().err
    assert cli_main(["eval", "--adapter", str(tmp_path / "nope"), "--limit", "1", "--output-dir",
                     str(tmp_path / "o2")]) == 2
    assert "nope' does not exist" in capsys.readouterr().err
    (tmp_path / "empty").mkdir()
    assert cli_main(["eval", "--adapter", str(tmp_path / "empty"), "--limit", "1", "--output-dir",
                     str(tmp_path / "o3")]) == 2
    assert "no adapter_config.json" in capsys.readouterr().err


def test_cli_end_to_end_on_the_default_model(tmp_path, default_model_path, capsys):
    out = tmp_path / "eval"
    assert cli_main(["eval", "--limit", "4", "--n", "2", "--max-new-tokens", "32", "--threads", "2",
                     "--output-dir", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "| arith | 4 |" in printed and "tok/s" in printed
    rows = list(read_jsonl(out / "samples.jsonl"))
    assert sorted((r["mode"], r["sample"]) for r in rows).count(("greedy", 0)) == 4 and len(rows) == 12
    summary = json.loads((out / "summary.json").read_text())
    assert 0.0 <= summary["benchmarks"]["arith"]["greedy"]["mean"] <= 1.0
    assert summary["this_run"]["arith/greedy"]["generated_tokens"] > 0
    prov = summary["provenance"]  # published numbers say where they came from
    assert prov["command"] == f"empo eval --limit 4 --n 2 --max-new-tokens 32 --threads 2 --output-dir {out}"
    assert prov["commit"] and "CPU cores" in prov["machine"] and prov["versions"]["trl"] and prov["date"]
    assert f"Command: `{prov['command']}`" in (out / "report.md").read_text()


def test_suite_files_fill_eval_settings_and_flags_override(tmp_path):
    from empo.cli import build_parser
    from empo.evaluation.evaluate import EvalConfig, load_suite

    root = Path(__file__).resolve().parents[1] / "eval" / "suites"
    suites = {p.stem: load_suite(p) for p in sorted(root.glob("*.yaml"))}
    assert {"paper_math", "gsm8k", "cpu_default"} <= set(suites)
    paper = suites["paper_math"]
    assert paper["benchmarks"] == "math500,minerva_math,olympiadbench,aime24,amc23"
    assert paper["prompt"] == "qwen-math" and paper["greedy"] and paper["max_new_tokens"] >= 3072
    for suite in suites.values():
        EvalConfig(**suite).benchmark_names()  # every benchmark named exists
    argv = ["eval", "--suite", str(root / "paper_math.yaml"), "--limit", "3", "--max-new-tokens", "64"]
    args = build_parser(eval_suite=paper).parse_args(argv)
    assert (args.limit, args.max_new_tokens, args.prompt, args.greedy) == (3, 64, "qwen-math", True)
    assert args.benchmarks == paper["benchmarks"]
    default = suites["cpu_default"]
    assert (default["benchmarks"], default["limit"], default["greedy"], default["n"]) == \
        ("arith,arith:add2+sub2", 300, True, 0)  # the league's held-out greedy measure
    args = build_parser(eval_suite=default).parse_args(["eval", "--no-greedy", "--n", "8"])
    assert (args.greedy, args.n, args.limit) == (False, 8, 300)


def test_bad_suite_is_one_line_naming_the_key(tmp_path, capsys):
    from empo.cli import main as cli_main

    bad = tmp_path / "s.yaml"
    bad.write_text("benchmarks: [arith]\nmax_new_token: 64\n")
    assert cli_main(["eval", "--suite", str(bad)]) == 2
    err = capsys.readouterr().err.strip()
    assert "unknown suite key(s): 'max_new_token' (did you mean 'max_new_tokens'?)" in err and "s.yaml" in err
    assert len(err.splitlines()) == 1
    bad.write_text("benchmarks: [arith\n")
    assert cli_main(["eval", "--suite", str(bad)]) == 2
    assert "is not valid YAML" in capsys.readouterr().err
    assert cli_main(["eval", "--suite", str(tmp_path / "missing.yaml")]) == 2
    assert "does not exist" in capsys.readouterr().err

import json

from empo.cli import main as cli_main
from empo.io import read_jsonl
from empo.prompts import get_prompt_config
from empo.rollout.hf import Sample, SamplingConfig
from empo.rollout.run import analyse_row, format_summary, run_rollout


class FakeGenerator:
    """Answers 'What is a + b?' right in 3 of 4 samples and gives one unboxed sample."""

    def __init__(self):
        self.calls = 0

    def generate_groups(self, messages, sampling, seed_key=""):
        self.calls += 1
        groups = []
        for m in messages:
            q = m[-1]["content"]
            a, b = [int(t) for t in q.removeprefix("What is ").removesuffix("?").split(" + ")]
            texts = [f"\\boxed{{{a + b}}}"] * 2 + [f"\\boxed{{{a + b + 1}}}", "no idea"]
            groups.append([Sample(t, len(t), False) for t in texts[: sampling.num_generations]])
        return groups


def questions(n):
    return [{"id": f"q{i}", "problem": f"What is {i} + 1?", "answer": str(i + 1), "level": "add1"} for i in range(n)]


def test_analyse_row_schema():
    row = analyse_row(questions(1)[0], [Sample("\\boxed{1}", 3, False), Sample("\\boxed{1.0}", 4, False),
                                        Sample("\\boxed{2}", 3, False), Sample("x", 1, True)], 0.0, None)
    assert row["answers"] == ["1", "1.0", "2", None]
    assert row["cluster_ids"] == [0, 0, 1, 2]
    assert row["kept"] and row["num_clusters"] == 2 and row["majority_answer"] == "1"
    assert row["sample_correct"] == [True, True, False, False] and row["majority_correct"]
    assert row["completion_tokens"] == [3, 4, 3, 1] and row["truncated"] == [False, False, False, True]


def test_rollout_resumes_and_summarises(tmp_path):
    out = tmp_path / "r.jsonl"
    gen = FakeGenerator()
    sampling = SamplingConfig(num_generations=4)
    run_rollout(questions(3), gen, get_prompt_config(None), sampling, out, batch_size=2, progress=False)
    assert gen.calls == 2
    gen2 = FakeGenerator()
    summary = run_rollout(questions(5), gen2, get_prompt_config(None), sampling, out, batch_size=2, progress=False)
    assert gen2.calls == 1  # only the two new questions
    rows = list(read_jsonl(out))
    assert [r["id"] for r in rows] == [f"q{i}" for i in range(5)]
    s = summary["levels"]["add1"]
    assert s["questions"] == 5 and s["sample_accuracy"] == 0.5 and s["majority_accuracy"] == 1.0
    assert s["boxed_rate"] == 0.75
    assert json.loads((tmp_path / "r.summary.json").read_text())["levels"]["add1"]["questions"] == 5
    assert "add1" in format_summary(summary)


def test_cli_rollout_on_default_model(tmp_path, default_model_path, capsys):
    out = tmp_path / "cli.jsonl"
    assert cli_main(["rollout", "--limit", "2", "-G", "2", "--max-new-tokens", "8", "--output", str(out)]) == 0
    rows = list(read_jsonl(out))
    assert len(rows) == 2 and all(len(r["completions"]) == 2 for r in rows)
    assert "sample acc" in capsys.readouterr().out

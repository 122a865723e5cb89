"""Multiple-choice benchmarks (MMLU-Pro, GPQA-Diamond): letter extraction, the deterministic GPQA shuffle, hub rows
mapped to the MC schema, bad rows refused before a model loads, and `empo eval` on written MC files."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from empo import data as data_module
from empo.data import DataError
from empo.evaluation.benchmarks import (
    HUB,
    MULTIPLE_CHOICE,
    extract_choice,
    format_choices,
    get_benchmark,
    grade,
    load_benchmark,
    prompt_text,
    shuffled_options,
    vote_labels,
)
from empo.evaluation.evaluate import EvalConfig, run_eval
from empo.io import read_jsonl
from empo.rollout.hf import Sample

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("text, letter", [
    ("so \\boxed{C}", "C"),
    ("\\boxed{(C)}", "C"),
    ("\\boxed{ (C) 10^-4 eV }", "C"),
    ("\\boxed{C. 10^-4 eV}", "C"),
    ("\\boxed{C) 10^-4 eV}", "C"),
    ("\\boxed{C:}", "C"),
    ("\\boxed{\\text{C}}", "C"),
    ("\\boxed{\\textbf{(B)}}", "B"),
    ("$\\boxed{$D$}$", "D"),
    ("\\boxed{A} at first, but finally \\boxed{B}", "B"),   # the last box
    ("\\boxed{J}", "J"),                                     # MMLU-Pro's tenth option
    ("\\boxed{A metal compound from the fifth period.}", None),  # a sentence starting with a capital, not a choice
    ("\\boxed{A, C}", None),
    ("\\boxed{C D}", None),
    ("\\boxed{CD}", None),
    ("\\boxed{c}", None),
    ("\\boxed{10^-4 eV}", None),  # the option's text without its letter
    ("The answer is (C).", None),  # no box, no answer (as for math)
    ("\\boxed{C", None),          # truncated
    ("\\boxed{}", None),
])
def test_letter_extraction(text, letter):
    assert extract_choice(text) == letter


def test_a_letter_not_offered_is_wrong_but_still_a_vote():
    bench = get_benchmark("gpqa_diamond")
    row = {"id": "0", "problem": "Q?", "options": ["a", "b", "c", "d"], "answer": "B"}
    assert grade(bench, "B", row) and not grade(bench, "E", row) and not grade(bench, None, row)
    assert not grade(bench, "b", row)  # letters are compared as extracted: the extractor only yields capitals
    assert vote_labels(bench, ["E", None, "B", "E"]) == [0, None, 1, 0]


def test_the_prompt_lists_the_options_lettered():
    assert format_choices("Which?", ["x", "y", "z"]) == "Which?\nA. x\nB. y\nC. z"
    row = {"problem": "Which?", "options": ["x", "y"]}
    assert prompt_text(get_benchmark("mmlu_pro"), row) == "Which?\nA. x\nB. y"
    assert prompt_text(get_benchmark("math500"), row) == "Which?"


def test_gpqa_shuffle_is_fixed_per_question():
    wrong = ["w1", "w2", "w3"]
    options, letter = shuffled_options("What is X?", "right", wrong)
    assert sorted(options) == sorted(["right", *wrong]) and options["ABCD".index(letter)] == "right"
    assert shuffled_options("What is X?", "right", wrong) == (options, letter)  # same question, same order
    # pinned: a change of the shuffle rule would silently change every published GPQA letter
    assert (options, letter) == (["w2", "right", "w3", "w1"], "B")
    # the order depends on the question (and the seed), so the correct letter is spread over A-D
    letters = {shuffled_options(f"Question {i}?", "right", wrong)[1] for i in range(40)}
    assert letters == set("ABCD")
    assert any(shuffled_options(f"Question {i}?", "right", wrong, seed=1) != shuffled_options(f"Question {i}?",
               "right", wrong) for i in range(10))


def test_gpqa_shuffle_is_the_same_in_another_process():
    code = ("from empo.evaluation.benchmarks import shuffled_options; "
            "print(shuffled_options('What is X?', 'right', ['w1', 'w2', 'w3']))")
    outs = {subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT,
                           env={**os.environ, "PYTHONHASHSEED": seed, "PYTHONPATH": str(ROOT)}).stdout
            for seed in ("1", "2")}
    assert outs == {str(shuffled_options("What is X?", "right", ["w1", "w2", "w3"])) + "\n"}


GPQA_ROW = {"Question": "  Which particle mediates the electromagnetic force? ", "Correct Answer": " photon",
            "Incorrect Answer 1": "gluon", "Incorrect Answer 2": "W boson", "Incorrect Answer 3": "graviton",
            "Explanation": "QED.", "Subdomain": "Physics (general)"}
MMLU_PRO_ROWS = [
    {"question_id": 70, "question": "Which is a prime?", "options": ["4", "6", "7", "8", "9", "N/A", "N/A"],
     "answer": "C", "answer_index": 2, "cot_content": "", "category": "math", "src": "ori_mmlu-math"},
    {"question_id": 71, "question": "Capital of France?", "options": ["Rome", "N/A", "Paris"], "answer": "C",
     "answer_index": 2, "cot_content": "", "category": "geography", "src": "x"},
]


def fake_hub(monkeypatch, tables):
    asked = []

    def read_hub(spec):
        asked.append((spec.name, spec.subset, spec.split))
        return tables[spec.name]

    monkeypatch.setattr(data_module, "read_hub", read_hub)
    return asked


def test_hub_rows_are_mapped_to_the_multiple_choice_schema(monkeypatch):
    asked = fake_hub(monkeypatch, {"TIGER-Lab/MMLU-Pro": MMLU_PRO_ROWS, "Idavidrein/gpqa": [GPQA_ROW]})
    prime, paris = load_benchmark("mmlu_pro", HUB)
    assert prime["id"] == "70" and prime["problem"] == "Which is a prime?" and prime["category"] == "math"
    assert prime["options"] == ["4", "6", "7", "8", "9"] and prime["answer"] == "C"  # trailing N/A dropped
    # an N/A before the gold moves its letter: C of ['Rome', 'N/A', 'Paris'] is B of ['Rome', 'Paris']
    assert paris["options"] == ["Rome", "Paris"] and paris["answer"] == "B"
    (gpqa,) = load_benchmark("gpqa_diamond", HUB)
    question = "Which particle mediates the electromagnetic force?"
    options, letter = shuffled_options(question, "photon", ["gluon", "W boson", "graviton"])
    assert gpqa["problem"] == question and gpqa["options"] == options and gpqa["answer"] == letter
    assert gpqa["id"] == "0" and gpqa["Subdomain"] == "Physics (general)"
    assert ("TIGER-Lab/MMLU-Pro", None, "test") in asked and ("Idavidrein/gpqa", "gpqa_diamond", "train") in asked
    assert get_benchmark("mmlu_pro").kind == get_benchmark("gpqa_diamond").kind == MULTIPLE_CHOICE


def test_inconsistent_or_incomplete_hub_rows_are_named(monkeypatch):
    bad_index = dict(MMLU_PRO_ROWS[0], answer="D")
    fake_hub(monkeypatch, {"TIGER-Lab/MMLU-Pro": [bad_index], "Idavidrein/gpqa": [
        {k: v for k, v in GPQA_ROW.items() if k != "Incorrect Answer 3"}]})
    with pytest.raises(DataError, match="MMLU-Pro question 70: answer 'D' does not match answer_index 2"):
        load_benchmark("mmlu_pro", HUB)
    with pytest.raises(DataError, match="row 0 has no field 'Incorrect Answer 3'"):
        load_benchmark("gpqa_diamond", HUB)


def write_mc(directory: Path, name: str, rows: list[dict]) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{name}.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return directory


MC_ROWS = [
    {"id": "leaf", "problem": "Which gas do plants take in for photosynthesis?",
     "options": ["Oxygen", "Carbon dioxide", "Nitrogen", "Helium"], "answer": "B", "category": "biology"},
    {"id": "h2o", "problem": "What is the chemical formula of water?", "options": ["CO2", "H2O", "NaCl"],
     "answer": "b", "category": "chemistry"},
    {"id": "legs", "problem": "How many legs does a spider have?", "options": ["6", "8", "10", "4", "12"],
     "answer": "B", "category": "zoology"},
]


@pytest.mark.parametrize("change, message", [
    ({"answer": "D"}, r"row 1 \(id h2o\) has gold answer 'D', not one of its option letters A-C"),
    ({"options": ["only one"]}, r"row 1 \(id h2o\) has 1 options"),
    ({"options": ["CO2", " "]}, r"has 2 options, some empty"),
    ({"options": "CO2, H2O"}, r"has no list of 'options' \(got str\)"),
])
def test_bad_local_rows_fail_before_a_model_loads(tmp_path, change, message):
    rows = [MC_ROWS[0], dict(MC_ROWS[1], **change)]
    with pytest.raises(DataError, match=message):
        load_benchmark("gpqa_diamond", write_mc(tmp_path, "gpqa_diamond", rows))


class LetterGenerator:
    """Answers every MC prompt from the options it shows: greedy picks the gold letter for the questions about plants
    and spiders and E (not offered) for water; sampled (n=4): gold, gold, a wrong letter, unboxed."""

    def __init__(self):
        self.prompts = []

    def generate_groups(self, messages, sampling, seed_key=""):
        out = []
        for m in messages:
            text = m[-1]["content"]
            self.prompts.append(text)
            row = next(r for r in MC_ROWS if r["problem"] in text)
            gold, wrong = row["answer"].upper(), "A"
            if sampling.temperature == 0:
                out.append([Sample(f"\\boxed{{{'E' if row['id'] == 'h2o' else gold}}}", 3, False)])
            else:
                texts = [f"\\boxed{{{gold}}}", f"\\boxed{{({gold})}}", f"\\boxed{{{wrong}}}", "I am not sure"]
                out.append([Sample(t, 4, False) for t in texts[: sampling.num_generations]])
        return out


def test_scripted_mc_eval_metrics(tmp_path):
    data_dir = write_mc(tmp_path / "data", "mmlu_pro", MC_ROWS)
    generator = LetterGenerator()
    config = EvalConfig(benchmarks="mmlu_pro", data_dir=str(data_dir), prompt="multiple-choice", n=4, batch_size=8,
                        output_dir=str(tmp_path / "eval"))
    mmlu = run_eval(config, generator, progress=False)["benchmarks"]["mmlu_pro"]
    assert ("Which gas do plants take in for photosynthesis?\nA. Oxygen\nB. Carbon dioxide\nC. Nitrogen\n"
            "D. Helium\nReason step by step") in generator.prompts[0]
    assert mmlu["problems"] == 3 and mmlu["greedy"]["mean"] == pytest.approx(2 / 3)
    assert mmlu["greedy"]["boxed_rate"] == 1.0  # 'E' is boxed, but not offered: wrong
    assert mmlu["avg@4"]["mean"] == pytest.approx(0.5) and mmlu["pass@k"]["4"]["mean"] == 1.0
    # letters vote: 2 x gold against 1 x 'A' (one abstains) -> the majority of all 4 is right
    assert mmlu["maj@k"]["4"]["mean"] == 1.0 and mmlu["maj@k"]["1"]["mean"] == pytest.approx(0.5)
    assert mmlu["by_category"]["chemistry"] == {"problems": 1, "greedy": 0.0, "avg@4": 0.5}
    rows = list(read_jsonl(tmp_path / "eval" / "samples.jsonl"))
    water = next(r for r in rows if r["id"] == "h2o" and r["mode"] == "greedy")
    assert water["answer"] == "E" and water["gold"] == "B" and water["correct"] is False


def test_cli_mc_eval_on_the_default_model(tmp_path, default_model_path, capsys):
    from empo.cli import main as cli_main

    data_dir = write_mc(tmp_path / "data", "gpqa_diamond", MC_ROWS)
    out = tmp_path / "eval"
    assert cli_main(["eval", "--benchmarks", "gpqa_diamond", "--data-dir", str(data_dir), "--prompt",
                     "multiple-choice-example", "--max-new-tokens", "16", "--threads", "2",
                     "--output-dir", str(out)]) == 0
    assert "| gpqa_diamond | 3 |" in capsys.readouterr().out
    rows = list(read_jsonl(out / "samples.jsonl"))
    assert len(rows) == 3 and all(r["answer"] in (None, *"ABCDEFGHIJKLMNOPQRSTUVWXYZ") for r in rows)
    assert all(r["correct"] == (r["answer"] == r["gold"]) for r in rows)
    greedy = json.loads((out / "summary.json").read_text())["benchmarks"]["gpqa_diamond"]["greedy"]
    assert 0.0 <= greedy["mean"] <= 1.0 and greedy["n"] == 3

"""Benchmark loading and the benchmark-specific gold rules, on the real files in the repository's data/."""

import json
import time

import pytest

import empo.grading.mathverify_pool as pool
from empo import data as data_module
from empo.data import DataError
from empo.evaluation.benchmarks import (
    BENCHMARKS,
    HUB,
    get_benchmark,
    grade,
    load_benchmark,
    split_top_level,
)

EXPECTED_ROWS = {"math500": 500, "minerva_math": 272, "olympiadbench": 675, "aime24": 30, "amc23": 40, "gsm8k": 1319}


@pytest.fixture(scope="module")
def bench_dir(repo_data):
    return repo_data / "benchmarks"


def row_by_answer(rows, answer):
    return next(r for r in rows if r["answer"] == answer)


def test_every_benchmark_loads_from_the_data_dir(bench_dir):
    for name, count in EXPECTED_ROWS.items():
        rows = load_benchmark(name, bench_dir)
        assert len(rows) == count and all(r["problem"] and r["answer"] for r in rows)
    assert len(load_benchmark("math500", bench_dir, limit=5)) == 5
    arith = load_benchmark("arith")  # built in: no data needed
    assert len(arith) > 40 and {r["level"] for r in arith} == {"add1", "sub1", "mul1"}


@pytest.mark.parametrize("name", list(EXPECTED_ROWS))
def test_gold_answers_grade_correct_and_other_rows_golds_mostly_wrong(bench_dir, name):
    bench, rows = get_benchmark(name), load_benchmark(name, bench_dir)[:60]
    assert all(grade(bench, r["answer"], r) for r in rows), name
    # a neighbour's gold is wrong unless the two golds coincide
    wrong = [grade(bench, rows[i - 1]["answer"], rows[i]) for i in range(1, len(rows))
             if rows[i - 1]["answer"].replace(" ", "") != rows[i]["answer"].replace(" ", "")]
    assert sum(wrong) <= 1, name


def test_minerva_relative_tolerance_and_notation(bench_dir):
    bench, rows = get_benchmark("minerva_math"), load_benchmark("minerva_math", bench_dir)
    r = row_by_answer(rows, "1.6")
    assert grade(bench, "1.60001", r) and grade(bench, "1.6 \\text{ cm}", r) and grade(bench, "1.6\\mathrm{~cm}", r)
    assert not grade(bench, "1.62", r) and not grade(bench, "16", r)
    r = row_by_answer(rows, "4.5e33")
    assert grade(bench, "4.5 \\times 10^{33}", r) and grade(bench, "4.50003\\cdot10^{33}", r)
    assert not grade(bench, "4.5 \\times 10^{32}", r)


def test_olympiad_multiple_answers_in_any_order(bench_dir):
    bench, rows = get_benchmark("olympiadbench"), load_benchmark("olympiadbench", bench_dir)
    r = row_by_answer(rows, "69$,$84")
    assert grade(bench, "84, 69", r) and grade(bench, "69,84", r)
    assert not grade(bench, "69", r) and not grade(bench, "69, 84, 1", r)
    r = row_by_answer(rows, "(1,8,19), (2,7,13), (4,5,7)")
    assert grade(bench, "(4,5,7),(1,8,19),(2,7,13)", r)
    assert not grade(bench, "(1,8,19),(2,7,13)", r) and not grade(bench, "(1,8,19),(2,7,13),(4,7,5)", r)
    r = row_by_answer(rows, "\\frac{41}{12}")  # unit km: dropped from the prediction
    assert grade(bench, "\\frac{41}{12}\\text{ km}", r) and not grade(bench, "\\frac{12}{41}", r)


def test_split_top_level_keeps_brackets_and_set_braces():
    assert split_top_level("(1,2), [3,4)") == ["(1,2)", "[3,4)"]
    assert split_top_level("69$,$84") == ["69", "84"]
    assert split_top_level("\\{1,2\\}, 3") == ["\\{1,2\\}", "3"]


def test_gsm8k_and_amc_numbers(bench_dir):
    gsm = get_benchmark("gsm8k")
    r = load_benchmark("gsm8k", bench_dir)[0]
    assert r["answer"] == "18"
    for pred in ["18", "\\$18", "18.00", "18 dollars", "\\$18.00"]:
        assert grade(gsm, pred, r), pred
    assert not grade(gsm, "19", r) and not grade(gsm, None, r) and not grade(gsm, "\\,", r)
    amc = get_benchmark("amc23")
    r = row_by_answer(load_benchmark("amc23", bench_dir), "27")
    assert grade(amc, "27.0", r) and not grade(amc, "27.5", r)


def test_pathological_prediction_times_out_and_counts_as_wrong(monkeypatch):
    """The grader never executes model output; a prediction that stalls the worker is killed, graded wrong."""
    hang = r"\hangmarker{2}"
    monkeypatch.setenv("EMPO_MATH_TEST_HANG", hang)
    monkeypatch.setenv("EMPO_MATH_TIMEOUT", "1")
    pool.shutdown()  # new workers read the fault-injection variable
    try:
        row = {"id": "x", "problem": "?", "answer": "\\sqrt{2}"}
        t = time.monotonic()
        assert grade(get_benchmark("math500"), hang, row) is False
        assert time.monotonic() - t < 30
        assert grade(get_benchmark("math500"), "\\frac{2}{\\sqrt{2}}", row)  # the grader still works
        assert not grade(get_benchmark("math500"), "__import__('os').system('true')", row)
    finally:
        monkeypatch.delenv("EMPO_MATH_TEST_HANG")
        pool.shutdown()


def test_hub_rows_are_mapped_to_the_local_schema(monkeypatch):
    fake = {
        "openai/gsm8k": [{"question": "Q?", "answer": "5 + 7 = 12\n#### 1,012"}],
        "Hothan/OlympiadBench": [{"id": 7, "question": "Q?", "final_answer": ["$69$", "$84$"],
                                  "is_multiple_answer": True}],
        "math-ai/amc23": [{"question": "Q?", "answer": 27.0}],
        "HuggingFaceH4/MATH-500": [{"unique_id": "test/a/1.json", "problem": "Q?", "answer": "\\frac12",
                                    "level": 2, "subject": "Algebra"}],
    }
    seen = []

    def read_hub(spec):
        seen.append((spec.name, spec.subset, spec.split))
        return fake[spec.name]

    monkeypatch.setattr(data_module, "read_hub", read_hub)
    assert load_benchmark("gsm8k", HUB)[0]["answer"] == "1012"
    olympiad = load_benchmark("olympiadbench", HUB)[0]
    assert olympiad["answer"] == "69, 84" and olympiad["id"] == "7"
    assert grade(get_benchmark("olympiadbench"), "84,69", olympiad)
    assert load_benchmark("amc23", HUB)[0]["answer"] == "27"
    math500 = load_benchmark("math500", HUB)[0]
    assert math500["id"] == "test/a/1.json" and math500["level"] == 2 and math500["problem"] == "Q?"
    assert ("openai/gsm8k", "main", "test") in seen and ("Hothan/OlympiadBench", "OE_TO_maths_en_COMP", "train") in seen


def test_bad_input_gives_one_clear_error(tmp_path):
    with pytest.raises(ValueError, match="unknown benchmark 'math5000'.*math500"):
        get_benchmark("math5000")
    with pytest.raises(DataError, match="gsm8k.jsonl' does not exist"):
        load_benchmark("gsm8k", tmp_path)
    (tmp_path / "gsm8k.jsonl").write_text(json.dumps({"id": "a", "problem": "Q?", "answer": "1"}) + "\n"
                                          + json.dumps({"id": "b", "question": "Q?", "answer": "2"}) + "\n")
    with pytest.raises(DataError, match="gsm8k.jsonl: row 1 has no field 'problem'"):
        load_benchmark("gsm8k", tmp_path)


def test_registry_documents_every_benchmark():
    import empo.evaluation.benchmarks as module

    for name in BENCHMARKS:
        assert f"**{name}**" in module.__doc__ or name in ("arith", "math500"), name


def test_a_benchmark_name_defaults_to_the_repository_data(monkeypatch):
    def no_hub(spec):
        raise AssertionError(f"the hub was asked for {spec.name}")

    monkeypatch.setattr(data_module, "read_hub", no_hub)
    for name, count in EXPECTED_ROWS.items():
        assert len(load_benchmark(name)) == count


def test_arith_levels_are_benchmarks():
    rows = load_benchmark("arith:add2+sub2", limit=10)
    assert len(rows) == 10 and {r["level"] for r in rows} == {"add2", "sub2"}
    assert get_benchmark("arith:word").breakdown == ("level",)
    assert [r["id"] for r in load_benchmark("arith", limit=7)] == [r["id"] for r in load_benchmark("arith")[:7]]
    with pytest.raises(ValueError, match=r"benchmark 'arith:add9': unknown arithmetic level\(s\) \['add9'\]"):
        get_benchmark("arith:add9")

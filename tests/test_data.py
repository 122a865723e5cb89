import json

import pytest

from empo.data import DataError, DataSpec, load_questions


def test_reads_the_repository_data_files(repo_data):
    paths = sorted(repo_data.glob("*/*.jsonl"))
    assert len(paths) == 9  # 6 benchmarks, 2 math training sets, the free-form task
    for path in paths:
        rows = load_questions(DataSpec(name=str(path)))
        assert rows and all(r["problem"] and r["answer"] is not None and r["id"] for r in rows), path


def test_column_mapping_and_missing_field(tmp_path):
    f = tmp_path / "q.jsonl"
    f.write_text(json.dumps({"question": "1+1?", "gold": "2", "qid": 7}) + "\n"
                 + json.dumps({"question": "2+2?", "qid": 8}) + "\n")
    rows = load_questions(DataSpec(name=str(f), question_field="question", answer_field=None, id_field="qid"))
    assert [r["id"] for r in rows] == ["7", "8"] and rows[0]["problem"] == "1+1?" and rows[0]["answer"] is None
    with pytest.raises(DataError, match=r"q\.jsonl: row 1 has no field 'gold'"):
        load_questions(DataSpec(name=str(f), question_field="question", answer_field="gold"))


def test_bad_json_line_named(tmp_path):
    f = tmp_path / "bad.jsonl"
    f.write_text('{"problem": "a", "answer": "1"}\n{oops\n')
    with pytest.raises(DataError, match="bad.jsonl: line 2"):
        load_questions(DataSpec(name=str(f)))


def test_missing_file_named(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        load_questions(DataSpec(name=str(tmp_path / "nope.jsonl")))


def test_parquet(tmp_path):
    import datasets

    f = tmp_path / "q.parquet"
    datasets.Dataset.from_list([{"problem": "p", "answer": "3"}]).to_parquet(str(f))
    rows = load_questions(DataSpec(name=str(f), id_field=None))
    assert rows == [{"problem": "p", "answer": "3", "id": "0"}]


# Rows in the schema of the natural-reasoning sets (question, reference_answer; facebook/natural_reasoning also has
# responses, a list of {response_model, response}); facebook's card says some questions have no reference answer.
NATURAL_REASONING_ROWS = [
    {"question": "Why does ice float on water?", "reference_answer": "Ice is less dense than liquid water.",
     "responses": [{"response_model": "Llama-3.3-70B-Instruct", "response": "Because ice is less dense..."}]},
    {"question": "What limits the speed of a signal in a copper cable?", "reference_answer": None,
     "responses": [{"response_model": "Llama-3.3-70B-Instruct", "response": "The dielectric..."}]},
    {"question": "Is 1 a prime number?", "reference_answer": "  ",
     "responses": [{"response_model": "Llama-3.3-70B-Instruct", "response": "No."}]},
]


@pytest.fixture
def natural_reasoning_hub(monkeypatch):
    from empo import data as data_module

    asked = []

    def read_hub(spec):
        asked.append(spec)
        if spec.name not in ("qingyangzhang/natural_reasoning_simple", "facebook/natural_reasoning"):
            raise AssertionError(f"unexpected hub dataset {spec.name}")
        return [dict(r) for r in NATURAL_REASONING_ROWS]

    monkeypatch.setattr(data_module, "read_hub", read_hub)
    return asked


@pytest.mark.parametrize("name", ["qingyangzhang/natural_reasoning_simple", "facebook/natural_reasoning"])
def test_natural_reasoning_hub_columns_map_to_the_common_schema(natural_reasoning_hub, name):
    rows = load_questions(DataSpec(name=name, split="train"))
    assert [r["problem"] for r in rows] == [r["question"] for r in NATURAL_REASONING_ROWS]
    # the reference answer is the answer (logged only); missing or blank ones stay None instead of failing
    assert [r["answer"] for r in rows] == ["Ice is less dense than liquid water.", None, None]
    assert [r["id"] for r in rows] == ["0", "1", "2"] and rows[0]["responses"][0]["response"]
    spec = natural_reasoning_hub[-1]  # what the hub was asked: the data, with the dataset's own columns
    assert (spec.name, spec.split, spec.question_field, spec.answer_field) == (name, "train", "question",
                                                                              "reference_answer")


def test_a_field_the_recipe_sets_wins_over_the_known_columns(natural_reasoning_hub):
    name = "qingyangzhang/natural_reasoning_simple"
    unlabeled = load_questions(DataSpec(name=name, answer_field=None))
    assert [r["answer"] for r in unlabeled] == [None, None, None] and unlabeled[0]["problem"].startswith("Why")
    # a question column the recipe names is used as given (here a wrong one: the error names it)
    with pytest.raises(DataError, match="row 1 has no field 'reference_answer'"):
        load_questions(DataSpec(name=name, question_field="reference_answer"))


def test_empo_train_builds_the_natural_reasoning_dataset(natural_reasoning_hub):
    from empo.configs import EmpoArguments
    from empo.training.run import build_dataset

    args = EmpoArguments(dataset_name="qingyangzhang/natural_reasoning_simple", prompt="natural-reasoning",
                         clustering="entailment", reward_funcs=["empo"])
    ds = build_dataset(args)
    assert ds["problem"] == [r["question"] for r in NATURAL_REASONING_ROWS]  # the judge's bare question
    assert ds["answer"] == ["Ice is less dense than liquid water.", None, None]
    assert ds[0]["prompt"][-1]["content"] == ("Question: Why does ice float on water? Reason step by step and put "
                                              "the answer in \\boxed{}.")

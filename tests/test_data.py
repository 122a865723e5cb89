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

"""Shape and invariants of the labelled answer-pair set, tests/data/answer_pairs.jsonl.

The set calibrates and evaluates "do these two answers to this question mean the same?" judges.  Each row is
``{"id", "type", "split", "question", "a", "b", "same_meaning"}``; the split is assigned by question (a hash of
the question text), so no question has pairs on both sides and calibration never sees held-out questions.
"""

from __future__ import annotations

import collections
import hashlib
import json
from pathlib import Path

import pytest

PAIRS = Path(__file__).resolve().parent / "data" / "answer_pairs.jsonl"

TYPES = ("number", "entity", "polarity", "antonym", "paraphrase", "span_in_sentence", "one_way", "unrelated")
ALWAYS_FALSE = ("one_way", "unrelated")
BOTH_LABELS = ("number", "entity", "polarity", "antonym", "paraphrase", "span_in_sentence")
SPLITS = ("calibration", "heldout")
KEYS = {"id": str, "type": str, "split": str, "question": str, "a": str, "b": str, "same_meaning": bool}

MIN_ROWS = 440
MIN_PER_TYPE = 40
MIN_PER_TYPE_SPLIT = 15

REQUIRED = [  # (question, a, b, same_meaning, type): failures seen in a real run
    ("What is the opposite of hot?", "The opposite of hot is cool.", "The opposite of hot is cold.", False,
     "antonym"),
    ("Which planet is the largest in our solar system?", "Mercury is the largest planet.",
     "Jupiter is the largest planet.", False, "entity"),
    ("How many legs does a spider have?", "8.", "A spider has 8 legs.", True, "span_in_sentence"),
]


def split_of(question: str) -> str:
    return "calibration" if int(hashlib.sha256(question.encode()).hexdigest(), 16) % 2 == 0 else "heldout"


@pytest.fixture(scope="module")
def rows() -> list[dict]:
    lines = PAIRS.read_text(encoding="utf-8").splitlines()
    return [json.loads(line) for line in lines if line.strip()]


def test_size_and_unique_ids(rows):
    assert len(rows) >= MIN_ROWS
    ids = [r["id"] for r in rows]
    assert len(set(ids)) == len(ids), [i for i, n in collections.Counter(ids).items() if n > 1]


def test_keys_and_value_types(rows):
    for r in rows:
        assert list(r) == list(KEYS), r
        for key, typ in KEYS.items():
            assert isinstance(r[key], typ), (r["id"], key)
        assert r["question"].strip(), r["id"]
        assert r["type"] in TYPES, r
        assert r["split"] in SPLITS, r


def test_per_type_counts(rows):
    counts = collections.Counter(r["type"] for r in rows)
    for t in TYPES:
        assert counts[t] >= MIN_PER_TYPE, (t, counts[t])


def test_split_is_by_question_hash(rows):
    splits_of_question: dict[str, set[str]] = collections.defaultdict(set)
    for r in rows:
        assert r["split"] == split_of(r["question"]), r["id"]
        splits_of_question[r["question"]].add(r["split"])
    assert all(len(s) == 1 for s in splits_of_question.values())


def test_per_type_counts_in_each_split(rows):
    counts = collections.Counter((r["type"], r["split"]) for r in rows)
    for t in TYPES:
        for s in SPLITS:
            assert counts[(t, s)] >= MIN_PER_TYPE_SPLIT, (t, s, counts[(t, s)])


def test_one_way_and_unrelated_are_never_same(rows):
    bad = [r["id"] for r in rows if r["type"] in ALWAYS_FALSE and r["same_meaning"]]
    assert not bad


def test_both_labels_present(rows):
    for t in BOTH_LABELS:
        labels = {r["same_meaning"] for r in rows if r["type"] == t}
        assert labels == {True, False}, t


@pytest.mark.parametrize("question,a,b,same,typ", REQUIRED)
def test_required_pairs(rows, question, a, b, same, typ):
    hits = [r for r in rows if r["question"] == question and {r["a"], r["b"]} == {a, b}]
    assert hits, (question, a, b)
    for r in hits:
        assert r["same_meaning"] is same, r["id"]
        assert r["type"] == typ, r["id"]
